"""Policy inference: checkpoint format, the chunking model, backends (torch, onnx, openpi, lerobot), async runner."""

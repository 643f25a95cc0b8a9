"""`physai export <checkpoint_dir>`: write `model.onnx` next to the checkpoint and check it against PyTorch."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from physical_ai.policy.spec import ONNX_FILE, ConfigError

OPSET = 17


def export_onnx(checkpoint_dir: str | Path, output: str | Path | None = None, verify: bool = True,
                atol: float = 1e-4) -> tuple[Path, float]:
    """Export a checkpoint to ONNX (batch dimension dynamic) and return (path, max |onnx - torch|).

    Raises:
        ConfigError: the checkpoint is malformed.
        RuntimeError: `verify` and the exported model disagrees with PyTorch by more than `atol`.
    """
    import torch

    from physical_ai.policy.model import example_inputs, load_checkpoint

    config, model = load_checkpoint(checkpoint_dir)
    out = Path(output) if output else Path(checkpoint_dir) / ONNX_FILE
    inputs = tuple(example_inputs(config))
    dynamic = {name: {0: "batch"} for name in model.input_names}
    dynamic["actions"] = {0: "batch"}
    with torch.inference_mode():
        torch.onnx.export(model, inputs, str(out), input_names=model.input_names, output_names=["actions"],
                          dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)
    error = 0.0
    if verify:
        import onnxruntime as ort

        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        with torch.inference_mode():
            expected = model(*inputs).numpy()
        got = session.run(None, {n: t.numpy() for n, t in zip(model.input_names, inputs, strict=True)})[0]
        error = float(np.max(np.abs(got - expected)))
        if not error <= atol:
            raise RuntimeError(f"ONNX export of {checkpoint_dir} differs from PyTorch by {error:.2e} (> {atol:.0e})")
    return out, error


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `physai export`."""
    parser.add_argument("checkpoint", help="checkpoint directory holding config.json and model.safetensors")
    parser.add_argument("-o", "--output", default=None, help=f"ONNX file to write (default: <checkpoint>/{ONNX_FILE})")
    parser.add_argument("--atol", type=float, default=1e-4, help="largest allowed |onnx - torch| on a test input")
    parser.add_argument("--no-verify", action="store_true", help="skip the onnxruntime comparison")


def run(args: argparse.Namespace) -> int:
    """Export and report; exit code 1 on a malformed checkpoint or a failed comparison."""
    try:
        path, error = export_onnx(args.checkpoint, args.output, verify=not args.no_verify, atol=args.atol)
    except (ConfigError, RuntimeError) as exc:
        print(f"physai export: {exc}", file=sys.stderr)
        return 1
    check = "" if args.no_verify else f"; max |onnx - torch| = {error:.2e}"
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB){check}")
    return 0

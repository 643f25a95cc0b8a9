"""One policy interface, several backends: `torch`, `onnx`, `openpi` (remote server), `lerobot` (optional).

    policy = make_policy("onnx", "models/arm_pick")
    result = policy.infer({"image": rgb, "state": q, "parts": poses, "obstacles": boxes, "instruction": "pick"})
    result.values  # (H, D) actions in SI units, columns named result.names, spaced result.dt seconds

Every backend reads the same `config.json` for the observation/action spec, so the node assembles observations
the same way whichever backend runs. Backends raise `ObservationError` for bad input, `PolicyServerError` when a
remote server is unavailable; they return non-finite values as they are (the caller drops and counts them).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from physical_ai.policy.observation import ObservationError, model_input_names, model_inputs, preprocess_image
from physical_ai.policy.openpi_client import OpenpiClient, PolicyServerError
from physical_ai.policy.spec import ONNX_FILE, ConfigError, PolicyConfig, load_config

BACKENDS = ("torch", "onnx", "openpi", "lerobot")


@dataclass(frozen=True)
class ActionChunkResult:
    """A chunk of future actions computed from one observation."""

    values: np.ndarray          # (H, D) float64, SI units
    names: tuple[str, ...]      # D action names
    dt: float                   # [s] between steps
    latency_ms: float           # [ms] backend time for this chunk
    embodiment: str
    model_id: str

    @property
    def horizon(self) -> int:
        """Number of steps."""
        return int(self.values.shape[0])


class Policy(ABC):
    """Maps an observation dict (see observation.py) to an `ActionChunkResult`."""

    backend = ""

    def __init__(self, config: PolicyConfig) -> None:
        self.config = config

    def infer(self, obs: Mapping[str, Any]) -> ActionChunkResult:
        """Run the policy on one observation."""
        start = time.perf_counter()
        values = np.asarray(self._infer(obs), dtype=np.float64)
        latency_ms = (time.perf_counter() - start) * 1e3
        if values.ndim != 2 or values.shape[1] != self.config.action_dim or values.shape[0] < 1:
            raise PolicyServerError(f"{self.backend}: actions of shape {values.shape}, expected (H, "
                                    f"{self.config.action_dim}) for {list(self.config.action.names)}")
        return ActionChunkResult(values=values, names=self.config.action.names, dt=self.config.dt,
                                 latency_ms=latency_ms, embodiment=self.config.embodiment,
                                 model_id=f"{self.config.name}:{self.backend}")

    @abstractmethod
    def _infer(self, obs: Mapping[str, Any]) -> np.ndarray:
        """Return (H, D) actions."""

    def health(self) -> str:
        """"ok", or why the backend cannot serve right now."""
        return "ok"

    def ready(self) -> bool:
        """False while a request would fail at once (e.g. waiting out a reconnect backoff)."""
        return True

    def close(self) -> None:  # noqa: B027 - most backends hold nothing to release
        """Release resources (connections, sessions)."""


class TorchPolicy(Policy):
    """The project's checkpoint run with PyTorch on the CPU."""

    backend = "torch"

    def __init__(self, checkpoint_dir: str | Path, num_threads: int = 0) -> None:
        import torch

        from physical_ai.policy.model import load_checkpoint

        if num_threads > 0:
            torch.set_num_threads(num_threads)
        config, self.model = load_checkpoint(checkpoint_dir)
        super().__init__(config)
        self._torch = torch

    def _infer(self, obs: Mapping[str, Any]) -> np.ndarray:
        return self.forward_batch([self.prepare(obs)])[0]

    def prepare(self, obs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Batch-1 model inputs of one observation (raises `ObservationError` for a bad one)."""
        return model_inputs(self.config, obs)

    def forward_batch(self, inputs: Sequence[Mapping[str, np.ndarray]]) -> list[np.ndarray]:
        """(H, D) actions for each prepared observation, from one forward pass over them stacked (batching)."""
        torch = self._torch
        stacked = [torch.from_numpy(np.concatenate([x[n] for x in inputs])) for n in self.model.input_names]
        with torch.inference_mode():
            out = self.model(*stacked)
        return list(out.numpy())


class OnnxPolicy(Policy):
    """The same model exported with `physai export`, run with onnxruntime (edge devices)."""

    backend = "onnx"

    def __init__(self, checkpoint_dir: str | Path, onnx_path: str | Path | None = None, num_threads: int = 1) -> None:
        import onnxruntime as ort

        super().__init__(load_config(checkpoint_dir))
        path = Path(onnx_path) if onnx_path else Path(checkpoint_dir) / ONNX_FILE
        if not path.is_file():
            raise ConfigError(f"{path}: not found; create it with `physai export {checkpoint_dir}`")
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise ConfigError(f"{path}: cannot load ONNX model: {exc}") from exc
        self.input_names = model_input_names(self.config)
        got = [i.name for i in self.session.get_inputs()]
        if got != self.input_names:
            raise ConfigError(f"{path}: inputs {got} do not match config.json observation spec {self.input_names}")

    def _infer(self, obs: Mapping[str, Any]) -> np.ndarray:
        inputs = model_inputs(self.config, obs)
        return self.session.run(None, {n: inputs[n] for n in self.input_names})[0][0]


class OpenpiPolicy(Policy):
    """A remote policy server (openpi protocol). Observation keys sent: "observation/<group>" and "prompt"."""

    backend = "openpi"

    def __init__(self, checkpoint_dir: str | Path, uri: str, timeout_s: float = 1.0, connect_timeout_s: float = 2.0,
                 backoff_initial_s: float = 0.2, backoff_max_s: float = 5.0, api_key: str = "",
                 robot_id: str = "") -> None:
        super().__init__(load_config(checkpoint_dir))
        self.client = OpenpiClient(uri, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s,
                                   backoff_initial_s=backoff_initial_s, backoff_max_s=backoff_max_s, api_key=api_key,
                                   robot_id=robot_id)

    def request(self, obs: Mapping[str, Any]) -> dict[str, Any]:
        """The observation as sent on the wire: images as uint8 at the spec size, vectors as float32."""
        spec = self.config.observation
        out: dict[str, Any] = {}
        for group in spec.groups():
            if group not in obs or obs[group] is None:
                raise ObservationError(f"{group}: missing (the policy needs it)")
            value = obs[group]
            if group == "instruction":
                out["prompt"] = str(value)
            elif group == "image":
                _, h, w = spec.image.shape
                img = (preprocess_image(np.asarray(value), h, w) * 255.0).round().astype(np.uint8)
                out["observation/image"] = np.ascontiguousarray(img.transpose(1, 2, 0))
            else:
                arr = np.asarray(value, dtype=np.float32)
                if not np.isfinite(arr).all():
                    raise ObservationError(f"{group}: non-finite values")
                out[f"observation/{group}"] = arr
        return out

    def _infer(self, obs: Mapping[str, Any]) -> np.ndarray:
        reply = self.client.infer(self.request(obs))
        if "actions" not in reply:
            raise PolicyServerError(f"server reply has no 'actions' (keys {sorted(reply)})")
        return np.asarray(reply["actions"])

    def health(self) -> str:
        """"ok" while connected, else the last error and when the next reconnect happens."""
        if self.client.connected:
            return "ok"
        wait = self.client.retry_in_s()
        return f"disconnected ({self.client.last_error or 'not yet connected'}); retry in {wait:.1f} s"

    def ready(self) -> bool:
        """Connected, or a reconnect attempt is due."""
        return self.client.retry_in_s() <= 0.0

    def close(self) -> None:
        """Close the server connection."""
        self.client.close()


class LerobotPolicy(Policy):
    """A LeRobot pretrained-policy directory mapped onto our spec (needs the optional `lerobot` package).

    Our observation groups map to LeRobot keys: image -> "observation.images.<camera>", state ->
    "observation.state", instruction -> "task"; its actions must have our action dimension.
    """

    backend = "lerobot"

    def __init__(self, checkpoint_dir: str | Path, lerobot_dir: str | Path, camera: str = "top") -> None:
        super().__init__(load_config(checkpoint_dir))
        try:
            import torch
            from lerobot.policies.factory import get_policy_class  # type: ignore[import-not-found]
        except ImportError as exc:
            raise ConfigError("backend 'lerobot' needs the optional `lerobot` package (pip install lerobot); "
                              "it is not installed in this environment") from exc
        meta = load_config_json(Path(lerobot_dir) / "config.json")
        policy_type = meta.get("type")
        if not isinstance(policy_type, str):
            raise ConfigError(f"{lerobot_dir}/config.json: type: missing (not a LeRobot policy directory)")
        self._policy = get_policy_class(policy_type).from_pretrained(str(lerobot_dir)).eval()
        self._torch = torch
        self._camera = camera

    def _infer(self, obs: Mapping[str, Any]) -> np.ndarray:
        torch = self._torch
        spec = self.config.observation
        batch: dict[str, Any] = {}
        if spec.image is not None:
            _, h, w = spec.image.shape
            batch[f"observation.images.{self._camera}"] = torch.from_numpy(
                preprocess_image(np.asarray(obs["image"]), h, w))[None]
        if spec.state is not None:
            batch["observation.state"] = torch.as_tensor(np.asarray(obs["state"], np.float32))[None]
        if spec.instruction is not None:
            batch["task"] = [str(obs["instruction"])]
        with torch.inference_mode():
            chunk = self._policy.predict_action_chunk(batch)
        return chunk[0].cpu().numpy()


def load_config_json(path: Path) -> dict[str, Any]:
    """Read a JSON object from `path` with a clear error."""
    import json

    if not path.is_file():
        raise ConfigError(f"{path}: not found")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return data


def make_policy(backend: str, checkpoint_dir: str | Path, **options: Any) -> Policy:
    """Build the policy backend named `backend` for the checkpoint (or spec-only config) at `checkpoint_dir`.

    Options per backend: torch: num_threads; onnx: onnx_path, num_threads; openpi: uri, timeout_s,
    connect_timeout_s, backoff_initial_s, backoff_max_s, api_key, robot_id; lerobot: lerobot_dir, camera.
    """
    classes = {"torch": TorchPolicy, "onnx": OnnxPolicy, "openpi": OpenpiPolicy, "lerobot": LerobotPolicy}
    if backend not in classes:
        raise ConfigError(f"backend: {backend!r} not one of {list(BACKENDS)}")
    return classes[backend](checkpoint_dir, **options)

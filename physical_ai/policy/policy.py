"""One policy interface, several backends: `torch`, `onnx`, `openpi` (remote server), `lerobot` (own environment).

    policy = make_policy("onnx", "models/arm_pick")
    result = policy.infer({"image": rgb, "state": q, "parts": poses, "obstacles": boxes, "instruction": "pick"})
    result.values  # (H, D) actions in SI units, columns named result.names, spaced result.dt seconds

Every backend reads the same `config.json` for the observation/action spec, so the node assembles observations
the same way whichever backend runs. Backends raise `ObservationError` for bad input, `PolicyServerError` when a
remote server is unavailable; they return non-finite values as they are (the caller drops and counts them).
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from physical_ai.policy.keymap import KeyMapError, make_keymap
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

    history_period_s = 0.0  # [s] > 0: the node calls `observe` this often (policies that take a history)

    def observe(self, obs: Mapping[str, Any]) -> None:  # noqa: B027 - only history-taking backends record
        """Record one control step's observation; called every `history_period_s` by the node."""

    def executing(self, rows: np.ndarray, delay_steps: int) -> None:  # noqa: B027 - most backends ignore it
        """Before `infer`: the chunk in execution, and how much of it the robot plays before this chunk arrives.

        `rows` ((n, D)) are that chunk's from the observation's time on, of which the robot is expected to play
        `delay_steps`. The asynchronous runner calls it; a backend may make its chunk begin with those rows
        (real-time chunking), so that what it plans, or checks, starts where the robot will be. The default ignores
        it.
        """

    def reset(self) -> None:  # noqa: B027 - only history-taking backends keep episode state
        """Forget episode state (observation history): a new episode, or ROS time jumped back."""


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


def wire_image(image: Any, height: int, width: int, name: str) -> np.ndarray:
    """(H, W, 3) RGB -> (height, width, 3) uint8, the form images travel in (openpi and LeRobot clients alike)."""
    try:
        scaled = preprocess_image(np.asarray(image), height, width)
    except ObservationError as exc:
        raise ObservationError(f"{name}: {exc}") from None
    return np.ascontiguousarray((scaled * 255.0).round().astype(np.uint8).transpose(1, 2, 0))


MAX_CHUNK_STEPS = 1000  # the longest chunk a policy spec may declare (spec.py): a server's 2 M-row reply is refused


def _actions_problem(actions: Any, action_dim: int) -> str:
    """Why a server's actions are unusable ('' when they are a numeric (H, action_dim) array, 1 <= H <= 1000)."""
    if not isinstance(actions, (np.ndarray, list, tuple)):
        return f"actions are a {type(actions).__name__}, expected an array"
    try:
        actions = np.asarray(actions)
    except ValueError as exc:  # ragged nested lists
        return f"actions are not an array: {exc}"
    if actions.dtype.kind not in "fiu":
        return f"actions of dtype {actions.dtype}, expected numbers"
    if actions.ndim != 2 or actions.shape[1] != action_dim or not 1 <= actions.shape[0] <= MAX_CHUNK_STEPS:
        return f"actions of shape {actions.shape}, expected (H, {action_dim}) with 1 <= H <= {MAX_CHUNK_STEPS}"
    return ""


class OpenpiPolicy(Policy):
    """A remote policy server (openpi protocol); request and reply keys follow a key map (keymap.py).

    The default preset `physai` sends "observation/<group>" and "prompt", as our own server (`physai serve`)
    reads them; `libero` and `droid` speak openpi's example conventions for stock pi0 / pi0.5 servers.
    """

    backend = "openpi"

    def __init__(self, checkpoint_dir: str | Path, uri: str, timeout_s: float = 1.0, connect_timeout_s: float = 2.0,
                 backoff_initial_s: float = 0.2, backoff_max_s: float = 5.0, api_key: str = "",
                 robot_id: str = "", key_preset: str = "physai", key_map: tuple[str, ...] | list[str] = (),
                 actions_key: str = "actions", max_message_bytes: int = 16 * 1024 * 1024, ca_file: str = "") -> None:
        super().__init__(load_config(checkpoint_dir))
        spec = self.config.observation
        try:
            self.keys = make_keymap(spec.groups(), key_preset, key_map, actions_key,
                                    len(spec.state.names) if spec.state is not None else None)
        except KeyMapError as exc:
            raise ConfigError(f"{self.backend} keys: {exc}") from None
        self.client = OpenpiClient(uri, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s,
                                   backoff_initial_s=backoff_initial_s, backoff_max_s=backoff_max_s, api_key=api_key,
                                   robot_id=robot_id, max_message_bytes=max_message_bytes, ca_file=ca_file)

    def image_size(self, group: str) -> tuple[int, int]:
        """(height, width) a camera group travels at: the spec's size."""
        _, h, w = getattr(self.config.observation, group).shape
        return h, w

    def wire_observation(self, obs: Mapping[str, Any]) -> dict[str, Any]:
        """Observation groups as they travel: images uint8 (H, W, 3) at `image_size`, vectors float32."""
        spec = self.config.observation
        out: dict[str, Any] = {}
        for group in spec.groups():
            if group not in obs or obs[group] is None:
                raise ObservationError(f"{group}: missing (the policy needs it)")
            value = obs[group]
            if group == "instruction":
                out[group] = str(value)
            elif group in ("image", "wrist_image"):
                out[group] = wire_image(value, *self.image_size(group), group)
            else:
                arr = np.asarray(value, dtype=np.float32)
                if not np.isfinite(arr).all():
                    raise ObservationError(f"{group}: non-finite values")
                out[group] = arr
        return out

    def request(self, obs: Mapping[str, Any]) -> dict[str, Any]:
        """The observation as sent on the wire, under the key map's request keys."""
        return self.keys.encode(self.wire_observation(obs))

    def _infer(self, obs: Mapping[str, Any]) -> np.ndarray:
        reply = self.client.infer(self.request(obs))
        key = self.keys.actions_key
        if key not in reply:
            self.client.reject(f"no {key!r}")
            raise PolicyServerError(f"server reply has no {key!r} (keys {sorted(map(str, reply))[:20]}); "
                                    "set actions_key")
        problem = _actions_problem(reply[key], self.config.action_dim)
        if problem:  # a malformed reply is a failure like a lost connection: reconnect only after the backoff
            self.client.reject(problem)
            raise PolicyServerError(f"{self.backend}: {problem}")
        self.client.succeeded()
        return np.asarray(reply[key])

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


class LerobotPolicy(OpenpiPolicy):
    """A LeRobot pretrained policy, run by LeRobot itself in its own environment (`physai lerobot serve`).

    With `lerobot_dir` set, the server is started here as a child process (in `$PHYSAI_LEROBOT_ENV`, see
    lerobot_env.py) on a free port and stopped by `close()`; otherwise `uri` names a running one. Keys follow the
    `lerobot` preset (image -> "observation.images.top", state -> "observation.state", instruction -> "task");
    map other camera names with `key_map`. On connect the server's metadata is checked against the key map:
    every input feature must be sent, every key sent must be a feature, the action size must match ours.
    Policies with `n_obs_steps` > 1 get a history: the node calls `observe` once per control step (`config.dt`)
    and each request carries the last n_obs_steps - 1 observed steps and the current observation.
    """

    backend = "lerobot"

    def __init__(self, checkpoint_dir: str | Path, lerobot_dir: str | Path = "", uri: str = "",
                 timeout_s: float = 5.0, connect_timeout_s: float = 5.0, backoff_initial_s: float = 0.2,
                 backoff_max_s: float = 5.0, robot_id: str = "", key_preset: str = "lerobot",
                 key_map: tuple[str, ...] | list[str] = (), device: str = "cpu", seed: int | None = None,
                 start_timeout_s: float = 120.0) -> None:
        self._server: subprocess.Popen[bytes] | None = None
        if lerobot_dir:
            uri = self._start_server(Path(lerobot_dir), device, seed, start_timeout_s)
        elif not uri:
            raise ConfigError("backend lerobot: set lerobot_dir (a LeRobot policy folder, served here) or the uri "
                              "of a running `physai lerobot serve`")
        super().__init__(checkpoint_dir, uri, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s,
                         backoff_initial_s=backoff_initial_s, backoff_max_s=backoff_max_s, robot_id=robot_id,
                         key_preset=key_preset, key_map=key_map)
        self._checked_metadata: dict[str, Any] | None = None
        self._history: deque[dict[str, Any]] = deque(maxlen=1)

    @property
    def history_period_s(self) -> float:
        """Observations are recorded every control step while the server's policy takes a history."""
        return self.config.dt if self._history.maxlen and self._history.maxlen > 1 else 0.0

    def _start_server(self, lerobot_dir: Path, device: str, seed: int | None, timeout_s: float) -> str:
        from physical_ai.policy.lerobot_env import LerobotEnvError, server_command

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        try:
            argv, env = server_command(lerobot_dir, port=port, device=device, seed=seed)
        except LerobotEnvError as exc:
            raise ConfigError(f"backend lerobot: {exc}") from None
        # Its own session: a terminal's Ctrl-C reaches the node, which stops the server in close(); and a
        # parent-death signal, so a node killed with SIGKILL does not leave the server running.
        self._server = subprocess.Popen(argv, env=env, start_new_session=True, preexec_fn=_terminate_with_parent)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._server.poll() is not None:
                raise ConfigError(f"backend lerobot: the LeRobot server for {lerobot_dir} exited with code "
                                  f"{self._server.returncode} (its error is printed above)")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1.0) as reply:
                    if reply.status == 200:
                        return f"ws://127.0.0.1:{port}"
            except OSError:
                time.sleep(0.2)
        self._stop_server()
        raise ConfigError(f"backend lerobot: the LeRobot server for {lerobot_dir} did not answer within {timeout_s} s")

    def _check_metadata(self) -> None:
        """Compare the server's policy with our spec and key map, once per connection."""
        metadata = self.client.connect()
        if metadata is self._checked_metadata:
            return
        features = metadata.get("input_features")
        if metadata.get("server") != "lerobot" or not isinstance(features, dict):
            raise PolicyServerError(f"{self.client.uri} is not a LeRobot policy server (metadata {sorted(metadata)})")
        sent = {key for key, source in self.keys.request if source.group != "ignore"}
        text_keys = {key for key, source in self.keys.request if source.group == "instruction"}
        problems = []
        if sorted(set(features) - sent):
            problems.append(f"policy inputs {sorted(set(features) - sent)} are not sent")
        if sorted(sent - set(features) - text_keys):
            problems.append(f"keys {sorted(sent - set(features) - text_keys)} are not inputs of the policy")
        if metadata.get("action_dim") != self.config.action_dim:
            problems.append(f"the policy has {metadata.get('action_dim')} actions, our spec "
                            f"{self.config.action_dim} {list(self.config.action.names)}")
        if problems:
            raise PolicyServerError(f"LeRobot policy {metadata.get('policy_type')} does not fit: "
                                    + "; ".join(problems) + "; set key_map")
        self._history = deque(self._history, maxlen=max(1, int(metadata.get("n_obs_steps", 1))))
        self._checked_metadata = metadata

    def image_size(self, group: str) -> tuple[int, int]:
        """The size the LeRobot policy's feature for this camera declares (once connected), else the spec's."""
        features = (self._checked_metadata or {}).get("input_features", {})
        for key, source in self.keys.request:
            shape = features.get(key, {}).get("shape")
            if source.group == group and shape and len(shape) == 3:
                return int(shape[1]), int(shape[2])
        return super().image_size(group)

    def observe(self, obs: Mapping[str, Any]) -> None:
        """Record one control step's observation (for policies that take n_obs_steps > 1)."""
        if self._history.maxlen and self._history.maxlen > 1:
            self._history.append(self.keys.encode(self.wire_observation(obs)))

    def request(self, obs: Mapping[str, Any]) -> dict[str, Any]:
        """Request keys; with a history, each feature stacked (n_obs_steps, ...) oldest first."""
        current = self.keys.encode(self.wire_observation(obs))
        steps = self._history.maxlen or 1
        if steps == 1:
            return current
        past = list(self._history)[-(steps - 1):]
        past = [past[0]] * (steps - 1 - len(past)) + past if past else [current] * (steps - 1)
        out: dict[str, Any] = {}
        for key, value in current.items():
            out[key] = value if isinstance(value, str) else np.stack([p[key] for p in past] + [value])
        return out

    def reset(self) -> None:
        """Forget the observation history."""
        self._history.clear()

    def _infer(self, obs: Mapping[str, Any]) -> np.ndarray:
        self._check_metadata()
        return super()._infer(obs)

    def close(self) -> None:
        """Close the connection and stop the server this backend started."""
        super().close()
        self._stop_server()

    def _stop_server(self) -> None:
        if self._server is not None and self._server.poll() is None:
            self._server.terminate()
            try:
                self._server.wait(10.0)
            except subprocess.TimeoutExpired:
                self._server.kill()
                self._server.wait()
        self._server = None


def _terminate_with_parent() -> None:
    """In a child before exec (Linux): SIGTERM when the parent process dies (prctl PR_SET_PDEATHSIG)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except OSError:  # not glibc Linux: the server then outlives a SIGKILLed parent
        pass


def make_policy(backend: str, checkpoint_dir: str | Path, **options: Any) -> Policy:
    """Build the policy backend named `backend` for the checkpoint (or spec-only config) at `checkpoint_dir`.

    Options per backend: torch: num_threads; onnx: onnx_path, num_threads; openpi: uri, timeout_s,
    connect_timeout_s, backoff_initial_s, backoff_max_s, api_key, robot_id, key_preset, key_map, actions_key,
    max_message_bytes, ca_file;
    lerobot: lerobot_dir or uri, timeout_s, connect_timeout_s, backoff_*, robot_id, key_preset, key_map, device,
    seed.
    """
    classes = {"torch": TorchPolicy, "onnx": OnnxPolicy, "openpi": OpenpiPolicy, "lerobot": LerobotPolicy}
    if backend not in classes:
        raise ConfigError(f"backend: {backend!r} not one of {list(BACKENDS)}")
    return classes[backend](checkpoint_dir, **options)

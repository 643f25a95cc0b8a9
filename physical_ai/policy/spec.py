"""Observation/action specification and the checkpoint config format (`models/<name>/config.json`).

A checkpoint directory holds `config.json` (this module) and `model.safetensors` (weights only, never a pickle).
The config names every model input and output with units and normalisation statistics, so a node can assemble
observations from topics and a trainer can write a checkpoint that the node loads without code changes:

    {
      "format_version": 1, "name": "arm_pick", "embodiment": "arm", "dt": 0.05, "chunk_length": 20,
      "architecture": {"type": "chunk_transformer", "d_model": 128, ...},
      "observation": {
        "image": {"shape": [3, 96, 96], "mean": [3 floats], "std": [3 floats]},
        "wrist_image": {"shape": [3, 224, 224]},      (remote policies only: a second camera, e.g. pi0 LIBERO)
        "state": {"names": ["joint1.position", ...], "units": ["rad", ...], "mean": [...], "std": [...]},
        "obstacles": {"max_count": 8, "features": [...], "units": [...], "mean": [...], "std": [...]},
        "parts": {"max_count": 4, "features": [...], "units": [...], "mean": [...], "std": [...]},
        "instruction": {"max_tokens": 16, "vocab_size": 512}
      },
      "action": {"names": ["joint1", ...], "units": ["rad", ...], "mean": [...], "std": [...]}
    }

Every observation group is optional, but at least one must be present. `validate_config` rejects anything else
with a `ConfigError` naming the offending field.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
ONNX_FILE = "model.onnx"

# State feature sources the observation assembler understands (see physical_ai/policy/observation.py).
STATE_SOURCES = ("joint position/velocity: '<joint>.position', '<joint>.velocity'; "
                 "odometry: 'odom.x', 'odom.y', 'odom.yaw', 'odom.vx', 'odom.vy', 'odom.wz'; "
                 "tactile: 'tactile.<pad>.force', 'tactile.<pad>.contact', 'tactile.<pad>.slip'")
OBSTACLE_FEATURES = ("x", "y", "z", "length", "width", "height", "yaw", "vx", "vy", "class", "confidence")
# is_target: 1 when the part's perceived label is the part the instruction names (policy/observation.py)
PART_FEATURES = ("x", "y", "z", "qx", "qy", "qz", "qw", "size_x", "size_y", "size_z", "confidence", "is_target")
ARCHITECTURES = ("chunk_transformer", "multi_embodiment", "remote")


class ConfigError(ValueError):
    """A checkpoint config is malformed; the message names the field."""


@dataclass(frozen=True)
class FeatureGroup:
    """Named scalar features with units and normalisation statistics (x_norm = (x - mean) / std)."""

    names: tuple[str, ...]
    units: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True)
class TokenGroup:
    """A variable number (up to `max_count`) of objects, each described by the same features.

    `min_x` [m] (None: no bound) leaves out the objects whose `x` feature (robot frame, forward) is below it: a
    forward-driving AMR policy never had traffic behind it in training, and another robot following in its lane
    stopped it for good (in-process fleet, seed 200018).
    """

    max_count: int
    features: FeatureGroup
    min_x: float | None = None


@dataclass(frozen=True)
class ImageSpec:
    """A colour image, resized to (height, width), scaled to [0, 1], then normalised per channel."""

    shape: tuple[int, int, int]
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)


@dataclass(frozen=True)
class InstructionSpec:
    """A task instruction, hashed word by word into `vocab_size` buckets, at most `max_tokens` words."""

    max_tokens: int = 16
    vocab_size: int = 512


@dataclass(frozen=True)
class ObservationSpec:
    """What the model sees. Absent groups are None."""

    image: ImageSpec | None = None
    wrist_image: ImageSpec | None = None
    state: FeatureGroup | None = None
    obstacles: TokenGroup | None = None
    parts: TokenGroup | None = None
    instruction: InstructionSpec | None = None

    def groups(self) -> list[str]:
        """Names of the present groups, in the model's input order."""
        return [g for g in ("image", "wrist_image", "state", "obstacles", "parts", "instruction")
                if getattr(self, g) is not None]


@dataclass(frozen=True)
class PolicyConfig:
    """Everything needed to build, feed and interpret a policy."""

    name: str
    embodiment: str
    dt: float
    chunk_length: int
    architecture: dict[str, Any]
    observation: ObservationSpec
    action: FeatureGroup
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def action_dim(self) -> int:
        """Number of action channels."""
        return len(self.action.names)

    def to_json(self) -> dict[str, Any]:
        """The config as a JSON-ready dict (the inverse of `parse_config`)."""
        obs: dict[str, Any] = {}
        o = self.observation
        for key in ("image", "wrist_image"):
            camera: ImageSpec | None = getattr(o, key)
            if camera is not None:
                obs[key] = {"shape": list(camera.shape), "mean": list(camera.mean), "std": list(camera.std)}
        if o.state is not None:
            obs["state"] = _group_json(o.state, "names")
        for key in ("obstacles", "parts"):
            group: TokenGroup | None = getattr(o, key)
            if group is not None:
                obs[key] = {"max_count": group.max_count, **_group_json(group.features, "features")}
                if group.min_x is not None:
                    obs[key]["min_x"] = group.min_x
        if o.instruction is not None:
            obs["instruction"] = asdict(o.instruction)
        out = {"format_version": self.format_version, "name": self.name, "embodiment": self.embodiment,
               "dt": self.dt, "chunk_length": self.chunk_length, "architecture": dict(self.architecture),
               "observation": obs, "action": _group_json(self.action, "names")}
        out.update(self.extra)
        return out


def _group_json(group: FeatureGroup, names_key: str) -> dict[str, Any]:
    return {names_key: list(group.names), "units": list(group.units), "mean": list(group.mean),
            "std": list(group.std)}


# ---- validation ---------------------------------------------------------------------------------------------
def _req(d: dict[str, Any], key: str, where: str) -> Any:
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected an object, got {type(d).__name__}")
    if key not in d:
        raise ConfigError(f"{where}.{key}: missing".lstrip("."))
    return d[key]


def _number(value: Any, where: str, lo: float = -math.inf, hi: float = math.inf, integer: bool = False) -> float:
    ok_type = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_type):
        raise ConfigError(f"{where}: expected {'an integer' if integer else 'a number'}, got {value!r}")
    if not math.isfinite(value) or not lo <= value <= hi:
        raise ConfigError(f"{where}: {value!r} outside [{lo}, {hi}]")
    return value


def _numbers(value: Any, where: str, length: int, positive: bool = False) -> tuple[float, ...]:
    if not isinstance(value, list) or len(value) != length:
        got = f"{len(value)} values" if isinstance(value, list) else repr(value)
        raise ConfigError(f"{where}: expected a list of {length} numbers, got {got}")
    lo = 1e-12 if positive else -math.inf
    return tuple(float(_number(v, f"{where}[{i}]", lo=lo)) for i, v in enumerate(value))


def _strings(value: Any, where: str, length: int | None = None, unique: bool = True) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: expected a non-empty list of non-empty strings, got {value!r}")
    if length is not None and len(value) != length:
        raise ConfigError(f"{where}: expected {length} entries, got {len(value)}")
    if unique and len(set(value)) != len(value):
        raise ConfigError(f"{where}: duplicate names in {value!r}")
    return tuple(value)


def _feature_group(d: Any, where: str, names_key: str, allowed: tuple[str, ...] | None = None) -> FeatureGroup:
    names = _strings(_req(d, names_key, where), f"{where}.{names_key}")
    if allowed is not None:
        unknown = [n for n in names if n not in allowed]
        if unknown:
            raise ConfigError(f"{where}.{names_key}: unknown {unknown}; known: {list(allowed)}")
    n = len(names)
    return FeatureGroup(names=names, units=_strings(_req(d, "units", where), f"{where}.units", n, unique=False),
                        mean=_numbers(_req(d, "mean", where), f"{where}.mean", n),
                        std=_numbers(_req(d, "std", where), f"{where}.std", n, positive=True))


def _state_name_ok(name: str) -> bool:
    parts = name.split(".")
    if parts[0] == "odom":
        return len(parts) == 2 and parts[1] in ("x", "y", "yaw", "vx", "vy", "wz")
    if parts[0] == "tactile":
        return len(parts) == 3 and parts[2] in ("force", "contact", "slip")
    return len(parts) == 2 and parts[1] in ("position", "velocity")


def parse_config(raw: dict[str, Any]) -> PolicyConfig:
    """Validate a config dict and return a `PolicyConfig`; raise `ConfigError` naming the first bad field."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a JSON object, got {type(raw).__name__}")
    version = _number(_req(raw, "format_version", ""), "format_version", integer=True)
    if version != FORMAT_VERSION:
        raise ConfigError(f"format_version: {version} not supported (this build reads {FORMAT_VERSION})")
    name = _req(raw, "name", "")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"name: expected a non-empty string, got {name!r}")
    embodiment = _req(raw, "embodiment", "")
    if not isinstance(embodiment, str) or not embodiment:
        raise ConfigError(f"embodiment: expected a non-empty string, got {embodiment!r}")
    dt = float(_number(_req(raw, "dt", ""), "dt", lo=1e-4, hi=10.0))
    chunk_length = int(_number(_req(raw, "chunk_length", ""), "chunk_length", lo=1, hi=1000, integer=True))
    arch = _req(raw, "architecture", "")
    if not isinstance(arch, dict):
        raise ConfigError("architecture: expected an object")
    if arch.get("type") not in ARCHITECTURES:
        raise ConfigError(f"architecture.type: {arch.get('type')!r} not one of {list(ARCHITECTURES)}")
    if arch["type"] in ("chunk_transformer", "multi_embodiment"):
        _validate_transformer(arch)
    if arch["type"] == "multi_embodiment":  # one embodiment's view of shared weights (policy/multi_embodiment.py)
        weights = arch.get("weights")
        if not isinstance(weights, str) or not weights.endswith(".safetensors") or Path(weights).is_absolute():
            raise ConfigError(f"architecture.weights: expected a relative path to a .safetensors file, got {weights!r}")

    obs_raw = _req(raw, "observation", "")
    if not isinstance(obs_raw, dict):
        raise ConfigError("observation: expected an object")
    unknown = set(obs_raw) - {"image", "wrist_image", "state", "obstacles", "parts", "instruction"}
    if unknown:
        raise ConfigError(f"observation: unknown groups {sorted(unknown)}")
    if "wrist_image" in obs_raw and arch["type"] != "remote":
        raise ConfigError("observation.wrist_image: only remote policies (architecture.type 'remote') take a "
                          "second camera; our models read one image")
    state = obstacles = parts = instruction = None
    image, wrist_image = (_image_spec(obs_raw[k], f"observation.{k}") if k in obs_raw else None
                          for k in ("image", "wrist_image"))
    if "state" in obs_raw:
        state = _feature_group(obs_raw["state"], "observation.state", "names")
        bad = [n for n in state.names if not _state_name_ok(n)]
        if bad:
            raise ConfigError(f"observation.state.names: cannot source {bad}; use {STATE_SOURCES}")
    for key, allowed in (("obstacles", OBSTACLE_FEATURES), ("parts", PART_FEATURES)):
        if key in obs_raw:
            d = obs_raw[key]
            where = f"observation.{key}"
            count = int(_number(_req(d, "max_count", where), f"{where}.max_count", lo=1, hi=256, integer=True))
            features = _feature_group(d, where, "features", allowed)
            min_x = d.get("min_x")
            if min_x is not None:
                if "x" not in features.names:
                    raise ConfigError(f"{where}.min_x: needs the feature 'x'")
                min_x = _number(min_x, f"{where}.min_x", lo=-100.0, hi=100.0)
            group = TokenGroup(max_count=count, features=features, min_x=min_x)
            if key == "obstacles":
                obstacles = group
            else:
                parts = group
    if "instruction" in obs_raw:
        d = obs_raw["instruction"]
        if not isinstance(d, dict):
            raise ConfigError("observation.instruction: expected an object")
        instruction = InstructionSpec(
            max_tokens=int(_number(d.get("max_tokens", 16), "observation.instruction.max_tokens", 1, 256, True)),
            vocab_size=int(_number(d.get("vocab_size", 512), "observation.instruction.vocab_size", 2, 65536, True)))
    observation = ObservationSpec(image=image, wrist_image=wrist_image, state=state, obstacles=obstacles,
                                  parts=parts, instruction=instruction)
    if not observation.groups():
        raise ConfigError("observation: at least one of image, state, obstacles, parts, instruction is required")
    action = _feature_group(_req(raw, "action", ""), "action", "names")
    known = {"format_version", "name", "embodiment", "dt", "chunk_length", "architecture", "observation", "action"}
    extra = {k: v for k, v in raw.items() if k not in known}
    return PolicyConfig(name=name, embodiment=embodiment, dt=dt, chunk_length=chunk_length, architecture=dict(arch),
                        observation=observation, action=action, format_version=int(version), extra=extra)


def _image_spec(d: Any, where: str) -> ImageSpec:
    shape = _req(d, "shape", where)
    if (not isinstance(shape, list) or len(shape) != 3 or shape[0] != 3
            or not all(isinstance(s, int) and 8 <= s <= 1024 for s in shape[1:])):
        raise ConfigError(f"{where}.shape: expected [3, height, width] with sizes 8..1024, got {shape!r}")
    return ImageSpec(shape=tuple(shape), mean=_numbers(d.get("mean", [0.5] * 3), f"{where}.mean", 3),
                     std=_numbers(d.get("std", [0.25] * 3), f"{where}.std", 3, positive=True))


def _validate_transformer(arch: dict[str, Any]) -> None:
    w = "architecture"
    d_model = _number(_req(arch, "d_model", w), f"{w}.d_model", 8, 1024, True)
    heads = _number(_req(arch, "n_heads", w), f"{w}.n_heads", 1, 64, True)
    if d_model % heads:
        raise ConfigError(f"{w}.n_heads: d_model {d_model} is not divisible by n_heads {heads}")
    _number(_req(arch, "n_layers", w), f"{w}.n_layers", 1, 24, True)
    _number(_req(arch, "ff_dim", w), f"{w}.ff_dim", 8, 8192, True)
    channels = _req(arch, "image_channels", w)
    if not isinstance(channels, list) or not channels or not all(isinstance(c, int) and 1 <= c <= 1024
                                                                  for c in channels):
        raise ConfigError(f"{w}.image_channels: expected a non-empty list of positive integers, got {channels!r}")
    _number(arch.get("image_grid", 4), f"{w}.image_grid", 1, 16, True)


def load_config(checkpoint_dir: str | Path) -> PolicyConfig:
    """Read and validate `<checkpoint_dir>/config.json`; errors name the file and the field."""
    path = Path(checkpoint_dir) / CONFIG_FILE
    if not path.is_file():
        subdirs = sorted(p.parent.name for p in Path(checkpoint_dir).glob(f"*/{CONFIG_FILE}"))
        hint = f"; a multi-embodiment checkpoint? pick one of {subdirs} as {checkpoint_dir}/<embodiment>" \
            if subdirs else ""
        raise ConfigError(f"{path}: not found (a checkpoint directory holds {CONFIG_FILE} and {WEIGHTS_FILE}){hint}")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON: {exc}") from exc
    try:
        return parse_config(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def save_config(config: PolicyConfig, checkpoint_dir: str | Path) -> Path:
    """Write `config.json` into `checkpoint_dir` (created if needed); return its path."""
    path = Path(checkpoint_dir)
    path.mkdir(parents=True, exist_ok=True)
    out = path / CONFIG_FILE
    out.write_text(json.dumps(config.to_json(), indent=2) + "\n")
    return out


def check_compatible(config: PolicyConfig, embodiment: str | None = None,
                     action_names: list[str] | tuple[str, ...] | None = None) -> None:
    """Raise `ConfigError` when a checkpoint does not fit the robot it is asked to drive."""
    if embodiment and config.embodiment != embodiment:
        raise ConfigError(f"embodiment: checkpoint {config.name!r} is for {config.embodiment!r}, "
                          f"this robot is {embodiment!r}")
    if action_names and tuple(action_names) != config.action.names:
        raise ConfigError(f"action.names: checkpoint has {list(config.action.names)}, robot expects "
                          f"{list(action_names)}")

"""Turn raw observations (numpy, SI units) into the fixed-shape arrays a policy model takes.

Raw observation dict (the argument of `Policy.infer`), keys as in the spec's observation groups:
    "image": (H, W, 3) uint8 RGB, any size (resized here)
    "state": (S,) float, in the order and units of `observation.state.names`
    "obstacles" / "parts": (n, F) float, features in spec order, any n >= 0 (nearest kept, then padded)
    "instruction": str
Missing or malformed entries raise `ObservationError`: a policy is never fed zeros in place of a sensor.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping

import cv2
import numpy as np

from physical_ai.perception.parts import canonical_pose
from physical_ai.policy.spec import PolicyConfig, TokenGroup


class ObservationError(ValueError):
    """An observation is missing, stale or malformed; the message names the entry."""


def model_input_names(config: PolicyConfig) -> list[str]:
    """Names (and order) of the model's input tensors for this spec."""
    names: list[str] = []
    for group in config.observation.groups():
        names.append(group)
        if group in ("obstacles", "parts"):
            names.append(f"{group}_mask")
    return names


def preprocess_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (3, height, width) float32 in [0, 1] (area resampling)."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ObservationError(f"image: expected (H, W, 3) RGB, got shape {image.shape}")
    if image.shape[:2] != (height, width):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    scale = 1.0 / 255.0 if image.dtype == np.uint8 else 1.0
    return np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) * np.float32(scale)


def tokenize_instruction(text: str, max_tokens: int, vocab_size: int) -> np.ndarray:
    """Hash lower-cased words into ids 1..vocab_size-1 (0 pads); stable across runs and machines."""
    words = re.findall(r"[a-z0-9]+", text.lower())[:max_tokens]
    ids = np.zeros(max_tokens, dtype=np.int64)
    ids[:len(words)] = [1 + zlib.crc32(w.encode()) % (vocab_size - 1) for w in words]
    return ids


def pad_tokens(values: np.ndarray, group: TokenGroup, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(n, F) objects -> ((max_count, F) float32, (max_count,) float32 mask); nearest objects kept first.

    Objects behind the group's `min_x` are left out first.
    """
    n_feat = len(group.features.names)
    values = np.asarray(values, dtype=np.float32).reshape(-1, n_feat) if np.size(values) else np.zeros((0, n_feat),
                                                                                                      np.float32)
    if values.ndim != 2 or values.shape[1] != n_feat:
        raise ObservationError(f"{name}: expected (n, {n_feat}) features {list(group.features.names)}, "
                               f"got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ObservationError(f"{name}: non-finite values")
    if group.min_x is not None:
        values = values[values[:, group.features.names.index("x")] >= group.min_x]
    if len(values) > group.max_count:
        xy = [group.features.names.index(k) for k in ("x", "y") if k in group.features.names]
        order = np.argsort(np.linalg.norm(values[:, xy], axis=1)) if xy else np.arange(len(values))
        values = values[order[:group.max_count]]
    out = np.zeros((group.max_count, n_feat), dtype=np.float32)
    mask = np.zeros(group.max_count, dtype=np.float32)
    out[:len(values)] = values
    mask[:len(values)] = 1.0
    return out, mask


def part_rows(positions: np.ndarray, yaws: np.ndarray, sizes: np.ndarray, confidences: np.ndarray,
              names: tuple[str, ...] | list[str]) -> np.ndarray:
    """Part feature rows (spec order `names`) from fitted parts, the pose made symmetry-safe first.

    The one place part poses become features, for the training env (from the perception core's fits) and the
    policy_inference node (from DetectedPart messages): the yaw and footprint sides go through
    `physical_ai.perception.parts.canonical_pose` (a square's yaw is defined up to a quarter turn, a rectangle's
    up to a half turn; the fit picks any), then the yaw becomes the z-rotation quaternion. "is_target" is 0 here
    (`ground_parts` sets it).

    Args:
        positions: (n, 3) part centres [m].
        yaws: (n,) fitted yaws [rad].
        sizes: (n, 3) fitted sizes (x along the yaw, y, height) [m].
        confidences: (n,) fit confidences.
        names: the spec's part feature names.

    Returns:
        (n, len(names)) float64.
    """
    positions = np.asarray(positions, np.float64).reshape(-1, 3)
    sizes = np.asarray(sizes, np.float64).reshape(-1, 3)
    yaw, short, long = canonical_pose(np.asarray(yaws, np.float64).reshape(-1), sizes[:, 0], sizes[:, 1])
    zero = np.zeros(len(positions))
    columns = {"x": positions[:, 0], "y": positions[:, 1], "z": positions[:, 2], "qx": zero, "qy": zero,
               "qz": np.sin(yaw / 2), "qw": np.cos(yaw / 2), "size_x": short, "size_y": long, "size_z": sizes[:, 2],
               "confidence": np.asarray(confidences, np.float64).reshape(-1), "is_target": zero}
    unknown = [n for n in names if n not in columns]
    if unknown:
        raise ObservationError(f"parts: no source for features {unknown}")
    return np.stack([columns[n] for n in names], axis=1) if names else np.zeros((len(positions), 0))


# Perceived part label (physical_ai.perception.parts) of each part name an instruction may use.
PART_NAME_LABELS = {"cube": "cube", "cylinder": "cylinder", "prism": "box", "box": "box"}


def instruction_part_label(instruction: str) -> str | None:
    """The perceived label of the part an instruction names ("put the prism in the bin" -> "box"), else None."""
    for word in re.findall(r"[a-z]+", instruction.lower()):
        if word in PART_NAME_LABELS:
            return PART_NAME_LABELS[word]
    return None


def ground_parts(values: np.ndarray, labels: list[str] | tuple[str, ...], instruction: str,
                 names: tuple[str, ...] | list[str], max_grasp_width: float = 0.08) -> np.ndarray:
    """Fill the "is_target" part feature: 1 where a part's perceived label is the part the instruction names.

    The one place the grounding is computed, for the training env and the policy_inference node alike. Objects
    too wide for the gripper in both footprint directions (the bin, also fitted as a "box") are never the target.

    Args:
        values: (n, len(names)) part features; the "is_target" column (if in `names`) is overwritten.
        labels: the n perceived labels ("cube", "cylinder", "box").
        instruction: the task text.
        names: the spec's part feature names.
        max_grasp_width: widest graspable footprint side, the gripper's opening [m] (needs size_x and size_y).

    Returns:
        A float64 copy of `values` with the flag set (unchanged when `names` has no "is_target").
    """
    out = np.array(values, dtype=np.float64).reshape(-1, len(names))
    if len(labels) != len(out):
        raise ObservationError(f"parts: {len(out)} parts but {len(labels)} labels")
    if "is_target" in names:
        target = instruction_part_label(instruction)
        flag = np.array([target is not None and lab == target for lab in labels], dtype=bool)
        if "size_x" in names and "size_y" in names:
            sizes = out[:, [list(names).index("size_x"), list(names).index("size_y")]]
            flag &= sizes.min(axis=1, initial=np.inf) <= max_grasp_width
        out[:, list(names).index("is_target")] = flag
    return out


def model_inputs(config: PolicyConfig, obs: Mapping[str, object]) -> dict[str, np.ndarray]:
    """Raw observation dict -> batch-1 model inputs keyed by `model_input_names(config)`."""
    spec = config.observation
    out: dict[str, np.ndarray] = {}
    for group in spec.groups():
        if group not in obs or obs[group] is None:
            raise ObservationError(f"{group}: missing (the model {config.name!r} needs it)")
    if spec.image is not None:
        _, h, w = spec.image.shape
        out["image"] = preprocess_image(np.asarray(obs["image"]), h, w)[None]
    if spec.state is not None:
        state = np.array(obs["state"], dtype=np.float32).reshape(-1)
        if state.shape[0] != len(spec.state.names):
            raise ObservationError(f"state: expected {len(spec.state.names)} values {list(spec.state.names)}, "
                                   f"got {state.shape[0]}")
        if not np.isfinite(state).all():
            bad = [spec.state.names[i] for i in np.flatnonzero(~np.isfinite(state))]
            raise ObservationError(f"state: non-finite values in {bad}")
        out["state"] = state[None]
    for group in ("obstacles", "parts"):
        tokens: TokenGroup | None = getattr(spec, group)
        if tokens is not None:
            values, mask = pad_tokens(np.asarray(obs[group]), tokens, group)
            out[group] = values[None]
            out[f"{group}_mask"] = mask[None]
    if spec.instruction is not None:
        text = obs["instruction"]
        if not isinstance(text, str):
            raise ObservationError(f"instruction: expected a string, got {type(text).__name__}")
        out["instruction"] = tokenize_instruction(text, spec.instruction.max_tokens, spec.instruction.vocab_size)[None]
    return out


def assemble_state(names: tuple[str, ...] | list[str],
                   joints: Mapping[str, tuple[float, float, float]] | None = None,
                   odom: tuple[np.ndarray, np.ndarray] | None = None,
                   tactile: Mapping[str, tuple[float, bool, bool]] | None = None) -> np.ndarray:
    """Build the state vector for `names` (see spec.STATE_SOURCES) from decoded sensor data.

    Args:
        names: state feature names, e.g. "joint1.position", "odom.vx", "tactile.left.force".
        joints: joint name -> (position, velocity, effort), from /joint_states.
        odom: (4x4 pose, 6-vector twist [vx, vy, vz, wx, wy, wz]) from /odom.
        tactile: pad name -> (normal force [N], in contact, slip).

    Raises:
        ObservationError: naming the first feature whose source is missing.
    """
    out = np.empty(len(names), dtype=np.float64)
    for i, name in enumerate(names):
        head, _, rest = name.partition(".")
        if head == "odom":
            if odom is None:
                raise ObservationError(f"state {name}: no odometry received")
            pose, twist = odom
            out[i] = {"x": pose[0, 3], "y": pose[1, 3], "yaw": np.arctan2(pose[1, 0], pose[0, 0]),
                      "vx": twist[0], "vy": twist[1], "wz": twist[5]}[rest]
        elif head == "tactile":
            pad, _, key = rest.partition(".")
            if tactile is None or pad not in tactile:
                raise ObservationError(f"state {name}: no tactile pad {pad!r} received")
            force, contact, slip = tactile[pad]
            out[i] = {"force": force, "contact": float(contact), "slip": float(slip)}[key]
        else:
            if joints is None or head not in joints:
                raise ObservationError(f"state {name}: joint {head!r} not in joint_states")
            position, velocity, _ = joints[head]
            out[i] = position if rest == "position" else velocity
    return out

"""The one input-validation layer: every message a node receives is checked here before any node logic sees it.

A message that is legal on the wire can still break a node: a `builtin_interfaces/Time` with `nanosec >= 1e9`, a
NaN map resolution, a 5 M-point cloud, an obstacle at 1e5 m/s, a 20 MB instruction string. `check` returns the
first problem as a short reason code (counted per topic on /diagnostics) and a detail for the log, or None.

Checks, in order (each bounded in time, cheapest first):
- sizes: sequence lengths, byte counts, point/pixel/cell counts, string lengths against `InputLimits`, before any
  element is looked at (so an oversized message costs O(1) to reject);
- structure, for every message type (walked generically from the type's field table): every `Time`/`Duration`
  has `0 <= nanosec < 1e9` and a Time `sec >= 0`; every scalar float is finite and within `max_abs`; every
  `frame_id`/`child_frame_id` is printable, without spaces, and at most `max_frame_id` characters;
- content, per type: layouts that must agree (PointCloud2 fields/steps/data, Image step/data, OccupancyGrid cells),
  calibrated camera matrices, unique joint names, finite joint positions/velocities, physically possible obstacle
  speeds and sizes.

The module is ROS-free: messages are used through their attributes and `get_fields_and_field_types()`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class InputLimits:
    """Caps on what one message may hold. Larger messages are dropped (counted), not downsampled.

    Attributes:
        max_points: points of a PointCloud2 (width x height), beams of a LaserScan, taxels of a pad.
        max_bytes: bytes of any one array field (the shipped shared-memory segment is 32 MiB).
        max_image_pixels: width x height of an Image or CameraInfo (default: 2048 x 1536).
        max_grid_cells: cells of an OccupancyGrid.
        max_items: elements of any sequence of messages or strings (transforms, poses, joint names, points).
        max_obstacles: obstacles in one ObstacleArray.
        max_string_bytes: characters of any string field (an instruction included).
        max_frame_id: characters of a frame id.
        max_abs: magnitude of any scalar float [SI units]: UTM coordinates and the 1e9 "none" sentinels of
            status messages fit.
        max_obstacle_speed_mps: speed of a tracked obstacle [m/s].
        max_obstacle_size_m: edge of an obstacle box [m].
    """

    max_points: int = 500_000
    max_bytes: int = 32 * 1024 * 1024
    max_image_pixels: int = 2048 * 1536
    max_grid_cells: int = 16_000_000
    max_items: int = 10_000
    max_obstacles: int = 1_000
    max_string_bytes: int = 4_096
    max_frame_id: int = 256
    max_abs: float = 1e10
    max_obstacle_speed_mps: float = 100.0
    max_obstacle_size_m: float = 1_000.0


class Invalid(NamedTuple):
    """Why a message was dropped: `reason` is a short code (a counter key), `detail` says what was wrong."""

    reason: str
    detail: str


def type_name(msg: Any) -> str:
    """`pkg/Type` of a generated ROS message instance (module `pkg.msg._type`)."""
    return f"{type(msg).__module__.split('.', 1)[0]}/{type(msg).__name__}"


# Scalar floats that may legitimately be inf (status fields meaning "none").
NONFINITE_OK = {"physical_ai_stack/CorrectionStatus": frozenset({"time_to_collision_s"})}
_FLOATS = frozenset({"float", "double", "float32", "float64"})
_STRINGS = ("string", "wstring")
_FRAME_FIELDS = frozenset({"frame_id", "child_frame_id"})


_PLANS: dict[type, list[tuple[str, str, str]]] = {}


def _plan(cls: type) -> list[tuple[str, str, str]]:
    """(field, kind, message type of a msg/msgseq field) per field of a message class, cached.

    Kinds: time, duration, float, string, msg, msgseq (of messages), strseq (of strings), array (of numbers), other.
    """
    cached = _PLANS.get(cls)
    if cached is not None:
        return cached
    plan = []
    for field, ftype in cls.get_fields_and_field_types().items():
        inner = ftype
        if ftype == "builtin_interfaces/Time":
            kind = "time"
        elif ftype == "builtin_interfaces/Duration":
            kind = "duration"
        elif ftype in _FLOATS:
            kind = "float"
        elif ftype.startswith(_STRINGS):
            kind = "string"
        elif ftype.startswith("sequence<") or ftype.endswith("]"):
            inner = ftype[len("sequence<"):].split(",")[0].rstrip(">") if ftype.startswith("sequence<") \
                else ftype[:ftype.index("[")]
            kind = "msgseq" if "/" in inner else "strseq" if inner.startswith(_STRINGS) else "array"
        elif "/" in ftype:
            kind = "msg"
        else:
            kind = "other"
        plan.append((field, kind, inner if kind in ("msg", "msgseq") else ""))
    _PLANS[cls] = plan
    return plan


def _walk(msg: Any, limits: InputLimits, path: str, nonfinite_ok: frozenset[str]) -> Invalid | None:
    """The structural checks of the module docstring, depth first."""
    for field, kind, _ in _plan(type(msg)):
        value = getattr(msg, field)
        where = f"{path}.{field}" if path else field
        if kind == "time" or kind == "duration":
            if not 0 <= value.nanosec < NS_PER_S:
                return Invalid("stamp", f"{where}.nanosec = {value.nanosec} outside [0, 1e9)")
            if kind == "time" and value.sec < 0:
                return Invalid("stamp", f"{where}.sec = {value.sec} < 0")
        elif kind == "float":
            if not math.isfinite(value):
                if field not in nonfinite_ok:
                    return Invalid("nonfinite", f"{where} = {value}")
            elif abs(value) > limits.max_abs:
                return Invalid("out_of_range", f"|{where}| = {abs(value):.3g} > {limits.max_abs:.3g}")
        elif kind == "string":
            if len(value) > limits.max_string_bytes:
                return Invalid("too_large", f"{where} has {len(value)} characters > {limits.max_string_bytes}")
            if field in _FRAME_FIELDS and (len(value) > limits.max_frame_id or not value.isprintable()
                                           or any(c.isspace() for c in value)):
                return Invalid("frame_id", f"{where} = {value[:40]!r}: printable, no spaces, "
                               f"<= {limits.max_frame_id} characters")
        elif kind == "msg":
            bad = _walk(value, limits, where, frozenset())
            if bad is not None:
                return bad
        elif kind in ("msgseq", "strseq", "array"):
            cap = limits.max_bytes if kind == "array" else limits.max_items
            n = len(value)
            if n > cap:
                return Invalid("too_large", f"{where} has {n} elements > {cap}")
            if kind == "array" and getattr(value, "itemsize", 1) * n > limits.max_bytes:
                return Invalid("too_large", f"{where} has {value.itemsize * n} B > {limits.max_bytes}")
            if kind == "strseq":
                for i, s in enumerate(value):
                    if len(s) > limits.max_string_bytes:
                        return Invalid("too_large", f"{where}[{i}] has {len(s)} characters")
            elif kind == "msgseq":
                for i, item in enumerate(value):
                    bad = _walk(item, limits, f"{where}[{i}]", frozenset())
                    if bad is not None:
                        return bad
    return None


# The walk above says what is wrong; it is slow (a getattr chain per field). Each message class also gets a
# generated checker that only says whether anything is wrong, inlining every field of nested messages (one
# comparison per float: `abs(v) <= max_abs` is False for NaN and inf). Valid messages, nearly all of them, take the
# fast path; only a message it refuses is walked again for the reason.
_FAST: dict[tuple[type, frozenset[str]], Callable[[Any, InputLimits], bool]] = {}


def _message_class(name: str) -> type:
    """The class of a `pkg/Type` field type (its package is already imported: a message holding it exists)."""
    import sys

    pkg, _, type_ = name.partition("/")
    return getattr(sys.modules[f"{pkg}.msg"], type_)


def _frame_ok(value: str, limits: InputLimits) -> bool:
    return len(value) <= limits.max_frame_id and value.isprintable() and not any(c.isspace() for c in value)


def _strings_ok(values: Any, limits: InputLimits) -> bool:
    return len(values) <= limits.max_items and all(len(v) <= limits.max_string_bytes for v in values)


def _array_ok(values: Any, limits: InputLimits) -> bool:
    n = len(values)
    return n <= limits.max_bytes and n * getattr(values, "itemsize", 1) <= limits.max_bytes


def _fast_checker(cls: type, nonfinite_ok: frozenset[str] = frozenset()) -> Callable[[Any, InputLimits], bool]:
    key = (cls, nonfinite_ok)
    checker = _FAST.get(key)
    if checker is not None:
        return checker
    lines: list[str] = []
    helpers: dict[str, Any] = {"_frame_ok": _frame_ok, "_strings_ok": _strings_ok, "_array_ok": _array_ok,
                               "_isfinite": math.isfinite}

    def emit(expr: str, c: type, indent: str, ok: frozenset[str]) -> None:
        for field, kind, inner in _plan(c):
            v = f"{expr}.{field}"
            if kind in ("time", "duration", "float", "string"):  # read once
                local = f"v{len(lines)}"
                lines.append(f"{indent}{local} = {v}")
                v = local
            if kind in ("time", "duration"):
                cond = f"0 <= {v}.nanosec < {NS_PER_S}" + (f" and {v}.sec >= 0" if kind == "time" else "")
                lines.append(f"{indent}if not ({cond}): return False")
            elif kind == "float":
                if field in ok:
                    lines.append(f"{indent}if _isfinite({v}) and abs({v}) > L.max_abs: return False")
                else:
                    lines.append(f"{indent}if not abs({v}) <= L.max_abs: return False")
            elif kind == "string":
                lines.append(f"{indent}if len({v}) > L.max_string_bytes: return False")
                if field in _FRAME_FIELDS:
                    lines.append(f"{indent}if not _frame_ok({v}, L): return False")
            elif kind == "msg":  # held in a local: each attribute of a generated message is a property call
                local = f"n{len(lines)}"
                lines.append(f"{indent}{local} = {v}")
                emit(local, _message_class(inner), indent, frozenset())
            elif kind == "strseq":
                lines.append(f"{indent}if not _strings_ok({v}, L): return False")
            elif kind == "array":
                lines.append(f"{indent}if not _array_ok({v}, L): return False")
            elif kind == "msgseq":
                seq, element = f"s{len(lines)}", f"e{len(lines)}"
                lines.append(f"{indent}{seq} = {v}")
                lines.append(f"{indent}if len({seq}) > L.max_items: return False")
                lines.append(f"{indent}for {element} in {seq}:")
                emit(element, _message_class(inner), indent + "    ", frozenset())
                lines.append(f"{indent}    pass")

    emit("m", cls, "    ", nonfinite_ok)
    source = "def fast(m, L):\n" + "\n".join(lines) + "\n    return True\n"
    exec(compile(source, f"<validation:{cls.__name__}>", "exec"), helpers)
    checker = helpers["fast"]
    _FAST[key] = checker
    return checker


# ---- per-type content checks (after the structural walk) ---------------------------------------------------------

def _finite(values: Any) -> bool:
    return bool(np.isfinite(np.asarray(values, dtype=np.float64)).all())


def _pointcloud2(msg: Any, limits: InputLimits) -> Invalid | None:
    n = int(msg.width) * int(msg.height)
    if n > limits.max_points:
        return Invalid("too_large", f"{msg.width} x {msg.height} = {n} points > {limits.max_points}")
    if len(msg.data) > limits.max_bytes:
        return _too_many("bytes", len(msg.data), limits.max_bytes)
    if msg.point_step < 1 or msg.row_step < msg.width * msg.point_step:
        return Invalid("layout", f"point_step {msg.point_step}, row_step {msg.row_step} for width {msg.width}")
    if len(msg.data) != msg.row_step * msg.height:
        return Invalid("layout", f"{len(msg.data)} B of data, row_step x height = {msg.row_step * msg.height}")
    from physical_ai.convert import pointfields_to_dtype  # layout of the fields inside point_step

    try:
        pointfields_to_dtype(msg.fields, msg.point_step, msg.is_bigendian)
    except ValueError as exc:
        return Invalid("layout", str(exc))
    return None


def _laserscan(msg: Any, limits: InputLimits) -> Invalid | None:
    n = len(msg.ranges)
    if n > limits.max_points:
        return _too_many("beams", n, limits.max_points)
    if len(msg.intensities) not in (0, n):
        return Invalid("layout", f"{len(msg.intensities)} intensities for {n} ranges")
    if n > 1 and msg.angle_increment == 0.0:
        return Invalid("layout", "angle_increment 0")
    if not 0.0 <= msg.range_min <= msg.range_max:
        return Invalid("out_of_range", f"range_min {msg.range_min}, range_max {msg.range_max}")
    return None


def _image(msg: Any, limits: InputLimits) -> Invalid | None:
    pixels = int(msg.width) * int(msg.height)
    if pixels > limits.max_image_pixels:
        return Invalid("too_large", f"{msg.width} x {msg.height} pixels > {limits.max_image_pixels}")
    if len(msg.data) > limits.max_bytes:
        return _too_many("bytes", len(msg.data), limits.max_bytes)
    if msg.step < msg.width or len(msg.data) != msg.step * msg.height:
        return Invalid("layout", f"{len(msg.data)} B of data, step {msg.step} x height {msg.height}, "
                       f"width {msg.width}")
    return None


def _camera_info(msg: Any, limits: InputLimits) -> Invalid | None:
    if int(msg.width) * int(msg.height) > limits.max_image_pixels:
        return Invalid("too_large", f"{msg.width} x {msg.height} pixels > {limits.max_image_pixels}")
    k = np.asarray(msg.k, dtype=np.float64)
    if not np.isfinite(k).all() or k[0] <= 0 or k[4] <= 0 or not np.isfinite(np.asarray(msg.p, np.float64)).all():
        return Invalid("uncalibrated", f"K = {k.tolist()}: finite, positive focal lengths expected")
    if not _finite(msg.d):
        return Invalid("nonfinite", "distortion coefficients")
    return None


def _too_many(what: str, n: int, cap: int) -> Invalid | None:
    return Invalid("too_large", f"{n} {what} > {cap}") if n > cap else None


def _names(what: str, names: Any, limits: InputLimits) -> Invalid | None:
    """A list of names is bounded and has no repeats (a repeated joint would be commanded twice)."""
    if len(names) > limits.max_items:
        return _too_many(what, len(names), limits.max_items)
    if len(set(names)) != len(names):
        return Invalid("duplicate_names", f"{what} {list(names)[:20]}")
    return None


def _joint_state(msg: Any, limits: InputLimits) -> Invalid | None:
    if (bad := _names("joint names", msg.name, limits)) is not None:
        return bad
    n = len(msg.name)
    for label in ("position", "velocity", "effort"):
        if len(getattr(msg, label)) not in (0, n):
            return Invalid("layout", f"{len(getattr(msg, label))} {label} values for {n} names")
    if not (_finite(msg.position) and _finite(msg.velocity)):  # NaN effort: drivers without torque sensing
        return Invalid("nonfinite", "joint position or velocity")
    return None


def _occupancy_grid(msg: Any, limits: InputLimits) -> Invalid | None:
    info = msg.info
    cells = int(info.width) * int(info.height)
    if cells > limits.max_grid_cells:
        return Invalid("too_large", f"{info.width} x {info.height} cells > {limits.max_grid_cells}")
    if cells != len(msg.data):
        return Invalid("layout", f"{len(msg.data)} cells of data for {info.width} x {info.height}")
    if not info.resolution > 0.0:
        return Invalid("out_of_range", f"resolution {info.resolution} must be > 0")
    return None


def _obstacle_array(msg: Any, limits: InputLimits) -> Invalid | None:
    if len(msg.obstacles) > limits.max_obstacles:
        return _too_many("obstacles", len(msg.obstacles), limits.max_obstacles)
    for i, o in enumerate(msg.obstacles):
        speed = math.hypot(o.velocity.x, o.velocity.y, o.velocity.z)
        if speed > limits.max_obstacle_speed_mps:
            return Invalid("out_of_range", f"obstacles[{i}] speed {speed:.3g} m/s > {limits.max_obstacle_speed_mps}")
        size = (o.size.x, o.size.y, o.size.z)
        if min(size) < 0.0 or max(size) > limits.max_obstacle_size_m:
            return Invalid("out_of_range", f"obstacles[{i}] size {size} outside [0, {limits.max_obstacle_size_m}]")
        if o.prediction_dt < 0.0:
            return Invalid("out_of_range", f"obstacles[{i}] prediction_dt {o.prediction_dt} < 0")
    return None


def _action_chunk(msg: Any, limits: InputLimits) -> Invalid | None:
    # Values, horizon and names are checked against the robot by the corrector, which reports its reasons.
    if int(msg.horizon) > limits.max_items:
        return _too_many("steps", int(msg.horizon), limits.max_items)
    if len(msg.values) > limits.max_points:  # a policy server's 6.5 M-step reply is refused here too
        return _too_many("values", len(msg.values), limits.max_points)
    return _names("action names", msg.action_names, limits)


def _joint_trajectory(msg: Any, limits: InputLimits) -> Invalid | None:
    return _names("joint names", msg.joint_names, limits)


def _tactile_state(msg: Any, limits: InputLimits) -> Invalid | None:
    if len(msg.pads) > limits.max_items:
        return _too_many("pads", len(msg.pads), limits.max_items)
    for pad in msg.pads:
        if int(pad.rows) * int(pad.cols) > limits.max_points:
            return Invalid("too_large", f"pad {pad.name!r}: {pad.rows} x {pad.cols} taxels > {limits.max_points}")
    return None


CONTENT_CHECKS: dict[str, Callable[[Any, InputLimits], Invalid | None]] = {
    "sensor_msgs/PointCloud2": _pointcloud2,
    "sensor_msgs/LaserScan": _laserscan,
    "sensor_msgs/Image": _image,
    "sensor_msgs/CameraInfo": _camera_info,
    "sensor_msgs/JointState": _joint_state,
    "nav_msgs/OccupancyGrid": _occupancy_grid,
    "physical_ai_stack/ObstacleArray": _obstacle_array,
    "physical_ai_stack/ActionChunk": _action_chunk,
    "physical_ai_stack/TactileState": _tactile_state,
    "trajectory_msgs/JointTrajectory": _joint_trajectory,
}


def check(msg: Any, limits: InputLimits = InputLimits()) -> Invalid | None:
    """The first problem with a received message, or None when it may reach node logic.

    The type's content checks run first: they start with the sizes that need no walk (a 5 M-point cloud or 20k
    obstacles are refused before any element is read); then the structural walk. Never raises for a generated
    ROS message.
    """
    name = type_name(msg)
    content = CONTENT_CHECKS.get(name)
    bad = content(msg, limits) if content is not None else None
    if bad is None:
        nonfinite_ok = NONFINITE_OK.get(name, frozenset())
        if not _fast_checker(type(msg), nonfinite_ok)(msg, limits):
            bad = _walk(msg, limits, "", nonfinite_ok) or Invalid("invalid", "refused by the fast check")
    return bad


# One definition of each cap as a node parameter (`input_<name>`): description with unit, and allowed range.
LIMIT_PARAMETERS: dict[str, tuple[str, tuple[float, float]]] = {
    "max_points": ("Largest PointCloud2 (width x height) / LaserScan / tactile pad accepted [points]", (1, 10**8)),
    "max_bytes": ("Largest array field of any message accepted [B]", (1, 2**31 - 1)),
    "max_image_pixels": ("Largest Image / CameraInfo (width x height) accepted [pixels]", (1, 10**9)),
    "max_grid_cells": ("Largest OccupancyGrid accepted [cells]", (1, 10**9)),
    "max_items": ("Longest sequence of messages or strings in a message accepted [elements]", (1, 10**8)),
    "max_obstacles": ("Most obstacles in one ObstacleArray accepted [obstacles]", (1, 10**7)),
    "max_string_bytes": ("Longest string field accepted (instructions included) [characters]", (1, 10**9)),
    "max_frame_id": ("Longest frame id accepted [characters]", (1, 10**6)),
    "max_abs": ("Largest magnitude of any scalar float accepted [SI unit of the field]", (1.0, 1e300)),
    "max_obstacle_speed_mps": ("Fastest obstacle accepted [m/s]", (0.0, 1e6)),
    "max_obstacle_size_m": ("Largest obstacle box edge accepted [m]", (0.0, 1e9)),
}

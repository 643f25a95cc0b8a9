"""Conversions between ROS 2 messages and numpy arrays, exact and without per-element Python loops.

The only module of the ROS-free core allowed to touch message classes. Everything else takes numpy.

Reading never copies unless the layout forces it (row padding, foreign byte order): arrays returned by
`image_to_numpy` and `pointcloud2_to_numpy` are views sharing memory with the message. Writing fills a zeroed
`array.array` through a numpy view (one pass); the generated message classes take an `array.array` with one
memcpy, whereas a numpy array or memoryview assigned to `msg.data` is iterated element by element (about 50 ms
for 2 MB). Large messages built and dropped at sensor rate make glibc return and re-fault their pages every time
(about 1.5 ms per 2 MB cloud); `physical_ai.memory.keep_large_buffers()`, called once at process start, avoids it.
"""

from __future__ import annotations

import array
import math
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import transforms3d.quaternions as tq
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Pose, Quaternion, Transform, TransformStamped, Vector3
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CameraInfo, Image, JointState, LaserScan, PointCloud2, PointField
from std_msgs.msg import Header

if TYPE_CHECKING:
    from physical_ai_stack.msg import ObstacleArray

NATIVE_BIG_ENDIAN = sys.byteorder == "big"
NS_PER_S = 1_000_000_000

# ---------------------------------------------------------------------------------------------------------------
# time and headers
# ---------------------------------------------------------------------------------------------------------------


def stamp_to_ns(stamp: Time) -> int:
    """Convert a `builtin_interfaces/Time` to integer nanoseconds.

    Raises:
        ValueError: if `nanosec` is not below one second.
    """
    if not 0 <= stamp.nanosec < NS_PER_S:
        raise ValueError(f"stamp nanosec {stamp.nanosec} outside [0, 1e9)")
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> Time:
    """Convert integer nanoseconds to a `builtin_interfaces/Time` (nanosec always in [0, 1e9))."""
    sec, nanosec = divmod(int(ns), NS_PER_S)
    if not -(2**31) <= sec < 2**31:
        raise ValueError(f"time {ns} ns does not fit builtin_interfaces/Time (int32 seconds)")
    return Time(sec=sec, nanosec=nanosec)


def make_header(frame_id: str = "", stamp_ns: int = 0) -> Header:
    """A `std_msgs/Header` with the given frame and stamp [ns]."""
    return Header(frame_id=frame_id, stamp=ns_to_stamp(stamp_ns))


def _zeroed_array(typecode: str, n: int) -> array.array:
    """A zero-filled `array.array` of n items (repetition allocates once; measured faster than frombytes)."""
    return array.array(typecode, b"\0" * array.array(typecode).itemsize) * n


def _byte_array(values: np.ndarray) -> array.array:
    """Copy a numpy array's bytes into an `array.array('B')`, the type message `uint8[]` fields store."""
    values = np.ascontiguousarray(values)
    out = _zeroed_array("B", values.nbytes)
    if values.nbytes:
        np.frombuffer(out, np.uint8)[:] = values.reshape(-1).view(np.uint8)
    return out


def _typed_array(typecode: str, values: np.ndarray | Sequence[float] | None, dtype: type) -> array.array:
    """Copy values into an `array.array` of `typecode` (native byte order) for float32[]/float64[] fields."""
    if values is None:
        return array.array(typecode)
    values = np.asarray(values, dtype=dtype).reshape(-1)
    out = _zeroed_array(typecode, values.size)
    if values.size:
        np.frombuffer(out, dtype)[:] = values
    return out


# ---------------------------------------------------------------------------------------------------------------
# Image
# ---------------------------------------------------------------------------------------------------------------

# encoding -> (element dtype, channels), as in sensor_msgs/image_encodings.hpp
IMAGE_ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "8UC3": (np.dtype(np.uint8), 3),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}


def _image_format(encoding: str) -> tuple[np.dtype, int]:
    try:
        return IMAGE_ENCODINGS[encoding]
    except KeyError:
        raise ValueError(f"unsupported image encoding {encoding!r}; supported: {', '.join(IMAGE_ENCODINGS)}") from None


def image_to_numpy(msg: Image) -> np.ndarray:
    """View an Image as an (H, W) or (H, W, C) array.

    The result shares memory with `msg.data` when the data is in native byte order (row padding is skipped with
    strides); big-endian data on a little-endian host is converted to a native copy.

    Raises:
        ValueError: unknown encoding, `step` shorter than a row, or `len(data) != step * height`.
    """
    dtype, channels = _image_format(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ValueError(f"image step {step} < width {width} x {channels} channel(s) x {dtype.itemsize} B "
                         f"= {row_bytes}")
    if len(msg.data) != step * height:
        raise ValueError(f"image data has {len(msg.data)} B, expected step {step} x height {height} = {step * height}")
    if msg.is_bigendian not in (0, 1, True, False):
        raise ValueError(f"image is_bigendian must be 0 or 1, got {msg.is_bigendian}")
    order = ">" if msg.is_bigendian else "<"
    element = dtype.newbyteorder(order) if dtype.itemsize > 1 else dtype
    shape = (height, width, channels) if channels > 1 else (height, width)
    strides = (step, channels * dtype.itemsize, dtype.itemsize) if channels > 1 else (step, dtype.itemsize)
    if height == 0 or width == 0:
        return np.zeros(shape, dtype)
    out = np.ndarray(shape, element, buffer=memoryview(msg.data).cast("B"), strides=strides)
    if not element.isnative:
        out = out.astype(dtype)
    return out


def numpy_to_image(array: np.ndarray, encoding: str, frame_id: str = "", stamp_ns: int = 0) -> Image:
    """Build an Image from an (H, W) or (H, W, C) array whose dtype and channels match `encoding`.

    Raises:
        ValueError: unknown encoding, or an array whose dtype/shape does not match it.
    """
    dtype, channels = _image_format(encoding)
    array = np.asarray(array)
    if array.dtype.newbyteorder("=") != dtype.newbyteorder("="):
        raise ValueError(f"encoding {encoding} needs dtype {dtype}, got {array.dtype}")
    if array.ndim == 3 and channels == 1 and array.shape[2] == 1:
        array = array[:, :, 0]
    expected_ndim = 3 if channels > 1 else 2
    if array.ndim != expected_ndim or (channels > 1 and array.shape[2] != channels):
        want = "(H, W)" if channels == 1 else f"(H, W, {channels})"
        raise ValueError(f"encoding {encoding} needs shape {want}, got {array.shape}")
    if not array.dtype.isnative:
        array = array.astype(dtype)
    height, width = array.shape[:2]
    msg = Image(header=make_header(frame_id, stamp_ns), height=height, width=width, encoding=encoding,
                is_bigendian=int(NATIVE_BIG_ENDIAN), step=width * channels * dtype.itemsize)
    msg.data = _byte_array(array)
    return msg


# ---------------------------------------------------------------------------------------------------------------
# PointCloud2
# ---------------------------------------------------------------------------------------------------------------

POINTFIELD_DTYPES: dict[int, np.dtype] = {
    PointField.INT8: np.dtype(np.int8),
    PointField.UINT8: np.dtype(np.uint8),
    PointField.INT16: np.dtype(np.int16),
    PointField.UINT16: np.dtype(np.uint16),
    PointField.INT32: np.dtype(np.int32),
    PointField.UINT32: np.dtype(np.uint32),
    PointField.FLOAT32: np.dtype(np.float32),
    PointField.FLOAT64: np.dtype(np.float64),
}
_DATATYPE_OF = {(dt.kind, dt.itemsize): code for code, dt in POINTFIELD_DTYPES.items()}


def pointfields_to_dtype(fields: Sequence[PointField], point_step: int, is_bigendian: bool = False) -> np.dtype:
    """The structured dtype of one point: named fields at their offsets, itemsize `point_step` (padding kept).

    Raises:
        ValueError: unknown datatype, empty or duplicate names, zero count, or a field past `point_step`.
    """
    order = ">" if is_bigendian else "<"
    names, formats, offsets = [], [], []
    for field in fields:
        if not field.name:
            raise ValueError("PointField with an empty name")
        if field.name in names:
            raise ValueError(f"duplicate PointField name {field.name!r}")
        if field.datatype not in POINTFIELD_DTYPES:
            raise ValueError(f"PointField {field.name!r} has unknown datatype {field.datatype} (valid: 1..8)")
        if field.count < 1:
            raise ValueError(f"PointField {field.name!r} has count {field.count}; must be >= 1")
        base = POINTFIELD_DTYPES[field.datatype].newbyteorder(order)
        end = field.offset + base.itemsize * field.count
        if end > point_step:
            raise ValueError(f"PointField {field.name!r} ends at byte {end}, beyond point_step {point_step}")
        names.append(field.name)
        formats.append(base if field.count == 1 else np.dtype((base, (field.count,))))
        offsets.append(field.offset)
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": point_step})


def pointcloud2_to_numpy(msg: PointCloud2, keep_organized: bool = False) -> np.ndarray:
    """View a PointCloud2 as a structured array with every field by name (byte order as in the message).

    Returns shape (height * width,), or (height, width) with `keep_organized`. It is a view of `msg.data` unless
    rows are padded (`row_step > width * point_step`) and a flat result is asked for.

    Raises:
        ValueError: malformed fields, `row_step` shorter than a row, or `len(data) != row_step * height`.
    """
    if msg.point_step < 1 and msg.width * msg.height > 0:
        raise ValueError(f"PointCloud2 point_step {msg.point_step} must be >= 1")
    dtype = pointfields_to_dtype(msg.fields, msg.point_step, bool(msg.is_bigendian))
    height, width, row_step = int(msg.height), int(msg.width), int(msg.row_step)
    if row_step < width * msg.point_step:
        raise ValueError(f"PointCloud2 row_step {row_step} < width {width} x point_step {msg.point_step}")
    if len(msg.data) != row_step * height:
        raise ValueError(f"PointCloud2 data has {len(msg.data)} B, expected row_step {row_step} x height {height} "
                         f"= {row_step * height}")
    if height == 0 or width == 0:
        out = np.zeros((height, width), dtype)
    else:
        out = np.ndarray((height, width), dtype, buffer=memoryview(msg.data).cast("B"),
                         strides=(row_step, msg.point_step))
    return out if keep_organized else out.reshape(-1)


def pointcloud2_columns(msg: PointCloud2, names: tuple[str, ...] = ("x", "y", "z")) -> list[np.ndarray]:
    """Scalar fields of a PointCloud2 by name, each a flat view of the message's data (no copy when unpadded).

    Raises:
        ValueError: a missing or multi-count field, or any malformation `pointcloud2_to_numpy` rejects.
    """
    points = pointcloud2_to_numpy(msg)
    for name in names:
        if name not in points.dtype.names:
            raise ValueError(f"PointCloud2 has no field {name!r} (fields: {', '.join(points.dtype.names)})")
        if points.dtype[name].shape:
            raise ValueError(f"PointCloud2 field {name!r} has count {points.dtype[name].shape[0]}; expected 1")
    return [points[name] for name in names]


def pointcloud2_to_xyz(msg: PointCloud2, extra_fields: tuple[str, ...] = (), skip_nans: bool = False) -> np.ndarray:
    """Return an (N, 3 + len(extra_fields)) float32 array of x, y, z and the extra fields, in point order.

    Args:
        msg: the cloud; x, y, z and every extra field must exist with count 1.
        extra_fields: further scalar fields to append as columns (converted to float32).
        skip_nans: drop points whose x, y or z is not finite.

    Raises:
        ValueError: a missing or multi-count field, or any malformation `pointcloud2_to_numpy` rejects.
    """
    columns = pointcloud2_columns(msg, ("x", "y", "z", *extra_fields))
    out = np.empty((len(columns[0]), len(columns)), np.float32)
    for i, column in enumerate(columns):
        out[:, i] = column
    if skip_nans:
        out = out[np.isfinite(out[:, :3]).all(axis=1)]
    return out


def _columns(fields: Mapping[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
    """Validated equal-length columns from a dict or an (N, 3)/(N, 4) float array (x, y, z[, intensity])."""
    if isinstance(fields, np.ndarray):
        if fields.ndim != 2 or fields.shape[1] not in (3, 4):
            raise ValueError(f"a plain array must be (N, 3) xyz or (N, 4) xyz+intensity, got {fields.shape}")
        fields = dict(zip(("x", "y", "z", "intensity"), fields.T.astype(np.float32, copy=False), strict=False))
    if not fields:
        raise ValueError("no point fields given")
    columns = {name: np.asarray(values) for name, values in fields.items()}
    lengths = {name: c.shape[0] if c.ndim else -1 for name, c in columns.items()}
    n = next(iter(lengths.values()))
    if n < 0 or any(length != n for length in lengths.values()):
        raise ValueError(f"point fields must be 1-D (or (N, count)) with one length, got lengths {lengths}")
    return columns


def _pointfields(dtype: np.dtype) -> tuple[list[PointField], bool | None]:
    """PointFields of a structured dtype and whether its multi-byte fields are big-endian (None: all 1-byte).

    Raises:
        ValueError: a dtype PointField cannot express, or fields of mixed byte order.
    """
    big = None
    point_fields = []
    for name in dtype.names:
        field_dtype, offset = dtype.fields[name][:2]
        base, count = (field_dtype.subdtype[0], int(np.prod(field_dtype.subdtype[1]))) if field_dtype.subdtype \
            else (field_dtype, 1)
        code = _DATATYPE_OF.get((base.kind, base.itemsize))
        if code is None or base.names is not None:
            raise ValueError(f"field {name!r} has dtype {base}, which PointField cannot represent")
        if base.itemsize > 1:
            field_big = base.byteorder == ">" or (base.byteorder == "=" and NATIVE_BIG_ENDIAN)
            if big is not None and big != field_big:
                raise ValueError("point fields have mixed byte orders")
            big = field_big
        point_fields.append(PointField(name=name, offset=offset, datatype=code, count=count))
    return point_fields, big


def numpy_to_pointcloud2(fields: Mapping[str, np.ndarray] | np.ndarray, frame_id: str = "",
                         stamp_ns: int = 0, is_dense: bool | None = None) -> PointCloud2:
    """Build an unorganised PointCloud2 (height 1).

    Args:
        fields: a dict name -> (N,) or (N, count) array (packed in that order, native byte order), a structured
            array (its layout, padding and byte order included, is kept), or an (N, 3)/(N, 4) float array meaning
            x, y, z[, intensity]. Dtypes: int8..uint32, float32, float64.
        frame_id: header frame.
        stamp_ns: header stamp [ns].
        is_dense: defaults to "x, y, z (when present) are all finite".

    Raises:
        ValueError: mismatched lengths or a dtype PointField cannot express (bool, int64, complex, nested records).
    """
    if isinstance(fields, np.ndarray) and fields.dtype.names is not None:
        points = fields.reshape(-1)
        try:
            point_fields, big = _pointfields(points.dtype)
        except ValueError as exc:
            if "mixed byte orders" not in str(exc):
                raise
            points = points.astype(points.dtype.newbyteorder("="))
            point_fields, big = _pointfields(points.dtype)
        data = _byte_array(points)
    else:
        columns = _columns(fields)
        dtype = np.dtype([(name, c.dtype.newbyteorder("="), c.shape[1:]) for name, c in columns.items()])
        point_fields, big = _pointfields(dtype)
        n = next(iter(columns.values())).shape[0]
        data = _zeroed_array("B", n * dtype.itemsize)
        points = np.frombuffer(data, dtype) if n else np.zeros(0, dtype)
        for name, c in columns.items():
            points[name] = c
    if is_dense is None:
        is_dense = all(name not in points.dtype.names or bool(np.isfinite(points[name]).all())
                       for name in ("x", "y", "z"))
    step = points.dtype.itemsize
    msg = PointCloud2(header=make_header(frame_id, stamp_ns), height=1, width=points.shape[0], fields=point_fields,
                      is_bigendian=bool(NATIVE_BIG_ENDIAN if big is None else big), point_step=step,
                      row_step=step * points.shape[0], is_dense=is_dense)
    msg.data = data
    return msg


# ---------------------------------------------------------------------------------------------------------------
# LaserScan
# ---------------------------------------------------------------------------------------------------------------


def laserscan_angles(msg: LaserScan) -> np.ndarray:
    """The beam angles [rad] of a scan, float64 (angle_min + i * angle_increment)."""
    return msg.angle_min + np.arange(len(msg.ranges), dtype=np.float64) * msg.angle_increment


def laserscan_to_xy(msg: LaserScan) -> np.ndarray:
    """Return the (N, 2) float32 points [m] of the valid beams (finite, within [range_min, range_max]).

    Raises:
        ValueError: non-finite angles/limits, a zero increment with several beams, or an intensities array whose
            length is neither 0 nor that of ranges.
    """
    ranges = np.frombuffer(msg.ranges, np.float32) if len(msg.ranges) else np.zeros(0, np.float32)
    if not all(math.isfinite(v) for v in (msg.angle_min, msg.angle_increment, msg.range_min, msg.range_max)):
        raise ValueError("LaserScan angle_min/angle_increment/range_min/range_max must be finite")
    if len(ranges) > 1 and msg.angle_increment == 0.0:
        raise ValueError(f"LaserScan with {len(ranges)} beams has angle_increment 0")
    if len(msg.intensities) not in (0, len(ranges)):
        raise ValueError(f"LaserScan has {len(msg.intensities)} intensities for {len(ranges)} ranges")
    valid = np.isfinite(ranges) & (ranges >= msg.range_min) & (ranges <= msg.range_max)
    angles = laserscan_angles(msg)[valid]
    r = ranges[valid].astype(np.float64)
    return np.stack((r * np.cos(angles), r * np.sin(angles)), axis=1).astype(np.float32)


def numpy_to_laserscan(ranges: np.ndarray, angle_min: float, angle_increment: float, range_min: float,
                       range_max: float, frame_id: str = "", stamp_ns: int = 0,
                       intensities: np.ndarray | None = None, scan_time: float = 0.0,
                       time_increment: float = 0.0) -> LaserScan:
    """Build a LaserScan from (N,) ranges [m] (inf/NaN for no return) and the beam geometry [rad].

    Raises:
        ValueError: ranges not 1-D, intensities of another length, or invalid limits.
    """
    ranges = np.asarray(ranges, np.float32)
    if ranges.ndim != 1:
        raise ValueError(f"ranges must be 1-D, got shape {ranges.shape}")
    if intensities is not None and np.shape(intensities) != ranges.shape:
        raise ValueError(f"intensities shape {np.shape(intensities)} != ranges shape {ranges.shape}")
    if not (math.isfinite(range_min) and math.isfinite(range_max) and 0 <= range_min <= range_max):
        raise ValueError(f"need 0 <= range_min <= range_max, got {range_min}, {range_max}")
    n = len(ranges)
    msg = LaserScan(header=make_header(frame_id, stamp_ns), angle_min=float(angle_min),
                    angle_max=float(angle_min + angle_increment * max(n - 1, 0)),
                    angle_increment=float(angle_increment), time_increment=float(time_increment),
                    scan_time=float(scan_time), range_min=float(range_min), range_max=float(range_max))
    msg.ranges = _typed_array("f", ranges, np.float32)
    msg.intensities = _typed_array("f", intensities, np.float32)
    return msg


# ---------------------------------------------------------------------------------------------------------------
# CameraInfo
# ---------------------------------------------------------------------------------------------------------------


def camera_info_to_matrix(msg: CameraInfo) -> np.ndarray:
    """The (3, 3) intrinsic matrix K of a CameraInfo.

    Raises:
        ValueError: K is all zeros (uncalibrated), non-finite, or not an upper-triangular pinhole matrix.
    """
    k = np.asarray(msg.k, np.float64).reshape(3, 3).copy()
    if not np.isfinite(k).all():
        raise ValueError("CameraInfo K has non-finite entries")
    if k[0, 0] <= 0 or k[1, 1] <= 0 or k[2, 2] != 1.0 or k[1, 0] or k[2, 0] or k[2, 1]:
        raise ValueError(f"CameraInfo K is not a calibrated pinhole matrix: {k.tolist()}")
    return k


def make_camera_info(width: int, height: int, K: np.ndarray, frame_id: str = "", stamp_ns: int = 0,
                     D: np.ndarray | None = None, distortion_model: str = "plumb_bob") -> CameraInfo:
    """CameraInfo for an unrectified pinhole camera: K as given, R identity, P = [K | 0], D (default zeros).

    Raises:
        ValueError: K not 3x3 finite with positive focal lengths, or non-positive image size.
    """
    K = np.asarray(K, np.float64)
    if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"K must be a finite 3x3 matrix with positive focal lengths, got {K.tolist()}")
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    P = np.zeros((3, 4))
    P[:, :3] = K
    D = np.zeros(5) if D is None else np.asarray(D, np.float64).reshape(-1)
    return CameraInfo(header=make_header(frame_id, stamp_ns), width=int(width), height=int(height),
                      distortion_model=distortion_model, d=D.tolist(), k=K.reshape(-1), r=np.eye(3).reshape(-1),
                      p=P.reshape(-1))


# ---------------------------------------------------------------------------------------------------------------
# JointState
# ---------------------------------------------------------------------------------------------------------------


def joint_state_to_dict(msg: JointState) -> dict[str, tuple[float, float, float]]:
    """Map each joint name to (position, velocity, effort); a missing array gives NaN.

    Raises:
        ValueError: duplicate names, or position/velocity/effort with a length other than 0 or len(name).
    """
    names = list(msg.name)
    n = len(names)
    if len(set(names)) != n:
        raise ValueError(f"JointState has duplicate names: {names}")
    columns = []
    for label in ("position", "velocity", "effort"):
        values = getattr(msg, label)
        if len(values) not in (0, n):
            raise ValueError(f"JointState has {len(values)} {label} values for {n} names")
        columns.append(np.asarray(values, np.float64) if len(values) else np.full(n, np.nan))
    return {name: (float(p), float(v), float(e)) for name, p, v, e in zip(names, *columns, strict=True)}


def make_joint_state(names: Sequence[str], positions: np.ndarray, velocities: np.ndarray | None = None,
                     efforts: np.ndarray | None = None, stamp_ns: int = 0) -> JointState:
    """Build a JointState; velocities/efforts may be omitted (left empty).

    Raises:
        ValueError: an array whose length differs from the number of names.
    """
    n = len(names)
    msg = JointState(header=make_header("", stamp_ns), name=list(names))
    for label, values in (("position", positions), ("velocity", velocities), ("effort", efforts)):
        if values is None:
            continue
        values = np.asarray(values, np.float64).reshape(-1)
        if len(values) != n:
            raise ValueError(f"{len(values)} {label} values for {n} joint names")
        setattr(msg, label, _typed_array("d", values, np.float64))
    return msg


# ---------------------------------------------------------------------------------------------------------------
# transforms, poses, odometry
# ---------------------------------------------------------------------------------------------------------------

QUATERNION_NORM_TOLERANCE = 1e-3  # |‖q‖² - 1| accepted (and renormalised); beyond that the message is malformed
_BOTTOM_ROW = np.array([0.0, 0.0, 0.0, 1.0])
_EYE3 = np.eye(3)


def quaternion_to_matrix(q: Quaternion) -> np.ndarray:
    """(3, 3) rotation of a geometry_msgs Quaternion (renormalised).

    Raises:
        ValueError: non-finite components or a norm far from 1.
    """
    wxyz = np.array((q.w, q.x, q.y, q.z), np.float64)
    norm2 = float(wxyz @ wxyz)
    if not math.isfinite(norm2) or abs(norm2 - 1.0) > QUATERNION_NORM_TOLERANCE:
        raise ValueError(f"quaternion (x={q.x}, y={q.y}, z={q.z}, w={q.w}) is not unit (squared norm {norm2})")
    return tq.quat2mat(wxyz / math.sqrt(norm2))


def quaternion_to_yaw(q: Quaternion) -> float:
    """Rotation about z [rad] of a geometry_msgs Quaternion (ZYX convention); NaN components give NaN, no error.

    For planar robots and obstacle boxes, where the caller decides what to do with a non-finite value.
    """
    return float(np.arctan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z)))


def rotation_to_wxyz(R: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z), w >= 0, of a (3, 3) rotation matrix.

    Shepperd's method: computed from the largest of the trace and the diagonal, so no division by a small number;
    a closed form, ~20x faster than an eigen-decomposition (transforms3d.mat2quat), for every /tf sample.
    """
    (r00, r01, r02), (r10, r11, r12), (r20, r21, r22) = np.asarray(R, np.float64).tolist()
    trace = r00 + r11 + r22
    if trace >= max(r00, r11, r22):
        s = 2.0 * math.sqrt(max(1.0 + trace, 0.0))
        q = (0.25 * s, (r21 - r12) / s, (r02 - r20) / s, (r10 - r01) / s)
    elif r00 >= r11 and r00 >= r22:
        s = 2.0 * math.sqrt(max(1.0 + r00 - r11 - r22, 0.0))
        q = ((r21 - r12) / s, 0.25 * s, (r01 + r10) / s, (r02 + r20) / s)
    elif r11 >= r22:
        s = 2.0 * math.sqrt(max(1.0 + r11 - r00 - r22, 0.0))
        q = ((r02 - r20) / s, (r01 + r10) / s, 0.25 * s, (r12 + r21) / s)
    else:
        s = 2.0 * math.sqrt(max(1.0 + r22 - r00 - r11, 0.0))
        q = ((r10 - r01) / s, (r02 + r20) / s, (r12 + r21) / s, 0.25 * s)
    wxyz = np.array(q)
    wxyz /= math.sqrt(float(wxyz @ wxyz))
    return -wxyz if wxyz[0] < 0 else wxyz


def matrix_to_quaternion(R: np.ndarray) -> Quaternion:
    """geometry_msgs Quaternion (w >= 0) of a (3, 3) rotation matrix."""
    w, x, y, z = rotation_to_wxyz(R)
    return Quaternion(x=float(x), y=float(y), z=float(z), w=float(w))


def _homogeneous(R: np.ndarray, t: Sequence[float]) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t
    if not np.isfinite(T).all():
        raise ValueError(f"non-finite translation {list(t)}")
    return T


def check_transform_matrix(T: np.ndarray, tolerance: float = 1e-6) -> np.ndarray:
    """Return T as a float64 (4, 4) array after checking it is a finite rigid transform.

    Every /tf sample passes here: plain max-abs comparisons, not np.allclose (~10x its cost).

    Raises:
        ValueError: wrong shape, non-finite, bottom row not [0, 0, 0, 1], or rotation not orthonormal (det +1).
    """
    T = np.asarray(T, np.float64)
    if T.shape != (4, 4) or not np.isfinite(T).all():
        raise ValueError(f"expected a finite (4, 4) transform, got shape {T.shape}")
    if np.abs(T[3] - _BOTTOM_ROW).max() > tolerance:
        raise ValueError(f"transform bottom row must be [0, 0, 0, 1], got {T[3].tolist()}")
    R = T[:3, :3]
    (a, b, c), (d, e, f), (g, h, i) = R.tolist()
    det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)
    if np.abs(R @ R.T - _EYE3).max() > tolerance * 10 or det < 0:
        raise ValueError("transform rotation is not a proper orthonormal matrix")
    return T


def transform_to_matrix(transform: Transform) -> np.ndarray:
    """(4, 4) homogeneous matrix of a geometry_msgs Transform."""
    t = transform.translation
    return _homogeneous(quaternion_to_matrix(transform.rotation), (t.x, t.y, t.z))


def matrix_to_transform(T: np.ndarray) -> Transform:
    """geometry_msgs Transform of a (4, 4) rigid transform (validated)."""
    T = check_transform_matrix(T)
    x, y, z = (float(v) for v in T[:3, 3])
    return Transform(translation=Vector3(x=x, y=y, z=z), rotation=matrix_to_quaternion(T[:3, :3]))


def pose_to_matrix(pose: Pose) -> np.ndarray:
    """(4, 4) homogeneous matrix of a geometry_msgs Pose."""
    p = pose.position
    return _homogeneous(quaternion_to_matrix(pose.orientation), (p.x, p.y, p.z))


def matrix_to_pose(T: np.ndarray) -> Pose:
    """geometry_msgs Pose of a (4, 4) rigid transform (validated)."""
    T = check_transform_matrix(T)
    x, y, z = (float(v) for v in T[:3, 3])
    return Pose(position=Point(x=x, y=y, z=z), orientation=matrix_to_quaternion(T[:3, :3]))


def make_transform_stamped(parent: str, child: str, stamp_ns: int, T: np.ndarray) -> TransformStamped:
    """TransformStamped from `parent` to `child` (T maps points in `child` into `parent`)."""
    return TransformStamped(header=make_header(parent, stamp_ns), child_frame_id=child,
                            transform=matrix_to_transform(T))


def odometry_to_arrays(msg: Odometry) -> tuple[np.ndarray, np.ndarray]:
    """Return (T, twist): the (4, 4) pose of child in the header frame, and [vx, vy, vz, wx, wy, wz].

    The twist is in `child_frame_id` (REP-105: the robot's body frame).
    """
    T = pose_to_matrix(msg.pose.pose)
    lin, ang = msg.twist.twist.linear, msg.twist.twist.angular
    twist = np.array((lin.x, lin.y, lin.z, ang.x, ang.y, ang.z), np.float64)
    if not np.isfinite(twist).all():
        raise ValueError(f"Odometry twist is not finite: {twist.tolist()}")
    return T, twist


def make_odometry(T: np.ndarray, twist: np.ndarray, frame_id: str = "odom", child_frame_id: str = "base_link",
                  stamp_ns: int = 0) -> Odometry:
    """Odometry with pose T (child in `frame_id`) and twist [vx, vy, vz, wx, wy, wz] in the child frame."""
    twist = np.asarray(twist, np.float64).reshape(-1)
    if twist.shape != (6,) or not np.isfinite(twist).all():
        raise ValueError(f"twist must be 6 finite values, got {twist.tolist()}")
    msg = Odometry(header=make_header(frame_id, stamp_ns), child_frame_id=child_frame_id)
    msg.pose.pose = matrix_to_pose(T)
    vx, vy, vz, wx, wy, wz = (float(v) for v in twist)
    msg.twist.twist.linear = Vector3(x=vx, y=vy, z=vz)
    msg.twist.twist.angular = Vector3(x=wx, y=wy, z=wz)
    return msg


# ---------------------------------------------------------------------------------------------------------------
# ObstacleArray
# ---------------------------------------------------------------------------------------------------------------


def obstacle_features(msg: ObstacleArray, names: tuple[str, ...]) -> np.ndarray:
    """ObstacleArray -> (n, len(names)) features (spec.OBSTACLE_FEATURES), in the message's frame.

    Used by policy_inference on live messages and by `physai dataset build` on recorded ones (any object with the
    message's fields), so a policy trained on recordings sees the features it will see running.
    """
    rows = []
    for o in msg.obstacles:
        values = {"x": o.pose.position.x, "y": o.pose.position.y, "z": o.pose.position.z,
                  "length": o.size.x, "width": o.size.y, "height": o.size.z,
                  "yaw": quaternion_to_yaw(o.pose.orientation),
                  "vx": o.velocity.x, "vy": o.velocity.y, "class": float(o.classification),
                  "confidence": o.confidence}
        rows.append([values[n] for n in names])
    return np.asarray(rows, dtype=np.float64).reshape(-1, len(names))

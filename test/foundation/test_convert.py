"""Unit tests of physical_ai.convert: round trips, padding, byte order, every encoding, every malformed case."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Quaternion, Transform
from sensor_msgs.msg import CameraInfo, Image, JointState, LaserScan, PointCloud2, PointField
from transforms3d.euler import euler2mat

from physical_ai import convert as cv

RNG = np.random.default_rng(7)


# ---- time -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ns", [0, 1, 999_999_999, 1_000_000_000, 1_700_000_000_123_456_789, -1, -1_500_000_000])
def test_stamp_round_trip(ns):
    stamp = cv.ns_to_stamp(ns)
    assert 0 <= stamp.nanosec < 1_000_000_000
    assert cv.stamp_to_ns(stamp) == ns


def test_stamp_rejects_bad_nanosec_and_overflow():
    with pytest.raises(ValueError, match="nanosec"):
        cv.stamp_to_ns(Time(sec=1, nanosec=1_000_000_000))
    with pytest.raises(ValueError, match="int32"):
        cv.ns_to_stamp(2**31 * 1_000_000_000)


# ---- images -----------------------------------------------------------------------------------------------------
IMAGE_CASES = [
    ("rgb8", np.uint8, (3,)), ("bgr8", np.uint8, (3,)), ("rgba8", np.uint8, (4,)), ("bgra8", np.uint8, (4,)),
    ("mono8", np.uint8, ()), ("8UC1", np.uint8, ()), ("8UC3", np.uint8, (3,)), ("mono16", np.uint16, ()),
    ("16UC1", np.uint16, ()), ("32FC1", np.float32, ()),
]


def _random_image(dtype, channels, h=7, w=5):
    shape = (h, w, *channels)
    if np.dtype(dtype).kind == "f":
        return RNG.normal(size=shape).astype(dtype)
    return RNG.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype)


@pytest.mark.parametrize(("encoding", "dtype", "channels"), IMAGE_CASES)
def test_image_round_trip(encoding, dtype, channels):
    array = _random_image(dtype, channels)
    msg = cv.numpy_to_image(array, encoding, "cam", 42)
    assert (msg.height, msg.width, msg.encoding, msg.header.frame_id) == (7, 5, encoding, "cam")
    assert msg.step == 5 * array.itemsize * (channels[0] if channels else 1)
    assert cv.stamp_to_ns(msg.header.stamp) == 42
    out = cv.image_to_numpy(msg)
    assert out.dtype == np.dtype(dtype) and out.shape == array.shape
    np.testing.assert_array_equal(out, array)


def test_image_to_numpy_is_a_view_of_the_message():
    msg = cv.numpy_to_image(np.zeros((4, 6, 3), np.uint8), "rgb8")
    view = cv.image_to_numpy(msg)
    view[1, 2, 0] = 200
    assert msg.data[1 * msg.step + 2 * 3] == 200


@pytest.mark.parametrize(("encoding", "dtype", "channels"), IMAGE_CASES)
def test_image_with_row_padding(encoding, dtype, channels):
    array = _random_image(dtype, channels, h=4, w=3)
    row = array.reshape(4, -1).view(np.uint8)
    step = row.shape[1] + 5  # odd padding: rows also become unaligned for multi-byte types
    padded = np.full((4, step), 0xAB, np.uint8)
    padded[:, :row.shape[1]] = row
    msg = Image(height=4, width=3, encoding=encoding, step=step, is_bigendian=0)
    msg.data = padded.tobytes()
    np.testing.assert_array_equal(cv.image_to_numpy(msg), array)


@pytest.mark.parametrize(("encoding", "dtype"), [("16UC1", ">u2"), ("mono16", ">u2"), ("32FC1", ">f4")])
def test_image_big_endian(encoding, dtype):
    values = np.arange(12).reshape(3, 4).astype(dtype)
    msg = Image(height=3, width=4, encoding=encoding, step=4 * values.itemsize, is_bigendian=1)
    msg.data = values.tobytes()
    out = cv.image_to_numpy(msg)
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, np.arange(12).reshape(3, 4))
    # a big-endian array given to numpy_to_image is stored in native order with the flag to match
    msg2 = cv.numpy_to_image(values, encoding)
    np.testing.assert_array_equal(cv.image_to_numpy(msg2), np.arange(12).reshape(3, 4))


def test_image_empty():
    msg = Image(height=0, width=0, encoding="rgb8", step=0)
    assert cv.image_to_numpy(msg).shape == (0, 0, 3)


@pytest.mark.parametrize(("msg", "match"), [
    (Image(height=10, width=5, encoding="yuv422", step=10, data=bytes(100)), "unsupported image encoding"),
    (Image(height=10, width=5, encoding="rgb8", step=14, data=bytes(140)), "step 14 < width"),
    (Image(height=10, width=5, encoding="16UC1", step=10, data=bytes(99)), "expected step"),
    (Image(height=10, width=5, encoding="16UC1", step=10, data=bytes(110)), "expected step"),
    (Image(height=2, width=2, encoding="32FC1", step=7, data=bytes(14)), "step 7 < width"),
])
def test_image_malformed(msg, match):
    with pytest.raises(ValueError, match=match):
        cv.image_to_numpy(msg)


@pytest.mark.parametrize(("array", "encoding", "match"), [
    (np.zeros((4, 4, 3), np.uint16), "rgb8", "needs dtype"),
    (np.zeros((4, 4), np.uint8), "rgb8", "needs shape"),
    (np.zeros((4, 4, 4), np.uint8), "rgb8", "needs shape"),
    (np.zeros((4, 4), np.float64), "32FC1", "needs dtype"),
    (np.zeros((4, 4), np.uint8), "jpeg", "unsupported"),
])
def test_numpy_to_image_rejects_mismatch(array, encoding, match):
    with pytest.raises(ValueError, match=match):
        cv.numpy_to_image(array, encoding)


# ---- point clouds -----------------------------------------------------------------------------------------------
ALL_TYPES = [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.float32, np.float64]


def _random_column(dtype, n):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return RNG.normal(size=n).astype(dtype)
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max, size=n, dtype=dtype, endpoint=True)


def test_pointcloud_round_trip_every_datatype():
    n = 33
    fields = {"x": _random_column(np.float32, n), "y": _random_column(np.float32, n),
              "z": _random_column(np.float32, n)}
    fields.update({f"f_{np.dtype(t).name}": _random_column(t, n) for t in ALL_TYPES})
    fields["normal"] = RNG.normal(size=(n, 3)).astype(np.float32)  # count 3
    msg = cv.numpy_to_pointcloud2(fields, "lidar", 5)
    assert msg.width == n and msg.height == 1 and msg.row_step == n * msg.point_step
    assert {f.name: f.datatype for f in msg.fields}["f_float64"] == PointField.FLOAT64
    assert {f.name: f.count for f in msg.fields}["normal"] == 3
    assert msg.is_dense
    points = cv.pointcloud2_to_numpy(msg)
    for name, column in fields.items():
        np.testing.assert_array_equal(points[name], column)
        assert points[name].dtype.newbyteorder("=") == column.dtype


def test_pointcloud_padding_offsets_and_big_endian_by_hand():
    """A cloud laid out by hand with gaps inside and after each point, big-endian, organised with row padding."""
    height, width, point_step, row_step = 2, 3, 20, 3 * 20 + 7
    data = bytearray(b"\xee" * (row_step * height))
    expected = []
    for r in range(height):
        for c in range(width):
            x, y, z, ring, label = r * 10.0 + c, -1.5 * c, 0.25 * r, 100 * r + c, -c
            struct.pack_into(">fffHb", data, r * row_step + c * point_step, x, y, z, ring, label)
            expected.append((x, y, z, ring, label))
    fields = [PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=1),
              PointField(name="y", offset=4, datatype=PointField.FLOAT32, count=1),
              PointField(name="z", offset=8, datatype=PointField.FLOAT32, count=1),
              PointField(name="ring", offset=12, datatype=PointField.UINT16, count=1),
              PointField(name="label", offset=14, datatype=PointField.INT8, count=1)]
    msg = PointCloud2(height=height, width=width, fields=fields, is_bigendian=True, point_step=point_step,
                      row_step=row_step, data=bytes(data), is_dense=True)
    points = cv.pointcloud2_to_numpy(msg)
    assert points.shape == (6,)
    got = list(zip(points["x"], points["y"], points["z"], points["ring"], points["label"], strict=True))
    assert got == expected
    assert cv.pointcloud2_to_numpy(msg, keep_organized=True).shape == (2, 3)
    xyz = cv.pointcloud2_to_xyz(msg, ("ring", "label"))
    assert xyz.dtype == np.float32 and xyz.shape == (6, 5)
    np.testing.assert_array_equal(xyz, np.array(expected, np.float32))
    # re-encoding a big-endian structured array keeps its layout and byte order
    again = cv.numpy_to_pointcloud2(points, "f", 0)
    assert again.is_bigendian and again.point_step == point_step
    assert [(f.name, f.offset, f.datatype) for f in again.fields] == [(f.name, f.offset, f.datatype) for f in fields]
    np.testing.assert_array_equal(cv.pointcloud2_to_xyz(again, ("ring", "label")), xyz)


def test_pointcloud_xyz_fast_path_and_nans():
    xyzi = RNG.normal(size=(1000, 4)).astype(np.float32)
    xyzi[5, 1] = np.nan
    msg = cv.numpy_to_pointcloud2(xyzi)
    assert [f.name for f in msg.fields] == ["x", "y", "z", "intensity"] and not msg.is_dense
    np.testing.assert_array_equal(cv.pointcloud2_to_xyz(msg, ("intensity",)), xyzi)
    kept = cv.pointcloud2_to_xyz(msg, skip_nans=True)
    assert kept.shape == (999, 3)
    np.testing.assert_array_equal(kept, np.delete(xyzi, 5, axis=0)[:, :3])


def test_pointcloud_mixed_byte_order_is_normalised():
    dtype = np.dtype([("x", ">f4"), ("y", "<f4"), ("z", "<f4")])
    points = np.zeros(4, dtype)
    points["x"] = [1, 2, 3, 4]
    msg = cv.numpy_to_pointcloud2(points)
    np.testing.assert_array_equal(cv.pointcloud2_to_xyz(msg)[:, 0], [1, 2, 3, 4])


def test_pointcloud_empty():
    msg = cv.numpy_to_pointcloud2({"x": np.zeros(0, np.float32), "y": np.zeros(0, np.float32),
                                   "z": np.zeros(0, np.float32)})
    assert msg.width == 0 and len(msg.data) == 0
    assert cv.pointcloud2_to_xyz(msg).shape == (0, 3)


def _cloud(**overrides):
    fields = [PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=1),
              PointField(name="y", offset=4, datatype=PointField.FLOAT32, count=1),
              PointField(name="z", offset=8, datatype=PointField.FLOAT32, count=1)]
    kwargs = {"height": 1, "width": 4, "fields": fields, "point_step": 12, "row_step": 48, "data": bytes(48)}
    kwargs.update(overrides)
    return PointCloud2(**kwargs)


@pytest.mark.parametrize(("overrides", "match"), [
    ({"data": bytes(47)}, "expected row_step"),
    ({"data": bytes(60)}, "expected row_step"),
    ({"row_step": 40, "data": bytes(40)}, "row_step 40 < width"),
    ({"point_step": 10, "row_step": 40, "data": bytes(40)}, "beyond point_step"),
    ({"fields": [PointField(name="x", offset=0, datatype=9, count=1)]}, "unknown datatype 9"),
    ({"fields": [PointField(name="x", offset=0, datatype=0, count=1)]}, "unknown datatype 0"),
    ({"fields": [PointField(name="x", offset=0, datatype=7, count=1)] * 2}, "duplicate"),
    ({"fields": [PointField(name="", offset=0, datatype=7, count=1)]}, "empty name"),
    ({"fields": [PointField(name="x", offset=0, datatype=7, count=0)]}, "count 0"),
])
def test_pointcloud_malformed(overrides, match):
    with pytest.raises(ValueError, match=match):
        cv.pointcloud2_to_numpy(_cloud(**overrides))


def test_pointcloud_xyz_missing_or_multicount_field():
    with pytest.raises(ValueError, match="no field 'intensity'"):
        cv.pointcloud2_to_xyz(_cloud(), ("intensity",))
    fields = [PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=3),
              PointField(name="y", offset=0, datatype=PointField.FLOAT32, count=1),
              PointField(name="z", offset=0, datatype=PointField.FLOAT32, count=1)]
    with pytest.raises(ValueError, match="count 3"):
        cv.pointcloud2_to_xyz(_cloud(fields=fields))


@pytest.mark.parametrize(("fields", "match"), [
    ({"x": np.zeros(3, np.float32), "y": np.zeros(4, np.float32)}, "one length"),
    ({"x": np.zeros(3, np.int64)}, "cannot represent"),
    ({"x": np.zeros(3, bool)}, "cannot represent"),
    ({}, "no point fields"),
    (np.zeros((5, 5), np.float32), r"\(N, 3\)"),
])
def test_numpy_to_pointcloud2_rejects(fields, match):
    with pytest.raises(ValueError, match=match):
        cv.numpy_to_pointcloud2(fields)


def test_pointcloud_large_round_trip_exact():
    xyzi = RNG.normal(size=(130_000, 4)).astype(np.float32)
    msg = cv.numpy_to_pointcloud2({"x": xyzi[:, 0], "y": xyzi[:, 1], "z": xyzi[:, 2], "intensity": xyzi[:, 3]})
    assert len(msg.data) == 130_000 * 16
    np.testing.assert_array_equal(cv.pointcloud2_to_xyz(msg, ("intensity",)), xyzi)


# ---- laser scans ------------------------------------------------------------------------------------------------
def test_laserscan_round_trip_and_validity():
    ranges = np.array([1.0, np.inf, 2.0, 0.05, np.nan, 30.0, 3.0], np.float32)
    msg = cv.numpy_to_laserscan(ranges, -np.pi / 2, np.pi / 6, 0.1, 20.0, "laser", 9,
                                intensities=np.arange(7, dtype=np.float32))
    assert msg.angle_max == pytest.approx(-np.pi / 2 + 6 * np.pi / 6)
    np.testing.assert_array_equal(np.asarray(msg.ranges), ranges)
    xy = cv.laserscan_to_xy(msg)
    angles = -np.pi / 2 + np.pi / 6 * np.array([0, 2, 6])
    expected = np.stack([[1.0, 2.0, 3.0] * np.cos(angles), [1.0, 2.0, 3.0] * np.sin(angles)], axis=1)
    assert xy.dtype == np.float32
    np.testing.assert_allclose(xy, expected, atol=1e-6)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"angle_increment": 0.0}, "angle_increment 0"),
    ({"angle_min": float("nan")}, "finite"),
    ({"intensities": [1.0]}, "intensities"),
])
def test_laserscan_malformed(kwargs, match):
    fields = {"angle_min": 0.0, "angle_increment": 0.1, "range_min": 0.0, "range_max": 10.0,
              "ranges": [1.0, 2.0, 3.0]}
    fields.update(kwargs)
    with pytest.raises(ValueError, match=match):
        cv.laserscan_to_xy(LaserScan(**fields))


def test_numpy_to_laserscan_rejects():
    with pytest.raises(ValueError, match="1-D"):
        cv.numpy_to_laserscan(np.zeros((2, 2)), 0, 0.1, 0, 1)
    with pytest.raises(ValueError, match="range_min"):
        cv.numpy_to_laserscan(np.zeros(3), 0, 0.1, 2, 1)
    with pytest.raises(ValueError, match="intensities"):
        cv.numpy_to_laserscan(np.zeros(3), 0, 0.1, 0, 1, intensities=np.zeros(2))


# ---- camera info, joint states ----------------------------------------------------------------------------------
def test_camera_info_round_trip():
    K = np.array([[525.0, 0, 319.5], [0, 525.0, 239.5], [0, 0, 1]])
    msg = cv.make_camera_info(640, 480, K, "cam", 3, D=[0.1, -0.2, 0, 0, 0.01])
    np.testing.assert_array_equal(cv.camera_info_to_matrix(msg), K)
    np.testing.assert_array_equal(np.asarray(msg.p).reshape(3, 4)[:, :3], K)
    assert list(msg.d) == [0.1, -0.2, 0, 0, 0.01] and msg.distortion_model == "plumb_bob"


def test_camera_info_rejects():
    with pytest.raises(ValueError, match="not a calibrated"):
        cv.camera_info_to_matrix(CameraInfo())  # all zeros: uncalibrated
    msg = cv.make_camera_info(4, 4, np.eye(3))
    msg.k[4] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        cv.camera_info_to_matrix(msg)
    with pytest.raises(ValueError, match="3x3"):
        cv.make_camera_info(4, 4, np.eye(4))
    with pytest.raises(ValueError, match="image size"):
        cv.make_camera_info(0, 4, np.eye(3))


def test_joint_state_round_trip_and_missing_arrays():
    msg = cv.make_joint_state(["a", "b", "c"], [0.1, 0.2, 0.3], velocities=[1.0, 2.0, 3.0], stamp_ns=5)
    d = cv.joint_state_to_dict(msg)
    assert list(d) == ["a", "b", "c"]
    assert d["b"][:2] == (0.2, 2.0) and np.isnan(d["b"][2])


@pytest.mark.parametrize(("msg", "match"), [
    (JointState(name=["a", "a"], position=[1.0, 2.0]), "duplicate"),
    (JointState(name=["a", "b"], position=[1.0]), "1 position values for 2"),
    (JointState(name=["a"], position=[1.0], effort=[1.0, 2.0]), "2 effort values"),
])
def test_joint_state_malformed(msg, match):
    with pytest.raises(ValueError, match=match):
        cv.joint_state_to_dict(msg)


def test_make_joint_state_rejects_length():
    with pytest.raises(ValueError, match="2 position values for 3"):
        cv.make_joint_state(["a", "b", "c"], [1.0, 2.0])


# ---- transforms, poses, odometry --------------------------------------------------------------------------------
def _rigid(rx, ry, rz, t):
    T = np.eye(4)
    T[:3, :3] = euler2mat(rx, ry, rz)
    T[:3, 3] = t
    return T


@pytest.mark.parametrize("angles", [(0, 0, 0), (0.1, -0.2, 0.3), (np.pi, 0, 0), (0, 0, -np.pi + 1e-9), (3, 2, 1)])
def test_transform_and_pose_round_trip(angles):
    T = _rigid(*angles, (1.0, -2.0, 0.5))
    np.testing.assert_allclose(cv.transform_to_matrix(cv.matrix_to_transform(T)), T, atol=1e-12)
    np.testing.assert_allclose(cv.pose_to_matrix(cv.matrix_to_pose(T)), T, atol=1e-12)
    assert cv.matrix_to_transform(T).rotation.w >= 0


def test_quaternion_conventions_match_ros():
    # 90 degrees about z: ROS (x, y, z, w) = (0, 0, sin 45, cos 45) maps x to y
    q = Quaternion(x=0.0, y=0.0, z=np.sin(np.pi / 4), w=np.cos(np.pi / 4))
    R = cv.quaternion_to_matrix(q)
    np.testing.assert_allclose(R @ [1, 0, 0], [0, 1, 0], atol=1e-12)


def test_transform_rejects_bad_quaternion_and_matrix():
    with pytest.raises(ValueError, match="not unit"):
        cv.transform_to_matrix(Transform(rotation=Quaternion(x=0.0, y=0.0, z=0.0, w=0.0)))
    with pytest.raises(ValueError, match="not unit"):
        cv.transform_to_matrix(Transform(rotation=Quaternion(x=0.0, y=0.0, z=0.0, w=1.1)))
    with pytest.raises(ValueError, match="not unit"):
        cv.transform_to_matrix(Transform(rotation=Quaternion(x=float("nan"), y=0.0, z=0.0, w=1.0)))
    # slightly off-unit quaternions (float32 round trips) are accepted and renormalised
    R = cv.quaternion_to_matrix(Quaternion(x=0.0, y=0.0, z=0.0, w=1.0002))
    np.testing.assert_allclose(R, np.eye(3), atol=1e-12)
    bad = np.eye(4)
    bad[0, 0] = 2.0
    with pytest.raises(ValueError, match="orthonormal"):
        cv.matrix_to_transform(bad)
    with pytest.raises(ValueError, match="orthonormal"):
        cv.matrix_to_pose(np.diag([1.0, 1.0, -1.0, 1.0]))  # reflection
    with pytest.raises(ValueError, match="bottom row"):
        cv.matrix_to_pose(np.ones((4, 4)))
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        cv.matrix_to_pose(np.eye(3))


def test_odometry_round_trip():
    T = _rigid(0, 0, 0.7, (3.0, 4.0, 0.0))
    twist = np.array([0.5, 0.0, 0.0, 0.0, 0.0, 0.2])
    msg = cv.make_odometry(T, twist, "odom", "base_link", 10)
    T2, twist2 = cv.odometry_to_arrays(msg)
    np.testing.assert_allclose(T2, T, atol=1e-12)
    np.testing.assert_array_equal(twist2, twist)
    assert (msg.header.frame_id, msg.child_frame_id) == ("odom", "base_link")
    msg.twist.twist.linear.x = float("inf")
    with pytest.raises(ValueError, match="twist"):
        cv.odometry_to_arrays(msg)
    with pytest.raises(ValueError, match="6 finite"):
        cv.make_odometry(T, [0, 0, 0])


def test_transform_stamped():
    T = _rigid(0.1, 0.2, 0.3, (1, 2, 3))
    ts = cv.make_transform_stamped("odom", "base_link", 1_500_000_000, T)
    assert (ts.header.frame_id, ts.child_frame_id, ts.header.stamp.sec, ts.header.stamp.nanosec) == \
        ("odom", "base_link", 1, 500_000_000)
    np.testing.assert_allclose(cv.transform_to_matrix(ts.transform), T, atol=1e-12)


def test_quaternion_to_yaw_matches_the_rotation_matrix_and_keeps_nan():
    for yaw in (-3.0, -1.2, 0.0, 0.4, 2.9):
        q = cv.matrix_to_quaternion(cv.quaternion_to_matrix(
            cv.matrix_to_quaternion(np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0],
                                                   [0, 0, 1]]))))
        assert cv.quaternion_to_yaw(q) == pytest.approx(yaw, abs=1e-9)
    q = cv.matrix_to_quaternion(np.eye(3))
    q.z = float("nan")
    assert np.isnan(cv.quaternion_to_yaw(q))


def test_rotation_to_wxyz_inverts_quat2mat_including_half_turns():
    """The closed-form quaternion of a rotation matrix maps back onto the same matrix, with w >= 0, also for the
    half turns where the trace branch cannot be used."""
    from transforms3d.quaternions import quat2mat

    rng = np.random.default_rng(3)
    quats = [q / np.linalg.norm(q) for q in rng.normal(size=(2000, 4))]
    quats += [np.array(q, float) for q in ([1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1],
                                           [0, 0.6, 0.8, 0], [1e-9, 0, 0.6, 0.8])]
    for q in quats:
        wxyz = cv.rotation_to_wxyz(quat2mat(q))
        assert wxyz[0] >= 0 and abs(np.linalg.norm(wxyz) - 1) < 1e-12
        assert np.allclose(quat2mat(wxyz), quat2mat(q), atol=1e-12)


def test_check_transform_matrix_rejects_reflections_and_skew():
    T = np.eye(4)
    assert cv.check_transform_matrix(T) is not None
    for bad in (np.diag([1.0, 1.0, -1.0, 1.0]), np.diag([1.0, 1.0, 1.0, 2.0])):
        with pytest.raises(ValueError):
            cv.check_transform_matrix(bad)
    sheared = np.eye(4)
    sheared[0, 1] = 1e-3
    with pytest.raises(ValueError):
        cv.check_transform_matrix(sheared)
    assert cv.check_transform_matrix(sheared, tolerance=1e-3) is not None

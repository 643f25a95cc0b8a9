"""Unit tests of physical_ai.tf.TransformBuffer: interpolation, chaining, static edges, history, errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from transforms3d.euler import euler2mat

from physical_ai.tf import TransformBuffer

S = 1_000_000_000


def rigid(yaw=0.0, t=(0.0, 0.0, 0.0), roll=0.0, pitch=0.0):
    T = np.eye(4)
    T[:3, :3] = euler2mat(roll, pitch, yaw)
    T[:3, 3] = t
    return T


@pytest.fixture
def robot():
    """map -(static)- odom -(dynamic)- base_link -(static)- lidar; base_link -(static)- camera."""
    buf = TransformBuffer(cache_time_s=10.0)
    buf.set_transform("map", "odom", 0, rigid(t=(10.0, 0.0, 0.0)), static=True)
    buf.set_transform("odom", "base_link", 0, rigid())
    buf.set_transform("odom", "base_link", 2 * S, rigid(np.pi / 2, (2.0, 0.0, 0.0)))
    buf.set_transform("base_link", "lidar", 0, rigid(t=(0.5, 0.0, 0.3)), static=True)
    buf.set_transform("base_link", "camera", 0, rigid(roll=-np.pi / 2, yaw=-np.pi / 2, t=(0.2, 0.0, 1.0)),
                      static=True)
    return buf


def test_interpolation_is_linear_in_translation_and_slerp_in_rotation(robot):
    T = robot.lookup("odom", "base_link", S // 2)
    np.testing.assert_allclose(T[:3, 3], [0.5, 0.0, 0.0], atol=1e-12)
    yaw = Rotation.from_matrix(T[:3, :3]).as_euler("xyz")[2]
    assert yaw == pytest.approx(np.pi / 8, abs=1e-12)  # a quarter of the way through a 90 degree turn


def test_slerp_takes_the_short_way_across_pi():
    buf = TransformBuffer()
    buf.set_transform("a", "b", 0, rigid(np.pi - 0.1))
    buf.set_transform("a", "b", S, rigid(-np.pi + 0.1))
    yaw = Rotation.from_matrix(buf.lookup("a", "b", S // 2)[:3, :3]).as_euler("xyz")[2]
    assert abs(abs(yaw) - np.pi) < 1e-9


def test_exact_samples_and_chained_lookup(robot):
    # at t=2 s base_link is at (2, 0) facing +y; the lidar is 0.5 m ahead of it, so at (2, 0.5) in odom
    T = robot.lookup("map", "lidar", 2 * S)
    np.testing.assert_allclose(T[:3, 3], [12.0, 0.5, 0.3], atol=1e-12)
    np.testing.assert_allclose(T[:3, :3], euler2mat(0, 0, np.pi / 2), atol=1e-12)
    # the inverse lookup is the inverse transform
    np.testing.assert_allclose(robot.lookup("lidar", "map", 2 * S) @ T, np.eye(4), atol=1e-12)
    # across branches: lidar -> camera goes through base_link only and is time-independent
    lidar_in_camera = robot.lookup("camera", "lidar", 0)
    np.testing.assert_allclose(lidar_in_camera, robot.lookup("camera", "lidar", S), atol=1e-12)
    # lidar at (0.5, 0, 0.3) in base_link; camera at (0.2, 0, 1.0) looking along +x: optical z is forward
    np.testing.assert_allclose(lidar_in_camera[:3, 3], [0.0, 0.7, 0.3], atol=1e-12)


def test_latest_lookup_uses_newest_common_time(robot):
    robot.set_transform("map", "person", S, rigid(t=(1.0, 1.0, 0.0)))
    robot.set_transform("map", "person", 3 * S, rigid(t=(3.0, 1.0, 0.0)))
    # odom->base_link ends at 2 s, person starts at 1 s: latest common time is 2 s
    T = robot.lookup("person", "base_link")
    np.testing.assert_allclose(T[:3, 3], [12.0 - 2.0, -1.0, 0.0], atol=1e-12)
    # static-only chains have no time: latest works and any stamp works
    np.testing.assert_allclose(robot.lookup("base_link", "lidar")[:3, 3], [0.5, 0, 0.3])
    np.testing.assert_allclose(robot.lookup("base_link", "lidar", 123 * S)[:3, 3], [0.5, 0, 0.3])


def test_transform_points(robot):
    points = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]], np.float32)
    out = robot.transform_points("odom", "lidar", points, 2 * S)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[2.0, 1.5, 0.3], [2.0, 0.5, 0.3]], atol=1e-6)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        robot.transform_points("odom", "lidar", np.zeros((2, 2)))


def test_identity_and_frame_names(robot):
    np.testing.assert_array_equal(robot.lookup("lidar", "lidar", 5 * S), np.eye(4))
    assert robot.frames() == {"map", "odom", "base_link", "lidar", "camera"}
    assert robot.parent("lidar") == "base_link" and robot.parent("map") is None
    np.testing.assert_allclose(robot.lookup("/map", "/odom"), robot.lookup("map", "odom"))  # tf2 strips '/'


def test_extrapolation_errors(robot):
    with pytest.raises(ValueError, match=r"extrapolation.*odom -> base_link"):
        robot.lookup("map", "lidar", 3 * S)
    with pytest.raises(ValueError, match="extrapolation"):
        robot.lookup("map", "lidar", -1)
    assert not robot.can_transform("map", "lidar", 3 * S)
    assert robot.can_transform("map", "lidar", S)


def test_lookup_at_or_latest_falls_back_to_the_newest_time_outside_the_history(robot):
    np.testing.assert_allclose(robot.lookup_at_or_latest("map", "lidar", S), robot.lookup("map", "lidar", S))
    for outside in (3 * S, -1):
        np.testing.assert_allclose(robot.lookup_at_or_latest("map", "lidar", outside), robot.lookup("map", "lidar"))
    with pytest.raises(LookupError):
        robot.lookup_at_or_latest("map", "nowhere", S)


def test_single_sample_edge_only_at_its_stamp():
    buf = TransformBuffer()
    buf.set_transform("a", "b", 5 * S, rigid(t=(1, 0, 0)))
    np.testing.assert_allclose(buf.lookup("a", "b")[:3, 3], [1, 0, 0])
    np.testing.assert_allclose(buf.lookup("a", "b", 5 * S)[:3, 3], [1, 0, 0])
    with pytest.raises(ValueError, match="extrapolation"):
        buf.lookup("a", "b", 5 * S + 1)


def test_unknown_and_disconnected_frames(robot):
    with pytest.raises(LookupError, match="'nowhere' does not exist"):
        robot.lookup("map", "nowhere")
    robot.set_transform("world", "table", 0, rigid(), static=True)
    with pytest.raises(LookupError, match="not connected"):
        robot.lookup("table", "lidar", 0)
    assert not robot.can_transform("table", "lidar")


def test_history_is_pruned_to_cache_time():
    buf = TransformBuffer(cache_time_s=1.0)
    for k in range(30):
        buf.set_transform("odom", "base_link", k * S // 10, rigid(t=(k, 0, 0)))
    np.testing.assert_allclose(buf.lookup("odom", "base_link", 2 * S)[:3, 3], [20, 0, 0], atol=1e-9)
    with pytest.raises(ValueError, match="extrapolation"):
        buf.lookup("odom", "base_link", 18 * S // 10 - 1)  # more than 1 s behind the newest sample (2.9 s)


def test_out_of_order_and_repeated_stamps():
    buf = TransformBuffer()
    buf.set_transform("a", "b", 2 * S, rigid(t=(2, 0, 0)))
    buf.set_transform("a", "b", 0, rigid(t=(0, 0, 0)))
    buf.set_transform("a", "b", S, rigid(t=(5, 0, 0)))
    buf.set_transform("a", "b", S, rigid(t=(1, 0, 0)))  # the newer message for a stamp wins
    np.testing.assert_allclose(buf.lookup("a", "b", S // 2)[:3, 3], [0.5, 0, 0], atol=1e-12)
    np.testing.assert_allclose(buf.lookup("a", "b", 3 * S // 2)[:3, 3], [1.5, 0, 0], atol=1e-12)


def test_static_edge_replaced_and_reparenting():
    buf = TransformBuffer()
    buf.set_transform("base", "tool", 0, rigid(t=(1, 0, 0)), static=True)
    buf.set_transform("base", "tool", 0, rigid(t=(2, 0, 0)), static=True)
    np.testing.assert_allclose(buf.lookup("base", "tool", 99 * S)[:3, 3], [2, 0, 0])
    buf.set_transform("other", "tool", 0, rigid(t=(3, 0, 0)), static=True)  # a child has one parent
    assert buf.parent("tool") == "other"


def test_rejects_bad_edges():
    buf = TransformBuffer()
    buf.set_transform("a", "b", 0, rigid())
    buf.set_transform("b", "c", 0, rigid())
    with pytest.raises(ValueError, match="loop"):
        buf.set_transform("c", "a", 0, rigid())
    with pytest.raises(ValueError, match="itself"):
        buf.set_transform("a", "a", 0, rigid())
    with pytest.raises(ValueError, match="empty frame"):
        buf.set_transform("", "x", 0, rigid())
    with pytest.raises(ValueError, match="orthonormal"):
        buf.set_transform("a", "x", 0, np.diag([2.0, 1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="cache_time_s"):
        TransformBuffer(cache_time_s=0)


def test_clear_history_keeps_static_edges_and_accepts_a_restarted_clock(robot):
    robot.set_transform("odom", "base_link", 60 * S, rigid(t=(9.0, 0.0, 0.0)))
    robot.clear_history()
    assert not robot.can_transform("odom", "base_link")  # the dynamic edge is gone
    np.testing.assert_allclose(robot.lookup("base_link", "lidar")[:3, 3], [0.5, 0.0, 0.3])  # statics stay
    # without the clear, these early stamps would be trimmed as older than the old episode's newest sample
    robot.set_transform("odom", "base_link", 1 * S, rigid(t=(1.0, 0.0, 0.0)))
    np.testing.assert_allclose(robot.lookup("odom", "base_link")[:3, 3], [1.0, 0.0, 0.0])

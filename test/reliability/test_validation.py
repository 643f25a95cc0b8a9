"""The shared validation layer on its own (no ROS graph): each finding of issue 22 gets its reason, and what the
stack's own converters and nodes publish passes."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from builtin_interfaces.msg import Duration, Time
from nav_msgs.msg import OccupancyGrid
from physical_ai_stack.msg import ActionChunk, CorrectionStatus, Obstacle, ObstacleArray, SimGroundTruth
from sensor_msgs.msg import CameraInfo, JointState, PointCloud2
from std_msgs.msg import String
from tf2_msgs.msg import TFMessage
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from physical_ai.convert import (
    make_camera_info,
    make_joint_state,
    make_transform_stamped,
    numpy_to_image,
    numpy_to_laserscan,
    numpy_to_pointcloud2,
)
from physical_ai.validation import InputLimits, check

NOW = 1_700_000_000 * 10**9


def _reason(msg, limits: InputLimits | None = None) -> str | None:
    bad = check(msg, limits or InputLimits())
    return None if bad is None else bad.reason


def test_what_the_stack_publishes_passes():
    K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    good = [numpy_to_pointcloud2(np.random.default_rng(0).normal(size=(24_000, 3)).astype(np.float32), "lidar", NOW),
            numpy_to_laserscan(np.full(360, 5.0, np.float32), -math.pi, 2 * math.pi / 360, 0.1, 30.0, "lidar", NOW),
            numpy_to_image(np.zeros((480, 640, 3), np.uint8), "rgb8", "camera", NOW),
            numpy_to_image(np.zeros((480, 640), np.float32), "32FC1", "camera", NOW),
            make_camera_info(640, 480, K, "camera", NOW),
            make_joint_state([f"joint{i}" for i in range(7)], np.zeros(7), np.zeros(7), np.full(7, np.nan), NOW),
            TFMessage(transforms=[make_transform_stamped("odom", "base_link", NOW, np.eye(4))]),
            CorrectionStatus(min_clearance_m=1e9, time_to_collision_s=math.inf),
            SimGroundTruth(min_person_clearance_m=1e9),
            ActionChunk(action_names=["linear_x", "angular_z"], horizon=10, dt=0.1, values=[0.1] * 20),
            String(data="drive to the drop-off station")]
    for msg in good:
        assert check(msg) is None, (type(msg).__name__, check(msg))


@pytest.mark.parametrize("field", ["sec", "nanosec"])
def test_a_bad_stamp_anywhere_is_caught(field):
    tf = TFMessage(transforms=[make_transform_stamped("odom", "base_link", NOW, np.eye(4)) for _ in range(3)])
    setattr(tf.transforms[2].header.stamp, field, -1 if field == "sec" else 1_000_000_000)
    assert _reason(tf) == "stamp"
    chunk = ActionChunk(start_time=Time(sec=1, nanosec=2**32 - 1))
    assert _reason(chunk) == "stamp"
    trajectory = JointTrajectory(joint_names=["a"], points=[JointTrajectoryPoint(
        positions=[0.0], time_from_start=Duration(sec=0, nanosec=1_500_000_000))])
    assert _reason(trajectory) == "stamp"


def test_sizes_are_refused_before_any_element_is_read():
    big = PointCloud2(width=5_000_000, height=1, point_step=12, row_step=60_000_000)  # no data needed to refuse
    assert _reason(big) == "too_large"
    many = ObstacleArray(obstacles=[Obstacle() for _ in range(20_000)])
    start = time.perf_counter()
    assert _reason(many) == "too_large"
    assert time.perf_counter() - start < 0.01
    assert _reason(numpy_to_image(np.zeros((3000, 4000, 3), np.uint8), "rgb8")) == "too_large"
    assert _reason(String(data="x" * 20_000_000)) == "too_large"
    assert _reason(PointCloud2(data=bytes(40 * 2**20))) == "too_large"  # beyond the 32 MiB shared-memory segment
    assert _reason(String(data="x" * 5000), InputLimits(max_string_bytes=10_000)) is None


def test_content_findings_get_their_reasons():
    grid = OccupancyGrid()
    grid.info.width = grid.info.height = 2
    grid.data = [0] * 4
    grid.info.resolution = math.nan
    assert _reason(grid) == "out_of_range"
    fast = ObstacleArray(obstacles=[Obstacle()])
    fast.obstacles[0].velocity.x = 1e5
    assert _reason(fast) == "out_of_range"
    for k in (0.0, math.nan):
        assert _reason(CameraInfo(width=640, height=480, k=[k] * 9)) == "uncalibrated"
    assert _reason(JointState(name=["a", "a"], position=[0.0, 0.0])) == "duplicate_names"
    assert _reason(JointState(name=["a"], position=[math.nan])) == "nonfinite"
    truncated = numpy_to_pointcloud2(np.zeros((10, 3), np.float32))
    truncated.data = bytes(truncated.data)[:50]
    assert _reason(truncated) == "layout"
    nan_goal = TFMessage(transforms=[make_transform_stamped("odom", "base_link", NOW, np.eye(4))])
    nan_goal.transforms[0].transform.translation.x = math.nan
    assert _reason(nan_goal) == "nonfinite"
    assert _reason(TFMessage(transforms=[make_transform_stamped("odom", "base link", NOW, np.eye(4))])) == "frame_id"
    huge = fast
    huge.obstacles[0].velocity.x = 0.0
    huge.obstacles[0].pose.position.x = 1e30
    assert _reason(huge) == "out_of_range"


def test_the_fast_check_and_the_walk_agree_on_every_drawn_message():
    # The generated fast checker decides; the walk only explains. They must never disagree.
    from fuzzlib import INPUTS, message_strategy
    from hypothesis import HealthCheck, given, settings

    from physical_ai.validation import NONFINITE_OK, _fast_checker, _walk, type_name

    limits = InputLimits()
    for _, kind in INPUTS:
        @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(msg=message_strategy(kind))
        def agree(msg):
            ok = NONFINITE_OK.get(type_name(msg), frozenset())
            assert _fast_checker(type(msg), ok)(msg, limits) == (_walk(msg, limits, "", ok) is None)

        agree()

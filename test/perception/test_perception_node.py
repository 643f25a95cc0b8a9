"""perception_fusion over real DDS: a cloud + /tf_static from another process in, ObstacleArray out.

Also checks the dead-camera case (LiDAR output continues, flagged degraded) and that bad input is counted, not fatal.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from physical_ai_stack.msg import ObstacleArray
from rclpy.node import Node
from rclpy.publisher import Publisher
from sensor_msgs.msg import PointCloud2

from physical_ai.convert import make_camera_info, numpy_to_image, numpy_to_pointcloud2
from physical_ai_nodes._base import SENSOR_QOS, STATE_QOS
from physical_ai_nodes._tf import TfPublisher

ROOT = Path(__file__).resolve().parents[2]


def _scene(rng: np.random.Generator) -> np.ndarray:
    """Ground disc plus a 0.5 x 0.5 x 1.7 m 'person' at (4, 1) in base_link; lidar_link is 1 m above base_link."""
    g = rng.uniform(-10, 10, (6000, 2))
    ground = np.column_stack([g, np.full(len(g), -1.0)])
    person = np.column_stack([rng.uniform(3.75, 4.25, 800), rng.uniform(0.75, 1.25, 800),
                              rng.uniform(-0.95, 0.7, 800)])
    return np.concatenate([ground, person]).astype(np.float32)


@pytest.fixture
def node_proc():
    proc = subprocess.Popen(
        [sys.executable, "-m", "physical_ai_nodes.perception_fusion", "--ros-args",
         "-p", "sync_max_wait_s:=0.02", "-p", "camera_max_age_s:=0.3",
         "-p", "max_rate_hz:=40.0"],
        cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_cloud_to_obstacles_and_dead_camera(node_proc):
    rclpy.init()
    node = Node("perception_test_driver")
    try:
        tf = TfPublisher(node)
        T = np.eye(4)
        T[2, 3] = 1.0
        tf.publish_static([("base_link", "lidar_link", 0, T), ("base_link", "camera_color_optical_frame", 0,
                                                                 np.array([[0, 0, 1, 0.2], [-1, 0, 0, 0],
                                                                           [0, -1, 0, 1.0], [0, 0, 0, 1.0]]))])
        cloud_pub = node.create_publisher(PointCloud2, "/lidar/points", SENSOR_QOS)
        from sensor_msgs.msg import CameraInfo, Image
        img_pub = node.create_publisher(Image, "/camera/color/image_raw", SENSOR_QOS)
        info_pub = node.create_publisher(CameraInfo, "/camera/color/camera_info", SENSOR_QOS)
        received: list[tuple[ObstacleArray, int]] = []
        node.create_subscription(ObstacleArray, "/perception/obstacles",
                                 lambda m: received.append((m, node.get_clock().now().nanoseconds)), STATE_QOS)
        diags: list[DiagnosticArray] = []
        node.create_subscription(DiagnosticArray, "/diagnostics", diags.append, STATE_QOS)
        pts = _scene(np.random.default_rng(0))
        K = np.array([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]])
        image = np.zeros((240, 320, 3), np.uint8)

        def spin(seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                rclpy.spin_once(node, timeout_sec=0.01)

        def publish(camera: bool, **bad) -> int:
            stamp = node.get_clock().now().nanoseconds
            if camera:
                info_pub.publish(make_camera_info(320, 240, K, "camera_color_optical_frame", stamp))
                img_pub.publish(numpy_to_image(image, "rgb8", "camera_color_optical_frame", stamp))
            cloud = bad.get("cloud", pts)
            cloud_pub.publish(numpy_to_pointcloud2({"x": cloud[:, 0], "y": cloud[:, 1], "z": cloud[:, 2]},
                                                   bad.get("frame", "lidar_link"), bad.get("stamp", stamp)))
            return stamp

        deadline = time.monotonic() + 30
        while not received and time.monotonic() < deadline:   # discovery and node start-up
            publish(camera=True)
            spin(0.1)
        assert received, "no ObstacleArray from perception_fusion"
        # Phase 1: camera alive; phase 2: camera dead; every LiDAR frame must still produce output.
        received.clear()
        for _ in range(10):
            publish(camera=True)
            spin(0.1)
        spin(0.3)
        healthy = list(received)
        received.clear()
        stamps = []
        for _ in range(10):
            stamps.append(publish(camera=False))
            spin(0.1)
        spin(0.3)
        dead = list(received)
        assert len(healthy) >= 8 and not any(m.degraded for m, _ in healthy[2:])
        assert len(dead) >= 9, f"LiDAR frames lost while the camera was dead: {len(dead)}/10"
        out_stamps = {m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m, _ in dead}
        assert len(out_stamps & set(stamps)) >= 9
        assert all(m.degraded for m, _ in dead[4:]), "camera stale but output not flagged degraded"
        msg = dead[-1][0]
        near = [o for o in msg.obstacles if abs(o.pose.position.x - 4.0) < 0.5 and abs(o.pose.position.y - 1.0) < 0.5]
        assert near and near[0].size.z > 1.4 and msg.header.frame_id == "base_link"
        # Bad input: unknown frame, NaN points, empty cloud, future and old stamps: counted, node keeps going.
        now = node.get_clock().now().nanoseconds
        nan_cloud = pts.copy()
        nan_cloud[:50] = np.nan
        publish(False, frame="nowhere")
        spin(0.1)
        publish(False, cloud=np.zeros((0, 3), np.float32))
        spin(0.1)
        publish(False, stamp=now + 5 * 10**9)
        spin(0.1)
        publish(False, stamp=now - 5 * 10**9)
        spin(0.1)
        publish(False, cloud=nan_cloud)
        spin(0.1)
        for _ in range(10):                       # 10x rate burst
            publish(False)
        spin(0.1)
        # Bad images: zero-size, size different from CameraInfo, unknown encoding.
        for img, enc in ((np.zeros((0, 0, 3), np.uint8), "rgb8"), (np.zeros((100, 100, 3), np.uint8), "rgb8"),
                         (np.zeros((240, 320, 3), np.uint8), "yuv444")):
            stamp = node.get_clock().now().nanoseconds
            info_pub.publish(make_camera_info(320, 240, K, "camera_color_optical_frame", stamp))
            msg = numpy_to_image(img, "rgb8", "camera_color_optical_frame", stamp)
            msg.encoding = enc
            img_pub.publish(msg)
            spin(0.1)
        # Sensors stop: no further obstacle messages (nothing old is republished as fresh).
        spin(0.5)
        received.clear()
        spin(1.2)
        assert received == [], "obstacles published with no fresh sensor data"
        assert node_proc.poll() is None, "node died on bad input"
        values = {kv.key: kv.value for kv in diags[-1].status[0].values} if diags else {}
        for key in ("unknown_frame", "empty_cloud", "future_stamp", "too_old", "nonfinite_points", "rate_limited",
                    "empty_image", "size_mismatch", "bad_encoding"):
            assert any(k.startswith(f"count.{key}") for k in values), f"{key} not counted: {sorted(values)}"
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


@dataclass
class Driver:
    """A perception_fusion process under test and the rclpy node that feeds and watches it."""

    proc: subprocess.Popen[str]
    node: Node
    tf: TfPublisher
    cloud_pub: Publisher
    received: list[ObstacleArray]
    counts: dict[str, int]  # the node's latest /diagnostics counters ("count.<key>")

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.01)


@contextlib.contextmanager
def driven_node(name: str, *params: str) -> Iterator[Driver]:
    """Start perception_fusion with `params` ("key:=value"; lidar_link 1 m above base_link on /tf_static), yield its
    driver; stop it with SIGINT afterwards and fail on any traceback in its output."""
    args = [a for kv in ("max_rate_hz:=40.0", "diagnostics_period_s:=0.2", *params) for a in ("-p", kv)]
    proc = subprocess.Popen([sys.executable, "-m", "physical_ai_nodes.perception_fusion", "--ros-args", *args],
                            cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    rclpy.init()
    node = Node(name)
    try:
        tf = TfPublisher(node)
        T = np.eye(4)
        T[2, 3] = 1.0
        tf.publish_static([("base_link", "lidar_link", 0, T)])
        driver = Driver(proc, node, tf, node.create_publisher(PointCloud2, "/lidar/points", SENSOR_QOS), [], {})
        node.create_subscription(ObstacleArray, "/perception/obstacles", driver.received.append, STATE_QOS)

        def on_diag(msg: DiagnosticArray) -> None:
            for status in msg.status:
                if status.hardware_id == "perception_fusion":
                    driver.counts.update({kv.key: int(kv.value) for kv in status.values
                                          if kv.key.startswith("count.")})
        node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, STATE_QOS)
        yield driver
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        proc.send_signal(signal.SIGINT)
        try:
            out = proc.communicate(timeout=10)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            out = proc.communicate()[0]
    assert "Traceback" not in out, out


def test_a_node_that_hears_nothing_from_live_publishers_exits_to_be_restarted():
    """A participant whose transport failed to start hears nothing, for good: perception exits (code 3) when nothing
    arrived for deaf_restart_s since start although its topic has a publisher, for its supervisor to restart it.
    Silence without a publisher (a sensor not started, a topic not used) is not deafness."""
    from physical_ai_nodes._base import DEAF_EXIT_CODE

    with driven_node("perception_deaf_driver", "deaf_restart_s:=2.0", "image_topic:=''") as d:
        d.node.destroy_publisher(d.cloud_pub)
        deadline = time.monotonic() + 60  # a fresh clone's first imports take a while
        while not d.node.count_subscribers("/lidar/points") and time.monotonic() < deadline:
            d.spin(0.1)
        assert d.node.count_subscribers("/lidar/points"), "perception did not subscribe in 60 s"
        d.spin(5.0)  # nobody publishes, for more than twice deaf_restart_s: alive
        assert d.proc.poll() is None
        d.cloud_pub = d.node.create_publisher(PointCloud2, "/lidar/points", SENSOR_QOS)  # a publisher, silent
        t0 = time.monotonic()
        while d.proc.poll() is None and time.monotonic() < t0 + 30:
            d.spin(0.1)
        assert d.proc.returncode == DEAF_EXIT_CODE, "still running 30 s after a silent publisher appeared"
        assert time.monotonic() - t0 >= 2.0


def test_a_node_on_sim_time_that_never_hears_the_clock_exits_to_be_restarted():
    """On sim time a deaf participant does not hear /clock either: its clock stands at 0, and silence measured on it
    never grew (a respawned perception heard nothing for 90 s in CI). With /clock published but never heard, the
    steady clock measures the silence."""
    from rosgraph_msgs.msg import Clock

    from physical_ai_nodes._base import DEAF_EXIT_CODE

    with driven_node("perception_deaf_clock_driver", "deaf_restart_s:=2.0", "image_topic:=''",
                     "use_sim_time:=true") as d:
        d.node.create_publisher(Clock, "/clock", 10)   # a simulator's /clock that this participant never hears
        t0 = time.monotonic()
        while d.proc.poll() is None and time.monotonic() < t0 + 60:   # a fresh clone's first imports take a while
            d.spin(0.1)
        assert d.proc.returncode == DEAF_EXIT_CODE, "still running 60 s after start with /clock and a sensor silent"


def test_a_node_that_has_heard_is_not_restarted_by_silence():
    """Silence after messages is the sensors' (a stalled driver, a fuzzer done), not deafness: the node keeps
    running, and its stale-data handling reports it."""
    with driven_node("perception_heard_driver", "deaf_restart_s:=2.0", "image_topic:=''") as d:
        pts = _scene(np.random.default_rng(2))
        deadline = time.monotonic() + 60  # a fresh clone's first imports take a while
        while not d.received and time.monotonic() < deadline:
            d.cloud_pub.publish(numpy_to_pointcloud2({"x": pts[:, 0], "y": pts[:, 1], "z": pts[:, 2]}, "lidar_link",
                                                     d.node.get_clock().now().nanoseconds))
            d.spin(0.1)
        assert d.received, "no obstacles in 60 s"
        d.spin(5.0)  # silent publisher, more than twice deaf_restart_s
        assert d.proc.poll() is None


def test_a_frame_the_robot_cannot_be_placed_in_is_not_published():
    """With the self-filter on, a frame without a joint state near its stamp (the first frames after a simulator
    reset) must not report the arm as an obstacle to itself: it is dropped and counted; with joint states, it goes."""
    from sensor_msgs.msg import JointState

    from physical_ai.convert import ns_to_stamp

    with driven_node("perception_self_filter_driver", "self_filter_model:=models/arm_cell/arm_cell.xml",
                     "self_filter_frame:=base_link") as d:
        joint_pub = d.node.create_publisher(JointState, "/joint_states", SENSOR_QOS)
        pts = _scene(np.random.default_rng(1))

        def cycle(with_joints: bool) -> None:
            stamp = d.node.get_clock().now().nanoseconds
            if with_joints:
                js = JointState(name=[f"joint{i}" for i in range(1, 8)], position=[0.0] * 7)
                js.header.stamp = ns_to_stamp(stamp)
                joint_pub.publish(js)
            d.cloud_pub.publish(numpy_to_pointcloud2({"x": pts[:, 0], "y": pts[:, 1], "z": pts[:, 2]},
                                                     "lidar_link", stamp))
            d.spin(0.1)

        deadline = time.monotonic() + 30
        while d.counts.get("count.self_filter_unplaced_frame", 0) < 5 and time.monotonic() < deadline:
            cycle(with_joints=False)
        assert d.counts.get("count.self_filter_unplaced_frame", 0) >= 5, d.counts
        assert not d.received, "a frame without the robot's pose was published"
        deadline = time.monotonic() + 20
        while not d.received and time.monotonic() < deadline:
            cycle(with_joints=True)
        assert d.received and any(abs(o.pose.position.x - 4.0) < 0.5 for o in d.received[-1].obstacles)


def test_a_frame_waits_for_its_tracking_pose_and_is_dropped_without_one():
    """tf that arrives after the sensor data (a busy node, a late broadcaster): the frame waits for the odom pose at
    its stamp instead of being tracked in base_link, where the robot's own motion became obstacle velocity (ROS
    runs: 4 % of frames; a worker's velocity estimate off by up to 2 m/s). A pose that never comes: dropped, counted.
    """
    with driven_node("perception_tf_wait_driver", "image_topic:=''", "tracking_frame:=odom",
                     "tf_wait_s:=0.2") as d:
        pts = _scene(np.random.default_rng(2))
        t0 = d.node.get_clock().now().nanoseconds

        def pose(stamp: int) -> np.ndarray:  # the robot drives along x at 1 m/s in odom
            P = np.eye(4)
            P[0, 3] = (stamp - t0) * 1e-9
            return P

        def cycle(send_tf: bool) -> int:
            stamp = d.node.get_clock().now().nanoseconds
            # The person stands still in odom: in base_link it comes closer as the robot drives.
            shifted = pts.copy()
            shifted[-800:, 0] -= pose(stamp)[0, 3]
            d.cloud_pub.publish(numpy_to_pointcloud2({"x": shifted[:, 0], "y": shifted[:, 1], "z": shifted[:, 2]},
                                                     "lidar_link", stamp))
            d.spin(0.03)  # the pose at the cloud's stamp comes after the cloud
            if send_tf:
                d.tf.publish([("odom", "base_link", stamp, pose(stamp))])
            d.spin(0.07)
            return stamp

        deadline = time.monotonic() + 30
        while len(d.received) < 3 and time.monotonic() < deadline:  # discovery and node start-up
            cycle(send_tf=True)
        assert len(d.received) >= 3, "no obstacles from perception_fusion"
        d.received.clear()
        sent = [cycle(send_tf=True) for _ in range(15)]
        d.spin(0.3)
        got = {m.header.stamp.sec * 10**9 + m.header.stamp.nanosec: m for m in d.received}
        assert len(set(sent) & set(got)) >= 14, "frames lost while waiting for their pose"
        person = [o for o in got[max(got)].obstacles if abs(o.pose.position.y - 1.0) < 0.5]
        assert person and np.hypot(person[0].velocity.x, person[0].velocity.y) < 0.3, \
            "the robot's own motion shows up as the standing person's velocity"
        d.received.clear()
        for _ in range(5):
            cycle(send_tf=False)
        d.spin(1.0)
        assert not d.received, "a frame without its tracking pose was published"
        assert d.counts.get("count.tracking_pose_missing", 0) >= 4, d.counts


def test_occupancy_period_s_spaces_the_grid_and_every_frame_still_gives_obstacles():
    """`occupancy_period_s` (AMR file: 0.5 s): the grid, what detours are planned around, at that period; the
    obstacles, what the corrector reacts to, for every frame."""
    from nav_msgs.msg import OccupancyGrid

    with driven_node("perception_grid_period_driver", "occupancy_period_s:=0.5", "image_topic:=''") as d:
        grids: list[int] = []
        d.node.create_subscription(OccupancyGrid, "/perception/occupancy", lambda m: grids.append(
            m.header.stamp.sec * 10**9 + m.header.stamp.nanosec), STATE_QOS)
        pts = _scene(np.random.default_rng(3))

        def frame() -> None:
            d.cloud_pub.publish(numpy_to_pointcloud2({"x": pts[:, 0], "y": pts[:, 1], "z": pts[:, 2]}, "lidar_link",
                                                     d.node.get_clock().now().nanoseconds))
            d.spin(0.1)

        deadline = time.monotonic() + 60  # a fresh clone's first imports take a while
        while not grids and time.monotonic() < deadline:
            frame()
        assert grids, "no occupancy grid in 60 s"
        d.received.clear()
        grids.clear()
        for _ in range(30):
            frame()
        d.spin(0.3)
        assert len(d.received) >= 28, f"obstacles for {len(d.received)} of 30 frames"
        assert 4 <= len(grids) <= 7, f"{len(grids)} grids over 3 s at one per 0.5 s"
        assert min(np.diff(grids)) >= 0.5e9 - 1, "grids closer than occupancy_period_s"

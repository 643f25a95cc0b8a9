"""Issue 22 findings, each replayed through real DDS at the AMR stack's nodes (perception, policy, corrector).

Every message here is legal on the wire and killed or froze a node before the shared validation layer: a stamp with
nanosec >= 1e9 on each input and on /tf, a CameraInfo with a zero or NaN K, an OccupancyGrid with a NaN resolution,
an obstacle at 1e5 m/s, 20k obstacles, an instruction far beyond any prompt. Each is sent six times (perception and
policy were respawned at most five times). Afterwards no node has exited, each drop is counted by topic and reason
on /diagnostics, and the corrector's loop is still running.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from bringup_testlib import Probe, RunningStack
from builtin_interfaces.msg import Time
from geometry_msgs.msg import TransformStamped
from nav_msgs.msg import OccupancyGrid, Odometry
from physical_ai_stack.msg import ActionChunk, Obstacle, ObstacleArray
from sensor_msgs.msg import CameraInfo, Image, LaserScan
from std_msgs.msg import String
from tf2_msgs.msg import TFMessage

from physical_ai.bringup.stack import STACK, node_command, params_file
from physical_ai.convert import make_header, numpy_to_pointcloud2

NODES = ("perception_fusion", "policy_inference", "trajectory_correction")
BAD_STAMP = Time(sec=100, nanosec=1_500_000_000)


def _bad_stamp(msg):
    msg.header.stamp = BAD_STAMP
    return msg


def _tf() -> TFMessage:
    t = TransformStamped(header=make_header("odom"), child_frame_id="base_link")
    t.transform.rotation.w = 1.0
    t.header.stamp = BAD_STAMP
    return TFMessage(transforms=[t])


def _camera_info(k: float) -> CameraInfo:
    return CameraInfo(header=make_header("camera_color_optical_frame"), width=640, height=480, k=[k] * 9)


def _obstacles(n: int, speed: float) -> ObstacleArray:
    msg = ObstacleArray(header=make_header("base_link"), sensors_alive=Obstacle.SENSOR_LIDAR)
    for i in range(n):
        o = Obstacle(id=i, classification=Obstacle.CLASS_PERSON)
        o.pose.position.x, o.pose.orientation.w = 2.0, 1.0
        o.size.x = o.size.y = o.size.z = 0.5
        o.velocity.x = speed
        msg.obstacles.append(o)
    return msg


def _grid() -> OccupancyGrid:
    msg = OccupancyGrid(header=make_header("odom"))
    msg.info.width = msg.info.height = 10
    msg.info.resolution = math.nan
    msg.info.origin.orientation.w = 1.0
    msg.data = [0] * 100
    return msg


# (topic, message, [(node, counter)]) — each node subscribing to the topic must count the drop under that reason.
FINDINGS = [
    ("/tf", _tf(), [(n, "invalid:/tf:stamp") for n in NODES]),
    ("/lidar/points", _bad_stamp(numpy_to_pointcloud2(np.ones((10, 3), np.float32), "lidar_link")),
     [(n, "invalid:/lidar/points:stamp") for n in ("perception_fusion", "trajectory_correction")]),
    ("/scan", _bad_stamp(LaserScan(header=make_header("lidar_link"), angle_increment=0.01, range_max=10.0,
                                   ranges=[1.0] * 10)),
     [(n, "invalid:/scan:stamp") for n in ("perception_fusion", "trajectory_correction")]),
    ("/camera/color/image_raw", _bad_stamp(Image(header=make_header("camera_color_optical_frame"), width=4,
                                                 height=4, encoding="rgb8", step=12, data=bytes(48))),
     [("perception_fusion", "invalid:/camera/color/image_raw:stamp")]),
    ("/camera/color/camera_info", _camera_info(0.0),
     [("perception_fusion", "invalid:/camera/color/camera_info:uncalibrated")]),
    ("/camera/color/camera_info", _camera_info(math.nan),
     [("perception_fusion", "invalid:/camera/color/camera_info:uncalibrated")]),
    ("/odom", _bad_stamp(Odometry(header=make_header("odom"), child_frame_id="base_link")),
     [(n, "invalid:/odom:stamp") for n in ("policy_inference", "trajectory_correction")]),
    ("/perception/obstacles", _bad_stamp(_obstacles(1, 0.0)),
     [(n, "invalid:/perception/obstacles:stamp") for n in ("policy_inference", "trajectory_correction")]),
    ("/perception/obstacles", _obstacles(1, 1e5),
     [(n, "invalid:/perception/obstacles:out_of_range") for n in ("policy_inference", "trajectory_correction")]),
    ("/perception/obstacles", _obstacles(20_000, 0.0),
     [(n, "invalid:/perception/obstacles:too_large") for n in ("policy_inference", "trajectory_correction")]),
    ("/perception/occupancy", _grid(), [("trajectory_correction", "invalid:/perception/occupancy:out_of_range")]),
    ("/policy/action_chunk", _bad_stamp(ActionChunk(embodiment="amr", action_names=["linear_x", "angular_z"],
                                                    dt=0.1, horizon=1, values=[0.1, 0.0])),
     [("trajectory_correction", "invalid:/policy/action_chunk:stamp")]),
    ("/policy/instruction", String(data="go " * 100_000),
     [("policy_inference", "invalid:/policy/instruction:too_large")]),
]


@pytest.fixture
def stack(tmp_path):
    params = params_file("amr")
    specs = {spec.name: spec for spec in STACK}
    running = RunningStack([(specs[n], node_command(specs[n], params)) for n in NODES], tmp_path / "logs")
    probe = Probe("bad_message_probe")
    try:
        yield running, probe
    finally:
        probe.close()
        running.stop()


def test_no_finding_ends_a_node_and_every_drop_is_counted_by_reason(stack):
    running, probe = stack
    probe.wait(lambda: all(n in probe.diagnostics for n in NODES), 60, "diagnostics of every node")
    pids = {n: running.supervisor.pid(n) for n in NODES}
    publishers = {}
    for topic, msg, _ in FINDINGS:
        if (topic, type(msg)) not in publishers:
            publishers[(topic, type(msg))] = probe.node.create_publisher(type(msg), topic, 10)
    probe.wait(lambda: all(p.get_subscription_count() > 0 for p in publishers.values()), 30, "subscribers")
    for _ in range(6):
        for topic, msg, _ in FINDINGS:
            publishers[(topic, type(msg))].publish(msg)
            time.sleep(0.02)

    expected = [(node, key) for _, _, counted in FINDINGS for node, key in counted]

    def missing() -> list[tuple[str, str]]:
        with probe.lock:
            return [(n, k) for n, k in expected if int(probe.diagnostics.get(n, {}).get(f"count.{k}", 0)) == 0]

    deadline = time.monotonic() + 30
    while missing() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not missing(), f"not counted: {missing()}; events {running.events}"
    assert {n: running.supervisor.pid(n) for n in NODES} == pids, running.events
    assert not any("exited" in e or "died" in e for e in running.events), running.events
    # The corrector's loop still runs: its status keeps coming, with the cycle count rising.
    # (The probe itself subscribes to /perception/obstacles and takes a while over the 20k-obstacle messages.)
    first = probe.wait(lambda: probe.fresh("/correction/status", 0.5), 30, "correction status")
    probe.wait(lambda: getattr(probe.fresh("/correction/status", 0.5), "cycles", 0) > first.cycles, 30,
               "the corrector's cycle count rising")

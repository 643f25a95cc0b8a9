"""The recorder writes an MCAP file whose messages decode back to what was published (ros2msg schemas, CDR)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import rclpy
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from physical_ai_stack.msg import Obstacle, ObstacleArray
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import LaserScan

from physical_ai_nodes._base import LATCHED_QOS


@pytest.fixture
def ros_node():
    rclpy.init()
    node = rclpy.create_node("recorder_test_publisher")
    yield node
    node.destroy_node()
    rclpy.shutdown()


def test_recorder_writes_decodable_mcap(tmp_path, ros_node):
    out = tmp_path / "run.mcap"
    obstacles = ros_node.create_publisher(ObstacleArray, "/perception/obstacles", 10)
    scans = ros_node.create_publisher(LaserScan, "/scan", qos_profile_sensor_data)
    latched = ros_node.create_publisher(ObstacleArray, "/latched_info", LATCHED_QOS)
    latched.publish(ObstacleArray(degraded=True))  # sent before the recorder exists: must still be recorded
    proc = subprocess.Popen([sys.executable, "-m", "physical_ai_nodes.recorder", "--ros-args",
                             "-p", f"output:={out}", "-p", "discovery_period_s:=0.1"], env=dict(os.environ))
    try:
        deadline = time.monotonic() + 30
        sent = 0
        while time.monotonic() < deadline and sent < 40:
            rclpy.spin_once(ros_node, timeout_sec=0.05)
            if ros_node.count_subscribers("/perception/obstacles") and ros_node.count_subscribers("/scan"):
                msg = ObstacleArray(obstacles=[Obstacle(id=sent, classification=Obstacle.CLASS_PERSON)])
                msg.header.frame_id = "base_link"
                obstacles.publish(msg)
                scans.publish(LaserScan(ranges=[1.0, 2.0, float(sent)]))
                sent += 1
        assert sent == 40, "recorder never subscribed"
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    with open(out, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        decoded: dict[str, list] = {}
        for _, channel, _, msg in reader.iter_decoded_messages():
            decoded.setdefault(channel.topic, []).append(msg)
    ids = [m.obstacles[0].id for m in decoded["/perception/obstacles"]]
    assert ids == sorted(ids) and len(ids) >= 35  # reliable topic: (nearly) all, in order
    assert decoded["/perception/obstacles"][0].header.frame_id == "base_link"
    assert decoded["/perception/obstacles"][0].obstacles[0].classification == Obstacle.CLASS_PERSON
    assert list(decoded["/scan"][-1].ranges[:2]) == [1.0, 2.0]
    assert decoded["/latched_info"][0].degraded is True

"""The demo's vehicle monitor: every /ackermann_cmd over DDS is checked against the car's limits over its stamps."""

from __future__ import annotations

import time

import pytest
import rclpy
from ackermann_msgs.msg import AckermannDriveStamped
from rclpy.executors import SingleThreadedExecutor

from physical_ai.convert import ns_to_stamp
from physical_ai_nodes._base import COMMAND_QOS
from physical_ai_nodes._vehicle_monitor import VehicleRunMonitor

LIMITS = {"max_speed": 15.0, "max_steer": 0.5, "max_steer_rate": 0.6, "max_acc": 2.0, "max_decel": 5.0,
          "period_s": 0.01}


@pytest.fixture
def ros():
    rclpy.init()
    pub_node = rclpy.create_node("vehicle_monitor_test_publisher")
    monitor = VehicleRunMonitor()
    executor = SingleThreadedExecutor()
    executor.add_node(pub_node)
    executor.add_node(monitor)
    yield pub_node, monitor, executor
    executor.shutdown()
    monitor.destroy_node()
    pub_node.destroy_node()
    rclpy.shutdown()


def _send(pub_node, monitor, executor, commands: list[tuple[int, float, float]]) -> None:
    """Publish (stamp ns, speed, steering) in a burst (faster than they are stamped) and wait for all of them."""
    pub = pub_node.create_publisher(AckermannDriveStamped, "/ackermann_cmd", COMMAND_QOS)
    deadline = time.monotonic() + 20
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    assert pub.get_subscription_count() > 0, "monitor never subscribed"
    for stamp, speed, steer in commands:
        msg = AckermannDriveStamped()
        msg.header.stamp = ns_to_stamp(stamp)
        msg.drive.speed, msg.drive.steering_angle = speed, steer
        pub.publish(msg)
    while monitor.commands_received < len(commands) and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    assert monitor.commands_received == len(commands)


def test_commands_within_limits_pass_and_jumps_are_counted(ros) -> None:
    pub_node, monitor, executor = ros
    period_ns = 10_000_000
    # 2 s ramp at 1.5 m/s^2 and 0.5 rad/s: within every limit, sent as one burst (wall arrival says nothing)
    ramp = [(k * period_ns, 0.015 * k, min(0.005 * k, 0.45)) for k in range(200)]
    t_end = 200 * period_ns
    # then three faulty commands: a 1 m/s speed jump in one period, a 0.1 rad steering jump, steering over the limit
    faulty = [(t_end, ramp[-1][1] + 1.0, 0.45), (t_end + period_ns, ramp[-1][1] + 1.0, 0.35),
              (t_end + 200 * period_ns, ramp[-1][1] + 1.0, 0.6)]
    _send(pub_node, monitor, executor, ramp + faulty)
    assert monitor.vehicle_limit_violations(**LIMITS) == 3

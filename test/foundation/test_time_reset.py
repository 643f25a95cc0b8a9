"""ROS time jumping back (a simulator reset) over real DDS: PhysaiNode hooks fire and TF history restarts."""

from __future__ import annotations

import time

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rosgraph_msgs.msg import Clock

from physical_ai.convert import ns_to_stamp
from physical_ai.tf import TransformBuffer
from physical_ai_nodes._base import PhysaiNode
from physical_ai_nodes._tf import TfListener, TfPublisher

S = 1_000_000_000


def test_time_jump_back_runs_reset_hooks_and_clears_tf_history():
    context = rclpy.Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    try:
        node = PhysaiNode("time_reset_probe", context=context,
                          parameter_overrides=[Parameter("use_sim_time", Parameter.Type.BOOL, True)])
        source = rclpy.create_node("clock_source", context=context)
        executor.add_node(node)
        executor.add_node(source)
        hits: list[int] = []
        node.on_time_reset(lambda: hits.append(node.get_clock().now().nanoseconds))
        buffer = TransformBuffer()
        TfListener(node, buffer)
        clock = source.create_publisher(Clock, "/clock", 10)
        tf = TfPublisher(source)

        def advance(t_s: float) -> None:
            clock.publish(Clock(clock=ns_to_stamp(int(t_s * S))))
            deadline = time.monotonic() + 5.0
            while node.get_clock().now().nanoseconds != int(t_s * S) and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.05)
            assert node.get_clock().now().nanoseconds == int(t_s * S)

        deadline = time.monotonic() + 10.0
        while clock.get_subscription_count() == 0 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        for t in (1.0, 2.0, 3.0, 2.95):  # a 50 ms step back is reordering, not a reset
            advance(t)
        T = np.eye(4)
        T[0, 3] = 5.0
        tf.publish([("odom", "base_link", 3 * S, T)])
        deadline = time.monotonic() + 5.0
        while not buffer.can_transform("odom", "base_link") and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        assert buffer.can_transform("odom", "base_link") and hits == []
        advance(0.5)  # the simulator restarted its episode
        assert hits == [int(0.5 * S)]
        assert node.counter("time_jumped_back") == 1
        assert not buffer.can_transform("odom", "base_link"), "old episode's pose survived the reset"
        # An old-episode sample delivered after the reset (in flight at the time) must not become the newest
        # sample: the new episode's poses would sort before it and every lookup at a new stamp would fail.
        tf.publish([("odom", "base_link", 3 * S + S // 50, T)])
        T0 = np.eye(4)
        tf.publish([("odom", "base_link", S // 2, T0)])
        deadline = time.monotonic() + 5.0
        while not buffer.can_transform("odom", "base_link") and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        for _ in range(5):
            executor.spin_once(timeout_sec=0.02)
        assert node.counter("tf_future") == 1
        assert np.allclose(buffer.lookup("odom", "base_link", S // 2), T0)
    finally:
        executor.shutdown()
        rclpy.try_shutdown(context=context)

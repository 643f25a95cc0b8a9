"""Integration tests over real DDS: every interface across processes, /tf round trip, node conventions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.executors import SingleThreadedExecutor
from rclpy.experimental import EventsExecutor
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image
from std_msgs.msg import String

from physical_ai.convert import ns_to_stamp, numpy_to_image, numpy_to_pointcloud2
from physical_ai.tf import TransformBuffer
from physical_ai_nodes._base import SENSOR_QOS, STATE_QOS, PhysaiNode
from physical_ai_nodes._tf import TfListener, TfPublisher
from physical_ai_nodes.sensor_monitor import SensorMonitor

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
import msg_samples  # noqa: E402


@pytest.fixture
def ros():
    """An rclpy context and executor private to one test."""
    context = rclpy.Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    try:
        yield context, executor
    finally:
        executor.shutdown()
        rclpy.try_shutdown(context=context)


def spin_until(executor: SingleThreadedExecutor, condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        executor.spin_once(timeout_sec=0.05)
    return condition()


def stop(process: subprocess.Popen, timeout_s: float = 10.0) -> int:
    """SIGINT, then kill after a timeout; returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def node_process(module: str, *ros_args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", f"physical_ai_nodes.{module}", "--ros-args", *ros_args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)


def test_sample_list_covers_every_project_message():
    assert {p.stem for p in (ROOT / "msg").glob("*.msg")} == set(msg_samples.PROJECT_TYPES)


def test_every_interface_crosses_processes(ros):
    """Publish a fully populated sample of each type; a second process receives it and returns a hash of its content."""
    context, _ = ros
    node = rclpy.create_node("msg_source", context=context)
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    prefix = f"/foundation_wire_{os.getpid()}"
    expected = {}
    publishers = []
    for type_name in msg_samples.ALL_TYPES:
        msg = msg_samples.filled(msg_samples.message_class(type_name))
        expected[type_name] = msg_samples.digest(repr(deserialize_message(serialize_message(msg), type(msg))).encode())
        publisher = node.create_publisher(type(msg), msg_samples.topic_of(prefix, type_name), qos)
        publisher.publish(msg)  # transient local: kept for the late-joining subscriber
        publishers.append(publisher)
    echo = subprocess.Popen([sys.executable, str(HERE / "msg_samples.py"), prefix, *msg_samples.ALL_TYPES],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = echo.communicate(timeout=60)
    finally:
        stop(echo)
        node.destroy_node()
    received = dict(line.split() for line in out.splitlines() if line.strip())
    assert set(received) == set(expected), f"missing {set(expected) - set(received)}; stderr: {err[-2000:]}"
    for type_name, digest in expected.items():
        assert received[type_name] == digest, f"{type_name} changed on the wire"
    assert echo.returncode == 0


def test_tf_publisher_to_listener_over_dds(ros):
    context, executor = ros
    talker = rclpy.create_node("tf_talker", context=context)
    listener_node = rclpy.create_node("tf_listener", context=context)
    executor.add_node(talker)
    executor.add_node(listener_node)
    publisher = TfPublisher(talker)
    T_lidar = np.eye(4)
    T_lidar[:3, 3] = (0.5, 0.0, 0.3)
    T_cam = np.eye(4)
    T_cam[:3, 3] = (0.2, 0.0, 1.0)
    # statics published before the listener exists must still arrive (transient local), and accumulate
    publisher.publish_static([("base_link", "lidar", 0, T_lidar)])
    publisher.publish_static([("base_link", "camera", 0, T_cam)])
    buffer = TransformBuffer()
    listener = TfListener(listener_node, buffer)
    for k in range(3):
        T = np.eye(4)
        T[0, 3] = float(k)
        publisher.publish([("odom", "base_link", k * 1_000_000_000, T)])
    assert spin_until(executor, lambda: buffer.can_transform("odom", "camera", 1_500_000_000)
                      and buffer.can_transform("odom", "lidar", 2_000_000_000), 10.0)
    np.testing.assert_allclose(buffer.lookup("odom", "lidar", 1_500_000_000)[:3, 3], [2.0, 0.0, 0.3], atol=1e-9)
    np.testing.assert_allclose(buffer.lookup("lidar", "camera", 0)[:3, 3], [-0.3, 0.0, 0.7], atol=1e-9)
    listener.destroy()
    talker.destroy_node()
    listener_node.destroy_node()


def test_parameter_out_of_range_is_refused(ros):
    context, _ = ros
    node = SensorMonitor(context=context)
    try:
        result = node.set_parameters([Parameter("stale_after_s", value=1000.0)])[0]
        assert not result.successful
        assert node.get_parameter("stale_after_s").value == 0.5
        assert node.set_parameters([Parameter("stale_after_s", value=2.0)])[0].successful
    finally:
        node.destroy_node()
    # at start-up, from the command line: the process refuses to run and names the parameter
    process = node_process("sensor_monitor", "-p", "stale_after_s:=1000.0")
    out, _ = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "stale_after_s" in out


def test_qos_incompatibility_is_counted(ros):
    context, executor = ros
    node = PhysaiNode("qos_check", context=context)
    other = rclpy.create_node("qos_other", context=context)
    executor.add_node(node)
    executor.add_node(other)
    best_effort = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
    node.checked_publisher(String, "/foundation_qos", best_effort)
    other.create_subscription(String, "/foundation_qos", lambda _: None, STATE_QOS)  # reliable: incompatible
    assert spin_until(executor, lambda: node.counter("qos_incompatible:/foundation_qos") > 0, 10.0)
    status = node.diagnostic_status()
    assert any(v.key == "count.qos_incompatible:/foundation_qos" for v in status.values)
    node.destroy_node()
    other.destroy_node()


@pytest.mark.parametrize("events", [False, True], ids=["single_threaded", "events"])
def test_a_callback_with_message_info_gets_the_send_time_under_either_executor(events: bool) -> None:
    """The recorder logs the publisher's send time from the message info; rclpy's EventsExecutor (Kilted) hands a
    two-argument callback its (message, info) as one tuple, which `PhysaiNode` unpacks."""
    context = rclpy.Context()
    rclpy.init(context=context)
    executor = EventsExecutor(context=context) if events else SingleThreadedExecutor(context=context)
    node = PhysaiNode("info_check", context=context)
    try:
        executor.add_node(node)
        got: list[tuple[bytes, dict, int]] = []
        node.create_subscription(String, "/foundation_info", lambda data, info: got.append((data, info,
                                 time.time_ns())), STATE_QOS, raw=True)
        publisher = node.create_publisher(String, "/foundation_info", STATE_QOS)
        sent = []
        deadline = time.monotonic() + 10.0
        while len(got) < 5 and time.monotonic() < deadline:
            sent.append(time.time_ns())
            publisher.publish(String(data="x"))
            executor.spin_once(timeout_sec=0.05)
        assert len(got) >= 5 and node.counter("callback_error:/foundation_info") == 0
        for data, info, taken in got:
            assert deserialize_message(data, String).data == "x"
            assert sent[0] <= info["source_timestamp"] <= info["received_timestamp"] <= taken
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)


def _values(status: DiagnosticStatus) -> dict[str, str]:
    return {v.key: v.value for v in status.values}


def test_sensor_monitor_diagnostics_staleness_and_sigint(ros):
    """The monitor, in its own process, reports rate and age of a 20 Hz stream, then flags it stale."""
    context, executor = ros
    topic = "/foundation_monitor/image"
    process = node_process("sensor_monitor", "--params-file", str(ROOT / "config" / "sensor_monitor.yaml"),
                           "-p", f"topics:=['{topic}:sensor_msgs/msg/Image']", "-p", "stale_after_s:=0.4",
                           "-p", "diagnostics_period_s:=0.25")
    node = rclpy.create_node("monitor_probe", context=context)
    executor.add_node(node)
    latest: list[DiagnosticStatus] = []
    node.create_subscription(DiagnosticArray, "/diagnostics",
                             lambda m: latest.extend(s for s in m.status if s.name == "/sensor_monitor"), STATE_QOS)
    publisher = node.create_publisher(Image, topic, 10)
    image = numpy_to_image(np.zeros((48, 64, 3), np.uint8), "rgb8", "camera")

    def publish() -> None:
        image.header.stamp = node.get_clock().now().to_msg()
        publisher.publish(image)

    timer = node.create_timer(0.05, publish)
    try:
        def fresh() -> bool:
            if not latest:
                return False
            values = _values(latest[-1])
            # in range once steady: after a stall of either process on a busy machine, DDS delivers the queued
            # images at once and the 2 s rate window reads up to ~40 Hz (seen in CI)
            return (latest[-1].level == DiagnosticStatus.OK and values.get(f"stale.{topic}") == "False"
                    and 10.0 < float(values.get(f"rate_hz.{topic}", 0)) < 30.0)
        assert spin_until(executor, fresh, 30.0), f"no healthy diagnostics at ~20 Hz: {latest[-1:]}"
        values = _values(latest[-1])
        assert 10.0 < float(values[f"rate_hz.{topic}"]) < 30.0
        age_p50 = float(values[f"latency_ms.{topic}.p50"])
        assert 0.0 <= age_p50 < 500.0
        timer.cancel()
        latest.clear()
        assert spin_until(executor, lambda: bool(latest) and latest[-1].level == DiagnosticStatus.WARN
                          and _values(latest[-1]).get(f"stale.{topic}") == "True", 10.0)
        assert topic in latest[-1].message
    finally:
        code = stop(process)
        node.destroy_node()
    out = process.stdout.read()
    assert code == 0, out
    assert "Traceback" not in out


def test_sensor_monitor_uses_sim_time(ros):
    """With use_sim_time the node's stamps and timers follow /clock."""
    context, executor = ros
    process = node_process("sensor_monitor", "-p", "use_sim_time:=true", "-p", "diagnostics_period_s:=0.2")
    node = rclpy.create_node("clock_source", context=context)
    executor.add_node(node)
    clock_pub = node.create_publisher(Clock, "/clock", 10)
    sim_start_ns = 5_000 * 1_000_000_000
    started = time.monotonic()
    node.create_timer(0.01, lambda: clock_pub.publish(
        Clock(clock=ns_to_stamp(sim_start_ns + int((time.monotonic() - started) * 1e9)))))
    stamps: list[int] = []
    node.create_subscription(
        DiagnosticArray, "/diagnostics",
        lambda m: stamps.extend(m.header.stamp.sec for s in m.status if s.name == "/sensor_monitor"), STATE_QOS)
    try:
        assert spin_until(executor, lambda: len(stamps) >= 2, 30.0)
        assert all(5_000 <= s < 5_100 for s in stamps), stamps
    finally:
        code = stop(process)
        node.destroy_node()
    assert code == 0


STREAM_SUBSCRIBER = """
import sys, time, rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import PointCloud2
rclpy.init()
node = rclpy.create_node("stream_sink")
received = []
node.create_subscription(PointCloud2, sys.argv[1], lambda m: received.append(len(m.data)), qos_profile_sensor_data)
print("ready", flush=True)
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end and len(received) < int(sys.argv[3]):
    rclpy.spin_once(node, timeout_sec=0.05)
print(len(received), min(received, default=0), flush=True)
"""


def test_large_best_effort_clouds_arrive_with_the_shipped_profile(ros):
    """130k-point clouds (2 MB) at 10 Hz, best effort, reach another process (Fast DDS defaults drop ~all)."""
    assert os.environ["FASTDDS_DEFAULT_PROFILES_FILE"].endswith("config/fastdds.xml")
    context, _ = ros
    topic = f"/foundation_stream_{os.getpid()}"
    sink = subprocess.Popen([sys.executable, "-c", STREAM_SUBSCRIBER, topic, "12", "20"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    node = rclpy.create_node("stream_source", context=context)
    try:
        assert sink.stdout.readline().strip() == "ready"
        cloud = numpy_to_pointcloud2(np.random.default_rng(0).normal(size=(130_000, 4)).astype(np.float32))
        publisher = node.create_publisher(type(cloud), topic, SENSOR_QOS)
        deadline = time.monotonic() + 8.0
        while publisher.get_subscription_count() < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        for _ in range(20):
            publisher.publish(cloud)
            time.sleep(0.1)
        out, err = sink.communicate(timeout=30)
    finally:
        stop(sink)
        node.destroy_node()
    count, size = (int(v) for v in out.split())
    assert count >= 18, f"only {count}/20 clouds arrived; {err[-1000:]}"
    assert size == 130_000 * 16

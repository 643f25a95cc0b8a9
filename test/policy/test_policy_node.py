"""policy_inference node over real DDS: observations in, chunks out; stale inputs, pause, NaN output, server loss."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import node_process
import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry
from node_process import stop_node
from physical_ai_stack.msg import (
    ActionChunk,
    DetectedPart,
    DetectedPartArray,
    Obstacle,
    ObstacleArray,
    WorldModelPrediction,
)
from policy_testlib import make_checkpoint
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from spin_thread import SpinThread
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from physical_ai import convert
from physical_ai.policy.policy import make_policy
from physical_ai.policy.policy_server import PolicyServer, policy_handler
from physical_ai_nodes._base import COMMAND_QOS, STATE_QOS

ROOT = Path(__file__).resolve().parents[2]
ARM_JOINTS = [f"joint{i}" for i in range(1, 8)]


def start_node(*params: str) -> subprocess.Popen:
    return node_process.start_node("policy_inference", *params)


class Harness:
    """A test node that feeds the policy node's inputs and records its outputs."""

    def __init__(self) -> None:
        self.node = Node("policy_test_harness")
        n = self.node
        self.image_pub = n.create_publisher(Image, "/camera/color/image_raw", qos_profile_sensor_data)
        self.joint_pub = n.create_publisher(JointState, "/joint_states", qos_profile_sensor_data)
        self.odom_pub = n.create_publisher(Odometry, "/odom", qos_profile_sensor_data)
        self.obstacle_pub = n.create_publisher(ObstacleArray, "/perception/obstacles", qos_profile_sensor_data)
        self.parts_pub = n.create_publisher(DetectedPartArray, "/perception/parts", qos_profile_sensor_data)
        self.instruction_pub = n.create_publisher(String, "/policy/instruction", STATE_QOS)
        self.chunks: list[tuple[float, ActionChunk]] = []
        self.trajectories: list[JointTrajectory] = []
        self.diagnostics: list = []
        n.create_subscription(ActionChunk, "/policy/action_chunk", lambda m: self.chunks.append((time.monotonic(), m)),
                              COMMAND_QOS)
        n.create_subscription(JointTrajectory, "/policy/joint_trajectory", self.trajectories.append, COMMAND_QOS)
        n.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, STATE_QOS)
        self.params = n.create_client(SetParameters, "/policy_inference/set_parameters")
        self.feed = {"image", "joints", "parts", "obstacles"}
        self.parts_ahead_ns = 0  # stamp the parts this far ahead of the clock (a frame sent before a clock reset)
        self.rng = np.random.default_rng(0)
        self.image = self.rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
        n.create_timer(1 / 30, self._publish)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(n)
        self.spin = SpinThread(self.executor)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.hardware_id == "policy_inference":
                level = status.level[0] if isinstance(status.level, bytes) else int(status.level)
                self.diagnostics.append((level, status.message, {kv.key: kv.value for kv in status.values}))

    def _publish(self) -> None:
        now = self.node.get_clock().now().nanoseconds
        if "image" in self.feed:
            self.image_pub.publish(convert.numpy_to_image(self.image, "rgb8", "camera", now))
        if "joints" in self.feed:
            msg = JointState(name=[*ARM_JOINTS, "gripper"], position=list(np.linspace(-0.5, 0.5, 8)),
                             velocity=[0.0] * 8, effort=[0.0] * 8)
            msg.header.stamp = convert.ns_to_stamp(now)
            self.joint_pub.publish(msg)
        if "odom" in self.feed:
            self.odom_pub.publish(convert.make_odometry(np.eye(4), np.array([0.3, 0, 0, 0, 0, 0.1]), stamp_ns=now))
        if "obstacles" in self.feed:
            msg = ObstacleArray()
            msg.header.stamp = convert.ns_to_stamp(now)
            msg.header.frame_id = "base_link"
            obstacle = Obstacle(id=1, classification=Obstacle.CLASS_PERSON, confidence=0.9)
            obstacle.pose.position.x, obstacle.pose.orientation.w = 2.0, 1.0
            msg.obstacles = [obstacle]
            self.obstacle_pub.publish(msg)
        if "parts" in self.feed:
            msg = DetectedPartArray()
            msg.header.stamp = convert.ns_to_stamp(now + self.parts_ahead_ns)
            part = DetectedPart(label="cube", confidence=0.8)
            part.pose.pose.position.x, part.pose.pose.orientation.w = 0.4, 1.0
            msg.parts = [part]
            self.parts_pub.publish(msg)

    def wait_chunks(self, count: int, timeout_s: float) -> bool:
        start = len(self.chunks)
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and len(self.chunks) < start + count:
            time.sleep(0.02)
        return len(self.chunks) >= start + count

    def quiet_for(self, seconds: float) -> bool:
        """True when no chunk arrives during `seconds`."""
        before = len(self.chunks)
        time.sleep(seconds)
        return len(self.chunks) == before

    def last_diag(self, timeout_s: float = 3.0, predicate=lambda d: True):
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.diagnostics and predicate(self.diagnostics[-1]):
                return self.diagnostics[-1]
            time.sleep(0.05)
        return self.diagnostics[-1] if self.diagnostics else None

    def set_bool(self, name: str, value: bool) -> None:
        assert self.params.wait_for_service(5.0)
        request = SetParameters.Request(parameters=[Parameter(
            name=name, value=ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value))])
        future = self.params.call_async(request)
        end = time.monotonic() + 5.0
        while not future.done() and time.monotonic() < end:
            time.sleep(0.02)
        assert future.done() and future.result().results[0].successful

    def close(self) -> None:
        self.spin.stop()
        self.node.destroy_node()


@pytest.fixture
def harness():
    rclpy.init()
    h = Harness()
    try:
        yield h
    finally:
        h.close()
        rclpy.try_shutdown()


def test_arm_chunks_trajectory_stale_skip_and_pause(tmp_path, harness):
    make_checkpoint(tmp_path, "arm")
    proc = start_node(f"checkpoint:={tmp_path}", "embodiment:=arm", "request_threshold_s:=0.5",
                      "max_observation_age_s:=0.4", "diagnostics_period_s:=0.2")
    try:
        harness.instruction_pub.publish(String(data="pick the cube"))
        assert harness.wait_chunks(3, 30.0), stop_node(proc)
        for _, msg in harness.chunks[:3]:
            assert msg.embodiment == "arm" and list(msg.action_names) == [*ARM_JOINTS, "gripper"]
            assert 1 <= msg.horizon <= 20 and len(msg.values) == msg.horizon * 8
            assert np.isfinite(msg.values).all() and msg.dt == pytest.approx(0.05)
            # start_time = observation time + whole elapsed steps (prefix skipped, never in the past by a step)
            offset = convert.stamp_to_ns(msg.start_time) - convert.stamp_to_ns(msg.header.stamp)
            steps = offset / 0.05e9
            assert offset >= 0 and abs(steps - round(steps)) < 1e-3 and msg.horizon == 20 - round(steps)
        sequences = [m.sequence for _, m in harness.chunks]
        assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
        # Chunks are requested before the current one ends: arrival gaps stay below the 1 s chunk length.
        arrivals = [t for t, _ in harness.chunks]
        assert max(np.diff(arrivals)) < 1.0
        traj = harness.trajectories[-1]
        assert list(traj.joint_names) == ARM_JOINTS and len(traj.points) >= 1 and len(traj.points[0].positions) == 7
        level, _, values = harness.last_diag(predicate=lambda d: {"latency_ms.inference.p50", "backend"} <= set(d[2]))
        assert values["backend"] == "torch" and values["backend_health"] == "ok"
        assert float(values["latency_ms.inference.p50"]) > 0 and float(values["chunk_age_ms"]) >= 0

        # Joint states go silent: inference is skipped and reported, nothing new is published.
        harness.feed.discard("joints")
        time.sleep(0.6)
        assert harness.quiet_for(1.5)
        level, message, values = harness.last_diag(predicate=lambda d: "stale" in d[1])
        assert level == 1 and "stale: joints" in message and int(values["count.observation_skipped"]) > 0
        harness.feed.add("joints")
        assert harness.wait_chunks(1, 5.0)

        # Pause and resume through the parameter.
        harness.set_bool("paused", True)
        time.sleep(0.3)
        assert harness.quiet_for(1.5)
        harness.set_bool("paused", False)
        assert harness.wait_chunks(1, 5.0)
    finally:
        out = stop_node(proc)
    assert "Traceback" not in out, out


def test_inputs_stamped_ahead_of_the_clock_are_never_used(tmp_path, harness):
    """A perception frame of the previous episode, received after a simulator reset, must not plan the new one."""
    make_checkpoint(tmp_path, "arm")
    harness.parts_ahead_ns = 2_000_000_000
    proc = start_node(f"checkpoint:={tmp_path}", "embodiment:=arm", "diagnostics_period_s:=0.2")
    try:
        harness.instruction_pub.publish(String(data="pick the cube"))
        time.sleep(2.0)
        assert harness.quiet_for(1.5), "a chunk was planned on parts stamped 2 s ahead of the clock"
        level, message, values = harness.last_diag(
            timeout_s=10.0, predicate=lambda d: "parts" in d[1] and int(d[2].get("count.future.parts", 0)) > 0)
        assert level == 1 and "missing" in message and "parts" in message and int(values["count.future.parts"]) > 0
        harness.parts_ahead_ns = 0
        assert harness.wait_chunks(1, 10.0)
    finally:
        out = stop_node(proc)
    assert "Traceback" not in out, out


def test_openpi_backend_nan_drop_and_server_loss(tmp_path, harness):
    make_checkpoint(tmp_path, "amr")
    local = make_policy("torch", tmp_path)
    handler = policy_handler(local)
    mode = {"nan": False}

    def serve(request):
        reply = handler(request)
        if mode["nan"]:
            reply["actions"][2, 0] = np.nan
        return reply

    server = PolicyServer(serve).start()
    port = server.port
    harness.feed = {"odom", "obstacles"}
    proc = start_node(f"checkpoint:={tmp_path}", "backend:=openpi", f"server_uri:=ws://127.0.0.1:{port}",
                      "server_timeout_s:=0.5", "reconnect_backoff_initial_s:=0.1", "reconnect_backoff_max_s:=0.5",
                      "request_threshold_s:=0.5", "diagnostics_period_s:=0.2", "instruction:=go to station 2")
    try:
        assert harness.wait_chunks(2, 30.0), stop_node(proc)
        msg = harness.chunks[-1][1]
        assert list(msg.action_names) == ["linear_x", "angular_z"] and msg.model_id.endswith(":openpi")
        # NaN in the model output: every chunk dropped and counted.
        mode["nan"] = True
        time.sleep(0.5)
        assert harness.quiet_for(1.5)
        _, _, values = harness.last_diag(predicate=lambda d: int(d[2].get("count.drop.non_finite_output", 0)) > 0)
        assert int(values["count.drop.non_finite_output"]) > 0
        mode["nan"] = False
        assert harness.wait_chunks(1, 5.0)
        # Server gone: nothing new is published, the status says so; it comes back: chunks resume.
        server.stop()
        time.sleep(0.5)
        assert harness.quiet_for(1.5)
        level, message, values = harness.last_diag(predicate=lambda d: d[0] == 2)
        assert level == 2 and "backend unavailable" in message and int(values["count.drop.backend_unavailable"]) >= 1
        server = PolicyServer(serve, port=port).start()
        assert harness.wait_chunks(2, 10.0)
    finally:
        out = stop_node(proc)
        server.stop()
    assert "Traceback" not in out, out


def test_malformed_checkpoint_fails_at_startup_naming_the_field(tmp_path):
    make_checkpoint(tmp_path, "arm")
    config = (tmp_path / "config.json").read_text().replace('"chunk_length": 20', '"chunk_length": -3')
    (tmp_path / "config.json").write_text(config)
    proc = start_node(f"checkpoint:={tmp_path}")
    try:
        proc.wait(30)
    finally:
        out = stop_node(proc)
    assert proc.returncode != 0 and "chunk_length" in out, out
    proc = start_node(f"checkpoint:={tmp_path.parent}", "embodiment:=arm")
    try:
        proc.wait(30)
    finally:
        out = stop_node(proc)
    assert proc.returncode != 0 and "config.json: not found" in out, out


@pytest.mark.parametrize("robot", ["arm", "amr", "vehicle"])
def test_shipped_parameter_files_load(tmp_path, robot):
    make_checkpoint(tmp_path, robot)
    args = [sys.executable, "-m", "physical_ai_nodes.policy_inference", "--ros-args", "--params-file",
            str(ROOT / "config" / f"{robot}.yaml"), "-p", f"checkpoint:={tmp_path}"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        end = time.monotonic() + 30.0
        while time.monotonic() < end:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if f"(torch, {robot}," in line:
                time.sleep(1.0)  # let it reach spin(): SIGINT while the executor is being built is run_node's race
                break
    finally:
        out = "".join(lines) + stop_node(proc)
    assert f"(torch, {robot}," in out and "Traceback" not in out, out


def test_world_model_check_publishes_predictions(harness):
    """The shipped AMR policy with its learned world model: every chunk comes with a prediction over K candidates."""
    predictions: list[WorldModelPrediction] = []
    harness.node.create_subscription(WorldModelPrediction, "/policy/world_model", predictions.append, STATE_QOS)
    harness.feed = {"odom", "obstacles"}
    proc = start_node(f"checkpoint:={ROOT / 'models' / 'amr_nav'}", "embodiment:=amr", "world_model:=learned",
                      "world_model_candidates:=6", "instruction:=drive to the drop-off station")
    try:
        assert harness.wait_chunks(3, 30.0), stop_node(proc)
        end = time.monotonic() + 5.0
        while time.monotonic() < end and not predictions:
            time.sleep(0.05)
        assert predictions, stop_node(proc)
        for pred in predictions:
            assert pred.model == "learned"
            assert len(pred.scores) == len(pred.collision_probability) == len(pred.progress) == 6
            assert -1 <= pred.chosen_index < 6
            assert all(0.0 <= p <= 1.0 for p in pred.collision_probability)
            assert 0.0 <= pred.predicted_risk <= 1.0
    finally:
        log = stop_node(proc)
    assert "Traceback" not in log


def test_physics_world_model_refused_for_a_vehicle_policy(tmp_path):
    # the physics world model knows the AMR scene and the arm cell (issue 18); a vehicle policy must be refused
    make_checkpoint(tmp_path, "vehicle")
    proc = start_node(f"checkpoint:={tmp_path}", "embodiment:=vehicle", "world_model:=physics")
    try:
        proc.wait(30)
    finally:
        log = stop_node(proc)
    assert proc.returncode != 0
    assert "world_model" in log and "the AMR scene and the arm cell are modelled" in log

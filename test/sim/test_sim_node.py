"""The simulator node over real DDS: each robot is driven through its driver command interface from another
process and the privileged ground truth must react; bad commands are rejected, counted and do not move it."""

from __future__ import annotations

import contextlib
import itertools
import math
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rclpy
from ackermann_msgs.msg import AckermannDriveStamped
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from physical_ai_stack.msg import SimGroundTruth, TactileState
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState, LaserScan, PointCloud2
from std_msgs.msg import Float64MultiArray, Int64
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from physical_ai.convert import image_to_numpy, ns_to_stamp, pointcloud2_to_numpy, stamp_to_ns
from physical_ai.sim import lane
from physical_ai.sim.experts import VehicleLaneExpert

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(150)


@contextlib.contextmanager
def sim_process(scenario: str, *params: str) -> Iterator[subprocess.Popen]:
    """Run the simulator node with the robot's config; SIGINT (then kill) on exit; log shown on failure."""
    log = tempfile.NamedTemporaryFile("w+", prefix=f"mujoco_sim_{scenario}_", suffix=".log")
    args = [sys.executable, "-m", "physical_ai_nodes.mujoco_sim", "--ros-args", "-r", "__node:=mujoco_sim",
            "--params-file", str(ROOT / "config" / f"{scenario}.yaml"), "-p", "use_sim_time:=true"]
    for p in params:
        args += ["-p", p]
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        yield proc
    except BaseException:
        log.seek(0)
        print(log.read()[-4000:])
        raise
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


class Probe:
    """A test-side node keeping the latest message of each simulator output."""

    def __init__(self) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("sim_probe", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.latest: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self.diag: dict[str, str] = {}

    def watch(self, msg_type: type, topic: str) -> None:
        def store(msg: Any) -> None:
            self.latest[topic] = msg
            self.counts[topic] = self.counts.get(topic, 0) + 1
        self.node.create_subscription(msg_type, topic, store, qos_profile_sensor_data)

    def watch_diagnostics(self) -> None:
        def on_diag(msg: DiagnosticArray) -> None:
            for status in msg.status:
                if "mujoco_sim" in status.name:
                    self.diag = {kv.key: kv.value for kv in status.values}
        self.node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)

    def spin_until(self, condition: Callable[[], bool], timeout_s: float, tick: Callable[[], None] | None = None,
                   tick_period_s: float = 0.05) -> bool:
        deadline = time.monotonic() + timeout_s
        next_tick = 0.0
        while time.monotonic() < deadline:
            if condition():
                return True
            if tick is not None and time.monotonic() >= next_tick:
                tick()
                next_tick = time.monotonic() + tick_period_s
            self.executor.spin_once(timeout_sec=0.01)
        return condition()

    def sim_ns(self) -> int:
        return stamp_to_ns(self.latest["/clock"].clock)

    def rejected(self, topic: str, reason: str) -> int:
        """Commands on `topic` refused for `reason` by the sim; a non-finite number ("nan") may instead be dropped by
        the input validation every node runs first (issue 22), counted as `invalid:/<topic>:nonfinite`."""
        count = int(self.diag.get(f"count.rejected.{topic}.{reason}", "0"))
        if reason == "nan":
            count += int(self.diag.get(f"count.invalid:/{topic}:nonfinite", "0"))
        return count

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture
def probe() -> Iterator[Probe]:
    p = Probe()
    try:
        yield p
    finally:
        p.close()


def _ground_truth_pose(gt: SimGroundTruth, body: str) -> tuple[np.ndarray, float]:
    pose = gt.body_poses[list(gt.body_names).index(body)]
    q = pose.orientation
    yaw = math.atan2(2 * (q.w * q.z + q.x * q.y), 1 - 2 * (q.y * q.y + q.z * q.z))
    return np.array([pose.position.x, pose.position.y, pose.position.z]), yaw


# ============================================================================================================ arm
ARM_TARGET = [0.3, 0.35, -0.2, 1.6, 0.1, 1.2, 0.4]


def _trajectory(names: list[str], positions: list[float], t_s: float, stamp_ns: int = 0) -> JointTrajectory:
    msg = JointTrajectory(joint_names=names)
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.points = [JointTrajectoryPoint(positions=positions,
                                       time_from_start=Duration(sec=int(t_s), nanosec=int(t_s % 1 * 1e9)))]
    return msg


def test_arm_reaches_trajectory_goal_and_rejects_bad_commands(probe):
    for t, topic in ((JointState, "/joint_states"), (SimGroundTruth, "/sim/ground_truth"), (Clock, "/clock"),
                     (Image, "/camera/color/image_raw"), (Image, "/camera/depth/image_raw"),
                     (CameraInfo, "/camera/depth/camera_info"), (TactileState, "/tactile/state")):
        probe.watch(t, topic)
    probe.watch_diagnostics()
    node = probe.node
    traj_pub = node.create_publisher(JointTrajectory, "/arm_controller/joint_trajectory", 1)
    stream_pub = node.create_publisher(Float64MultiArray, "/arm_controller/commands", 1)
    grip_pub = node.create_publisher(Float64MultiArray, "/gripper_controller/commands", 1)
    names = [f"joint{i}" for i in range(1, 8)]
    with sim_process("arm", "seed:=3"):
        assert probe.spin_until(lambda: len(probe.latest) == 7 and traj_pub.get_subscription_count() > 0, 60.0)
        # the driver topics look like a real camera + arm
        rgb = image_to_numpy(probe.latest["/camera/color/image_raw"])
        depth = probe.latest["/camera/depth/image_raw"]
        assert rgb.shape == (480, 640, 3) and depth.encoding == "32FC1"
        assert depth.header.frame_id == probe.latest["/camera/depth/camera_info"].header.frame_id
        assert 0.3 < np.nanmedian(image_to_numpy(depth)) < 1.5  # table ~0.95 m below the camera
        pads = probe.latest["/tactile/state"].pads
        assert [p.name for p in pads] == ["pad_left", "pad_right"] and len(pads[0].pressure) == 12
        start, _ = _ground_truth_pose(probe.latest["/sim/ground_truth"], "gripper_base")

        traj_pub.publish(_trajectory(names, ARM_TARGET, 2.0))

        def reached() -> bool:
            js = probe.latest["/joint_states"]
            return np.abs(np.array(js.position[:7]) - ARM_TARGET).max() < 0.03
        assert probe.spin_until(reached, 30.0), probe.latest["/joint_states"].position
        moved, _ = _ground_truth_pose(probe.latest["/sim/ground_truth"], "gripper_base")
        assert np.linalg.norm(moved - start) > 0.05

        grip_pub.publish(Float64MultiArray(data=[0.01]))
        assert probe.spin_until(lambda: abs(probe.latest["/joint_states"].position[7] - 0.01) < 0.003, 20.0)

        # bad commands: each rejected with its reason, the arm holds its position
        now = probe.sim_ns()
        assert now > 1_500_000_000  # the 2 s trajectory ran, so a 1.5 s old stamp is a valid (non-negative) time
        bad = [
            ("arm_controller/joint_trajectory", "nan", lambda: traj_pub.publish(
                _trajectory(names, [float("nan")] * 7, 2.0))),
            ("arm_controller/joint_trajectory", "unknown_joint", lambda: traj_pub.publish(
                _trajectory(["joint1", "elbow"], [0.0, 0.0], 2.0))),
            ("arm_controller/joint_trajectory", "out_of_range", lambda: traj_pub.publish(
                _trajectory(names, [0.0, 3.0, 0.0, 1.0, 0.0, 1.0, 0.0], 5.0))),
            ("arm_controller/joint_trajectory", "wrong_length", lambda: traj_pub.publish(
                _trajectory(names, [0.0] * 6, 2.0))),
            ("arm_controller/joint_trajectory", "stale_stamp", lambda: traj_pub.publish(
                _trajectory(names, [0.0] * 7, 2.0, stamp_ns=now - 1_500_000_000))),
            ("arm_controller/joint_trajectory", "future_stamp", lambda: traj_pub.publish(
                _trajectory(names, [0.0] * 7, 2.0, stamp_ns=now + 60_000_000_000))),
            ("arm_controller/commands", "wrong_length", lambda: stream_pub.publish(Float64MultiArray(data=[0.1]))),
            ("arm_controller/commands", "nan", lambda: stream_pub.publish(
                Float64MultiArray(data=[float("inf")] * 7))),
            ("gripper_controller/commands", "out_of_range", lambda: grip_pub.publish(
                Float64MultiArray(data=[0.5]))),
        ]
        for topic, reason, send in bad:
            before = probe.rejected(topic, reason)
            assert probe.spin_until(lambda t=topic, r=reason, b=before: probe.rejected(t, r) > b, 10.0,
                                    tick=send, tick_period_s=0.5), (topic, reason, probe.diag)
        probe.spin_until(lambda: False, 0.5)
        js = probe.latest["/joint_states"]
        assert np.abs(np.array(js.position[:7]) - ARM_TARGET).max() < 0.03
        assert abs(js.position[7] - 0.01) < 0.003


# ============================================================================================================ amr
def test_amr_drives_a_square_on_cmd_vel(probe):
    for t, topic in ((Odometry, "/odom"), (SimGroundTruth, "/sim/ground_truth"), (Clock, "/clock"),
                     (LaserScan, "/scan"), (PointCloud2, "/lidar/points")):
        probe.watch(t, topic)
    probe.watch_diagnostics()
    pub = probe.node.create_publisher(Twist, "/cmd_vel", 1)
    with sim_process("amr", "seed:=5"):
        assert probe.spin_until(lambda: len(probe.latest) == 5 and pub.get_subscription_count() > 0, 60.0)
        cloud = pointcloud2_to_numpy(probe.latest["/lidar/points"])
        assert {"x", "y", "z", "intensity", "ring"} <= set(cloud.dtype.names)
        assert probe.latest["/lidar/points"].header.frame_id == "lidar_link"
        start, yaw0 = _ground_truth_pose(probe.latest["/sim/ground_truth"], "base_link")

        # bad twists are rejected and counted; the base stays put
        nan = Twist()
        nan.linear.x = float("nan")
        fast = Twist()
        fast.linear.x = 3.0
        sideways = Twist()
        sideways.linear.y = 0.2
        for msg, reason in ((nan, "nan"), (fast, "out_of_range"), (sideways, "unsupported_axis")):
            assert probe.spin_until(lambda r=reason: probe.rejected("cmd_vel", r) > 0, 10.0,
                                    tick=lambda m=msg: pub.publish(m), tick_period_s=0.5), (reason, probe.diag)
        here, _ = _ground_truth_pose(probe.latest["/sim/ground_truth"], "base_link")
        assert np.linalg.norm(here - start) < 0.01

        # a 1 m square, closed loop on /odom like a simple planner would
        def odom_xy_yaw() -> tuple[np.ndarray, float]:
            p = probe.latest["/odom"].pose.pose
            q = p.orientation
            return (np.array([p.position.x, p.position.y]),
                    math.atan2(2 * (q.w * q.z + q.x * q.y), 1 - 2 * (q.y * q.y + q.z * q.z)))

        corners = []
        for _ in range(4):
            p0, _ = odom_xy_yaw()

            def forward(p0=p0) -> None:
                left = 1.0 - np.linalg.norm(odom_xy_yaw()[0] - p0)
                msg = Twist()
                msg.linear.x = float(np.clip(1.2 * left, 0.08, 0.6))
                pub.publish(msg)
            assert probe.spin_until(lambda p0=p0: np.linalg.norm(odom_xy_yaw()[0] - p0) >= 0.98, 20.0, tick=forward)
            pub.publish(Twist())
            probe.spin_until(lambda: abs(probe.latest["/odom"].twist.twist.linear.x) < 0.01, 5.0,
                             tick=lambda: pub.publish(Twist()))
            corners.append(_ground_truth_pose(probe.latest["/sim/ground_truth"], "base_link")[0])
            _, y0 = odom_xy_yaw()

            def turn(y0=y0) -> None:
                left = math.pi / 2 - abs(math.remainder(odom_xy_yaw()[1] - y0, 2 * math.pi))
                msg = Twist()
                msg.angular.z = float(np.clip(1.5 * left, 0.1, 1.0))
                pub.publish(msg)
            assert probe.spin_until(
                lambda y0=y0: abs(math.remainder(odom_xy_yaw()[1] - y0, 2 * math.pi)) >= math.pi / 2 - 0.02,
                20.0, tick=turn)
            pub.publish(Twist())
            probe.spin_until(lambda: abs(probe.latest["/odom"].twist.twist.angular.z) < 0.02, 5.0,
                             tick=lambda: pub.publish(Twist()))
        end, yaw1 = _ground_truth_pose(probe.latest["/sim/ground_truth"], "base_link")
        corners = np.array(corners)
        sides = np.linalg.norm(np.diff(np.vstack([start, corners]), axis=0), axis=1)
        assert np.all(np.abs(sides - 1.0) < 0.08), sides
        assert np.linalg.norm(corners[1] - start) > 1.3  # the far corner: a square, not a line
        assert np.linalg.norm(end - start) < 0.25
        assert abs(math.remainder(yaw1 - yaw0, 2 * math.pi)) < 0.15
        assert probe.latest["/sim/ground_truth"].collisions == 0


def test_amr_lookahead_releases_each_frame_when_due_and_drops_what_a_reset_overtook(probe):
    """`lookahead_s`: steps and measurements are computed ahead and held; none may go out before its time.

    The released /clock keeps real time (computed ahead, yet never faster), each LiDAR frame (stamp + its modelled
    10 ms latency) is written no earlier than the /clock of the step it is due at, and after /sim/reset no frame
    computed ahead for the old episode arrives.
    """
    clocks: list[tuple[int, int]] = []  # (sim ns, DDS write ns)
    frames: list[tuple[int, int]] = []
    probe.node.create_subscription(Clock, "/clock", lambda m, i: clocks.append(
        (stamp_to_ns(m.clock), i["source_timestamp"])),
        QoSProfile(depth=1000, reliability=ReliabilityPolicy.BEST_EFFORT))  # as the simulator offers it
    probe.node.create_subscription(PointCloud2, "/lidar/points", lambda m, i: frames.append(
        (stamp_to_ns(m.header.stamp), i["source_timestamp"])), qos_profile_sensor_data)
    reset = probe.node.create_publisher(Int64, "/sim/reset", 1)
    # a /clock every step, so that each frame's due time has its own
    with sim_process("amr", "seed:=5", "lookahead_s:=0.05", "lidar.latency_s:=0.01", "clock_rate_hz:=200.0"):
        assert probe.spin_until(lambda: len(frames) >= 20, 60.0)
        sim = np.array([c[0] for c in clocks])
        for stamp, written in frames[2:]:
            k = int(np.searchsorted(sim, stamp + 10_000_000))
            assert k < len(clocks), "a frame arrived before the /clock of its due time"
            assert written >= clocks[k][1], f"frame {stamp} written {(clocks[k][1] - written) * 1e-6:.1f} ms early"
        wall = np.array([c[1] for c in clocks])
        half = len(clocks) // 2  # after the start-up (a late start is caught up at up to full speed)
        assert (sim[-1] - sim[half]) / (wall[-1] - wall[half]) < 1.1, "released faster than real time"
        before = sim[-1]
        assert probe.spin_until(lambda: reset.get_subscription_count() > 0, 10.0)
        reset.publish(Int64(data=6))
        assert probe.spin_until(lambda: clocks[-1][0] < before - 1_000_000_000, 20.0), "the clock never went back"
        restart = len(frames)
        assert probe.spin_until(lambda: len(frames) >= restart + 10, 20.0)
        after = [stamp for stamp, _ in frames[restart:]]
        assert min(after[1:]) < before - 1_000_000_000, "frames from before the reset kept coming"
        assert all(b > a for a, b in itertools.pairwise(after[1:])), "frames out of order after the reset"


def test_clock_rate_hz_spaces_the_clock_and_the_simulator_does_not_follow_its_own(probe):
    """`clock_rate_hz` (config/amr.yaml: 100 Hz over 5 ms steps): one /clock per period, each a period apart.

    Every node on sim time wakes for each /clock message; the simulator, the clock's source, subscribes to none
    although the bring-up gives it use_sim_time like every node.
    """
    clocks: list[int] = []
    probe.node.create_subscription(Clock, "/clock", lambda m: clocks.append(stamp_to_ns(m.clock)),
                                   QoSProfile(depth=1000, reliability=ReliabilityPolicy.BEST_EFFORT))
    with sim_process("amr", "seed:=5"):
        assert probe.spin_until(lambda: len(clocks) >= 60, 60.0)
        steps = np.diff(clocks[5:])
        assert np.all(steps == 10_000_000), f"/clock steps {sorted(set(steps.tolist()))} ns, expected 10 ms only"
        assert probe.node.count_subscribers("/clock") == 1, "someone besides this probe follows /clock"


# ======================================================================================================= vehicle
def test_vehicle_follows_the_lane_and_stops_behind_the_obstacle(probe):
    for t, topic in ((SimGroundTruth, "/sim/ground_truth"), (Clock, "/clock"), (Odometry, "/odom"),
                     (Image, "/camera/color/image_raw")):
        probe.watch(t, topic)
    probe.watch_diagnostics()
    pub = probe.node.create_publisher(AckermannDriveStamped, "/ackermann_cmd", 1)
    driver = VehicleLaneExpert()
    max_lateral = [0.0]

    def drive() -> None:
        gt = probe.latest["/sim/ground_truth"]
        pos, yaw = _ground_truth_pose(gt, "base_link")
        obs_pos, _ = _ground_truth_pose(gt, "obstacle_car")
        s_obs, _ = lane.project(obs_pos[0], obs_pos[1])
        obs_twist = gt.body_twists[list(gt.body_names).index("obstacle_car")].linear
        _, lateral = lane.project(pos[0], pos[1])
        max_lateral[0] = max(max_lateral[0], abs(lateral))
        cmd = driver.act({"pose": np.array([pos[0], pos[1], yaw]),
                          "speed": probe.latest["/odom"].twist.twist.linear.x,
                          "obstacle_s": s_obs, "obstacle_speed": float(np.hypot(obs_twist.x, obs_twist.y))})
        msg = AckermannDriveStamped()
        msg.header.stamp = probe.latest["/clock"].clock
        msg.drive.steering_angle = float(cmd["steering_angle"])
        msg.drive.speed = float(cmd["speed"])
        pub.publish(msg)

    with sim_process("vehicle", "seed:=0"):
        assert probe.spin_until(lambda: len(probe.latest) == 4 and pub.get_subscription_count() > 0, 60.0)
        # a command stamped 5 s in the past is refused (wait until the sim clock is past 5 s, so the stamp really
        # is 5 s old and not clipped to the episode start, which a loaded machine can make look recent)
        assert probe.spin_until(lambda: probe.sim_ns() > 5_500_000_000, 60.0)
        stale = AckermannDriveStamped()
        stale.drive.speed = 5.0

        def publish_stale() -> None:
            stale.header.stamp = ns_to_stamp(probe.sim_ns() - 5_000_000_000)
            pub.publish(stale)

        assert probe.spin_until(lambda: probe.rejected("ackermann_cmd", "stale_stamp") > 0, 10.0,
                                tick=publish_stale, tick_period_s=0.5)
        # the stale command did not move it: ground truth (odometry carries 0.01 m/s of noise, config/vehicle.yaml)
        gt = probe.latest["/sim/ground_truth"]
        assert abs(gt.body_twists[list(gt.body_names).index("base_link")].linear.x) < 0.01
        assert probe.spin_until(lambda: probe.latest["/sim/ground_truth"].task_success, 90.0, tick=drive)
        gt = probe.latest["/sim/ground_truth"]
        pos, _ = _ground_truth_pose(gt, "base_link")
        assert lane.project(pos[0], pos[1])[0] > 35.0  # it really drove along the lane
        assert max_lateral[0] < 0.6 and gt.collisions == 0


def test_arm_grasp_over_dds_shows_on_the_tactile_pads(probe):
    """Stream the scripted pick over arm_controller/commands + gripper_controller/commands; the pads must report
    the grasp (contact, force, pressure patch) and the ground truth the lifted part."""
    from physical_ai.sim.experts import ArmPickPlaceExpert, observe
    from physical_ai.sim.scenarios import make_scenario

    for t, topic in ((TactileState, "/tactile/state"), (SimGroundTruth, "/sim/ground_truth"), (Clock, "/clock"),
                     (JointState, "/joint_states")):
        probe.watch(t, topic)
    stream_pub = probe.node.create_publisher(Float64MultiArray, "/arm_controller/commands", 1)
    grip_pub = probe.node.create_publisher(Float64MultiArray, "/gripper_controller/commands", 1)
    local = make_scenario("arm", 6)  # same seed as the node: same part poses (plan only, never stepped)
    expert = ArmPickPlaceExpert(local)
    with sim_process("arm", "seed:=6", "tactile.noise_sigma:=0.0"):
        assert probe.spin_until(lambda: len(probe.latest) == 4 and stream_pub.get_subscription_count() > 0, 60.0)
        pads = probe.latest["/tactile/state"].pads
        assert not any(p.in_contact for p in pads) and not any(any(p.pressure) for p in pads)
        expert.plan({**observe(local), "time": probe.sim_ns() / 1e9})
        lift_end = expert.t0 + sum(seg.duration for seg in expert.segments[:4])

        def send() -> None:
            cmd = expert.act({"time": probe.sim_ns() / 1e9})
            stream_pub.publish(Float64MultiArray(data=[float(v) for v in cmd["joint_positions"]]))
            grip_pub.publish(Float64MultiArray(data=[cmd["gripper"]]))
        assert probe.spin_until(lambda: probe.sim_ns() / 1e9 > lift_end, 60.0, tick=send, tick_period_s=0.02)
        pads = probe.latest["/tactile/state"].pads
        assert all(p.in_contact and p.normal_force > 1.0 for p in pads), [(p.in_contact, p.normal_force)
                                                                          for p in pads]
        assert all(sum(1 for v in p.pressure if v > 100.0) >= 2 for p in pads)  # a patch, not one taxel
        gt = probe.latest["/sim/ground_truth"]
        assert gt.progress >= 0.5  # the target part is lifted
        assert abs(probe.latest["/joint_states"].position[7] - 0.0) > 0.015  # fingers stopped by the part

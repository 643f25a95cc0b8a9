"""mujoco_sim: a MuJoCo scenario that plays the robot's drivers over ROS 2.

Publishes what real drivers (or Gazebo's ros_gz_bridge) publish: joint_states, odom, tf, tf_static, camera
colour + depth + camera_info, lidar/points, scan, tactile/state, plus /clock (sim time) and the privileged
sim/ground_truth. Accepts the drivers' commands: arm_controller/joint_trajectory, arm_controller/commands,
gripper_controller/commands, cmd_vel (Twist or TwistStamped), ackermann_cmd. Bad commands are rejected with a
logged reason and counted (`rejected.<topic>.<reason>` in /diagnostics); the robot holds its last safe target.
All names are relative (the node's namespace) except /clock. The fleet scenario (`scenario: fleet`) plays several
robots in one world: each robot's topics and tf tree are under `<robot>/` (robot1/odom, robot1/tf, robot1/cmd_vel,
...), the fleet's own ground truth on sim/ground_truth, and each robot's contacts by kind and clearances are values
of this node's /diagnostics status (`robot1.contacts.person`, `robot1.min_robot_clearance_m`, ...).

Physics runs in its own thread, paced at `real_time_factor` (0 = as fast as possible); ROS callbacks only
validate and hand over commands under a lock. Stamps are simulation time (run the stack with use_sim_time).
Each step is computed ahead, then released when its time comes on the wall clock: /clock first, then what is due
then (e.g. a LiDAR frame measured its latency earlier), and only after those the measurements taken at that time
(raycasts, renders), so that a sensor's delivery does not wait for another sensor's computation. With
`lookahead_s` the measurements too are taken up to that far ahead and each step waits, computed, until it is due:
a LiDAR frame whose raycast takes longer than its modelled latency still goes out on time. The camera renders on a
thread of its own, below the stepping thread's priority; a frame not rendered by its due time goes out once it is
(counted, `camera_frames_late`) rather than holding up the LiDAR behind it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
from ackermann_msgs.msg import AckermannDriveStamped
from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import Point, Pose, PoseStamped, Quaternion, Twist, TwistStamped, Vector3
from nav_msgs.msg import Odometry
from physical_ai_stack.msg import SimGroundTruth, TactilePad, TactileState
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState, LaserScan, PointCloud2
from std_msgs.msg import Float64MultiArray, Int64
from trajectory_msgs.msg import JointTrajectory

from physical_ai.convert import (
    make_camera_info,
    make_header,
    make_joint_state,
    make_odometry,
    matrix_to_pose,
    ns_to_stamp,
    numpy_to_image,
    numpy_to_laserscan,
    numpy_to_pointcloud2,
    stamp_to_ns,
)
from physical_ai.sim.commands import CommandRejected, check_stamp
from physical_ai.sim.fleet import FleetRobot
from physical_ai.sim.runner import STREAMS, SensorGeometry, SimRunner, StreamConfig, default_streams
from physical_ai.sim.scenarios import (
    ArmCell,
    FactoryFloor,
    GroundTruth,
    VehicleLane,
    canonical_name,
    make_scenario,
    planar_pose,
)
from physical_ai.sim.sensors import PadReading, SensorNoise
from physical_ai_nodes._base import COMMAND_QOS, SENSOR_QOS, STATE_QOS, PhysaiNode, run_node
from physical_ai_nodes._tf import TfPublisher

CLOCK_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)


def _duration_s(d: Any) -> float:
    return d.sec + d.nanosec * 1e-9


class MujocoSim(PhysaiNode):
    """See module docstring."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("mujoco_sim", **kwargs)
        p = self.param
        name = p("scenario", "amr", "Scenario: arm | amr | vehicle")
        self.seed = p("seed", 0, "Randomisation seed of the first episode", (0, 2**31 - 1))
        self.rtf = p("real_time_factor", 1.0, "Pacing: sim seconds per wall second; 0 = as fast as possible",
                     (0.0, 100.0))
        self.chunk_s = p("step_chunk_s", 0.005, "Physics advanced per loop iteration [s]", (0.001, 0.1))
        self.lookahead_s = p("lookahead_s", 0.0, "Physics and measurements run up to this far ahead of their "
                             "release on the wall clock, so a raycast or render is done before its frame is due; "
                             "commands then act up to this much later, as through a drive's latency; 0 = one "
                             "step ahead, measured when due [s]", (0.0, 0.2))
        self.publish_clock = p("publish_clock", True, "Publish /clock with simulation time")
        # Every node on sim time wakes for each /clock message (~0.2 ms of CPU on this 2-core VM): at 200 Hz that
        # was ~4 % of a core per node. The clock's step is the resolution of every node's clock.
        clock_hz = p("clock_rate_hz", 200.0, "/clock rate [Hz]: at most one per physics step (step_chunk_s); a "
                     "lower rate costs every node on sim time less CPU, and their clocks step in its period",
                     (1.0, 1000.0))
        self._clock_gap_ns = int(1e9 / clock_hz - self.chunk_s * 5e8)  # a period, less half a step of rounding
        self._clock_ns = -1  # sim time of the last /clock published [ns]
        if self.publish_clock and self.get_parameter("use_sim_time").value:
            # It is the clock: following its own /clock woke this process for every message it sent (~4 % of a
            # core at 200 Hz). Its stamps are sim time regardless; only its timers and diagnostics run on wall time.
            self.set_parameters([Parameter("use_sim_time", Parameter.Type.BOOL, False)])
        self.max_age_s = p("command_max_age_s", 0.5, "Stamped commands older than this are rejected [s]",
                           (0.001, 60.0))
        self.max_future_s = p("command_max_future_s", 0.5,
                              "Stamped commands further in the future are rejected [s]", (0.0, 60.0))
        self.cmd_vel_stamped = p("cmd_vel_stamped", False, "cmd_vel is TwistStamped (else Twist), as in Nav2")
        options: dict[str, Any] = {
            "stream_mode": p("arm_stream_mode", "position", "arm_controller/commands: position | velocity"),
            "stream_timeout_s": p("cmd_timeout_s", 0.5, "Velocity/twist/drive commands time out to zero [s]",
                                  (0.01, 10.0)),
            "cmd_timeout_s": p("base_cmd_timeout_s", 0.5, "Base (cmd_vel / ackermann) command timeout [s]",
                               (0.01, 10.0)),
            "hand_time_s": p("hand_time_s", -1.0, "Arm cell: hand obstacle enters at this sim time; <0 never [s]",
                             (-1.0, 1e6)),
            "variant": p("arm_variant", "normal", "Arm cell: normal | hard (heavy, slippery parts drawn per seed; "
                         "grasp outcome depends on the grasp, see physical_ai.sim.scenarios.ArmCell)"),
            "time_limit_s": p("time_limit_s", 0.0, "Episode length (ground truth says done after it); 0 = the "
                              "scenario's own (arm 30 s, AMR 60 s, vehicle 45 s, fleet 90 s) [s]", (0.0, 3600.0)),
            "worker_trigger_m": p("worker_trigger_m", 0.0, "AMR: a worker starts walking when the AMR comes this "
                                  "close before its aisle (a triggered target); 0 = seeded start times [m]",
                                  (0.0, 20.0)),
            "command_noise": p("command_noise", 0.0, "AMR: on half the episodes the executed base command is the "
                               "received one plus correlated noise of this many times 0.1 m/s and 0.2 rad/s (DART "
                               "perturbation for recording training data); 0 = off", (0.0, 10.0)),
            "max_linear": p("max_linear", 1.0, "AMR max |linear.x| [m/s]", (0.01, 5.0)),
            "max_angular": p("max_angular", 1.5, "AMR max |angular.z| [rad/s]", (0.01, 10.0)),
            "max_accel": p("max_accel", 1.0, "AMR linear acceleration limit [m/s^2]", (0.01, 10.0)),
            "max_alpha": p("max_alpha", 2.0, "AMR angular acceleration limit [rad/s^2]", (0.01, 20.0)),
            "max_steer": p("max_steer", 0.5, "Vehicle max steering angle [rad]", (0.01, 1.0)),
            "max_steer_rate": p("max_steer_rate", 0.6, "Vehicle steering rate limit [rad/s]", (0.01, 5.0)),
            "max_speed": p("max_speed", 15.0, "Vehicle max speed [m/s]", (0.1, 50.0)),
            "max_decel": p("max_decel", 6.0, "Vehicle braking limit [m/s^2]", (0.1, 15.0)),
        }
        vmax = p("arm_max_velocity", [2.0, 2.0, 2.0, 2.0, 2.5, 2.5, 2.5], "Arm joint velocity limits [rad/s]")
        options["max_velocity"] = list(vmax)
        g = SensorGeometry(
            width=p("camera_width", 640, "Image width [px]", (16, 4096)),
            height=p("camera_height", 480, "Image height [px]", (16, 4096)),
            max_depth=p("depth_max_m", 10.0, "Depth beyond this is invalid (NaN) [m]", (0.1, 500.0)),
            lidar_rings=p("lidar_rings", 16, "3D LiDAR rings", (1, 128)),
            lidar_horizontal=p("lidar_horizontal", 1800, "3D LiDAR beams per ring", (8, 7200)),
            lidar_min_elev_deg=p("lidar_min_elev_deg", -15.0, "Lowest ring elevation [deg]", (-90.0, 90.0)),
            lidar_max_elev_deg=p("lidar_max_elev_deg", 15.0, "Highest ring elevation [deg]", (-90.0, 90.0)),
            lidar_range_max=p("lidar_range_max_m", 30.0, "3D LiDAR max range [m]", (0.5, 300.0)),
            scan_beams=p("scan_beams", 720, "2D scan beams over 360 deg", (8, 7200)),
            scan_range_max=p("scan_range_max_m", 20.0, "2D scan max range [m]", (0.5, 300.0)),
        )
        streams = default_streams(canonical_name(name))
        for stream in STREAMS:
            base = streams.get(stream, StreamConfig(0.0))
            rate = p(f"{stream}.rate_hz", float(base.rate_hz), f"{stream} rate; 0 disables [Hz]", (0.0, 1000.0))
            noise = SensorNoise(
                sigma=p(f"{stream}.noise_sigma", 0.0, f"{stream} Gaussian noise (ranges/joints m or rad, depth "
                        "sigma*z^2, pressure Pa, colour x100 levels)", (0.0, 1e6)),
                dropout=p(f"{stream}.dropout", 0.0, f"{stream} probability a message is lost", (0.0, 1.0)),
                invalid_fraction=p(f"{stream}.invalid_fraction", 0.0,
                                   f"{stream} fraction of invalid returns/pixels", (0.0, 1.0)),
                latency_s=p(f"{stream}.latency_s", 0.0, f"{stream} delivery latency [s]", (0.0, 5.0)))
            streams[stream] = StreamConfig(rate, noise)
        self.scenario = make_scenario(name, self.seed, options)
        self.runner = SimRunner(self.scenario, streams, g, seed=self.seed, render_thread=True, late_frames=True)
        self.geometry = g
        self._lock = threading.Lock()
        self._episode = 0
        self._running = True
        self._make_publishers()
        self._make_subscriptions()
        self._publish_static()
        if self._goal_robots:
            self._publish_goals()
            self.create_timer(1.0, self._publish_goals)
        self.set_status(DiagnosticStatus.OK, "running", scenario=self.scenario.name, seed=self.seed)
        self.get_logger().info(f"scenario {self.scenario.name} seed {self.seed}, streams "
                               f"{ {k: v.rate_hz for k, v in self.runner.streams.items()} }, rtf {self.rtf}")
        self._thread = threading.Thread(target=self._loop, name="mujoco_sim", daemon=True)
        self._thread.start()

    # ---- endpoints -----------------------------------------------------------------------------------------
    def _make_publishers(self) -> None:
        self.clock_pub = self.create_publisher(Clock, "/clock", CLOCK_QOS) if self.publish_clock else None
        self.tf: dict[str, TfPublisher] = {}
        self.pubs: dict[tuple[str, str], Any] = {}
        self._goal_robots: list[tuple[str, FleetRobot]] = []  # robots whose goal this node sends (_publish_goals)
        for robot, view, streams in self.runner.robots():
            def pub(kind: type, topic: str, qos: QoSProfile, key: str, robot: str = robot) -> None:
                self.pubs[(robot, key)] = self.checked_publisher(kind, _in(robot, topic), qos)
            if "ground_truth" in streams:
                pub(SimGroundTruth, "sim/ground_truth", STATE_QOS, "ground_truth")
            if set(streams) - {"ground_truth"}:  # a robot (not the fleet's own score): its tf tree
                self.tf[robot] = TfPublisher(self, _in(robot, "tf"), _in(robot, "tf_static"))
            if isinstance(view, FleetRobot):  # its goal, as a fleet manager assigns it
                pub(PoseStamped, "goal_pose", COMMAND_QOS, "goal")
                self._goal_robots.append((robot, view))
            if "joint_states" in streams:
                pub(JointState, "joint_states", STATE_QOS, "joint_states")
            if "odom" in streams:
                pub(Odometry, "odom", STATE_QOS, "odom")
            if "rgbd" in streams:
                pub(Image, "camera/color/image_raw", SENSOR_QOS, "color")
                pub(CameraInfo, "camera/color/camera_info", SENSOR_QOS, "color_info")
                pub(Image, "camera/depth/image_raw", SENSOR_QOS, "depth")
                pub(CameraInfo, "camera/depth/camera_info", SENSOR_QOS, "depth_info")
            if "lidar" in streams:
                pub(PointCloud2, "lidar/points", SENSOR_QOS, "lidar")
            if "scan" in streams:
                pub(LaserScan, "scan", SENSOR_QOS, "scan")
            if "tactile" in streams:
                pub(TactileState, "tactile/state", SENSOR_QOS, "tactile")

    def _make_subscriptions(self) -> None:
        sub = self.create_subscription
        for robot, view, _streams in self.runner.robots():
            if isinstance(view, ArmCell):
                for topic, handler in (("arm_controller/joint_trajectory", self._on_trajectory),
                                       ("arm_controller/commands", lambda m, v=view: v.command_stream(list(m.data))),
                                       ("gripper_controller/commands",
                                        lambda m, v=view: v.command_gripper(list(m.data)))):
                    kind = JointTrajectory if topic.endswith("joint_trajectory") else Float64MultiArray
                    sub(kind, _in(robot, topic), self._guard(_in(robot, topic), handler), COMMAND_QOS)
            elif isinstance(view, (FactoryFloor, FleetRobot)):
                topic = _in(robot, "cmd_vel")
                if self.cmd_vel_stamped:
                    sub(TwistStamped, topic, self._guard(topic, lambda m, v=view: self._on_twist_stamped(v, m)),
                        COMMAND_QOS)
                else:
                    sub(Twist, topic, self._guard(topic, lambda m, v=view: self._twist(v, m)), COMMAND_QOS)
            elif isinstance(view, VehicleLane):
                sub(AckermannDriveStamped, _in(robot, "ackermann_cmd"),
                    self._guard(_in(robot, "ackermann_cmd"), self._on_ackermann), COMMAND_QOS)
        sub(Int64, "sim/reset", self._on_reset, COMMAND_QOS)

    def _guard(self, topic: str, handler: Callable[[Any], None]) -> Callable[[Any], None]:
        """Wrap a command handler: run it under the physics lock, count and log rejections."""
        def callback(msg: Any) -> None:
            try:
                with self._lock:
                    handler(msg)
                self.tick(f"cmd.{topic}")
            except CommandRejected as exc:
                self.count(f"rejected.{topic}.{exc.reason}")
                self.log_throttled(f"rejected.{topic}.{exc.reason}", f"{topic}: rejected ({exc})", 1.0)
        return callback

    # ---- command handlers (called under the lock) -----------------------------------------------------------
    def _check_stamp(self, stamp: Any) -> int:
        ns = stamp_to_ns(stamp)
        check_stamp(ns, self.scenario.time_ns, self.max_age_s, self.max_future_s)
        return ns

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        start = self._check_stamp(msg.header.stamp)
        pts = msg.points
        self.scenario.command_trajectory(
            list(msg.joint_names), [_duration_s(pt.time_from_start) for pt in pts],
            [list(pt.positions) for pt in pts],
            [list(pt.velocities) for pt in pts] if all(len(pt.velocities) for pt in pts) else None, start)

    def _twist(self, base: FactoryFloor | FleetRobot, t: Twist) -> None:
        others = np.array([t.linear.y, t.linear.z, t.angular.x, t.angular.y])
        if not np.all(np.isfinite(others)) or np.any(np.abs(others) > 1e-6):
            raise CommandRejected("unsupported_axis", "a differential drive takes only linear.x and angular.z")
        base.command_twist(t.linear.x, t.angular.z)

    def _on_twist_stamped(self, base: FactoryFloor | FleetRobot, msg: TwistStamped) -> None:
        self._check_stamp(msg.header.stamp)
        self._twist(base, msg.twist)

    def _on_ackermann(self, msg: AckermannDriveStamped) -> None:
        self._check_stamp(msg.header.stamp)
        self.scenario.command_ackermann(msg.drive.steering_angle, msg.drive.speed)

    def _on_reset(self, msg: Int64) -> None:
        with self._lock:
            self._episode += 1  # what was computed ahead for the old episode is never released
            self.scenario.reset(int(msg.data))
            self.runner.reset_schedule()
        self.set_status(DiagnosticStatus.OK, "running", seed=int(msg.data))
        self._publish_static()
        if self._goal_robots:
            self._publish_goals()
        self.get_logger().info(f"episode reset with seed {msg.data}")

    # ---- physics loop -----------------------------------------------------------------------------------------
    def _loop(self) -> None:
        try:
            self._run_physics()
        finally:
            self.runner.close()  # the GL context lives in this thread

    def _run_physics(self) -> None:
        self._pace_origin = (time.monotonic(), self.scenario.data.time)
        if self.lookahead_s > 0 and self.rtf > 0:
            self._run_ahead()
            return
        while self._running and self.context.ok():
            t0 = time.perf_counter()
            with self._lock:
                due = self.runner.advance(self.chunk_s, sample_end=False)
                now_ns = self.scenario.time_ns
            step_ms = (time.perf_counter() - t0) * 1e3
            self._pace(now_ns)
            if not self._publish(now_ns, due, clock=True):
                return
            t0 = time.perf_counter()
            with self._lock:
                measured = self.runner.sample_due()
            self.latency("step", step_ms + (time.perf_counter() - t0) * 1e3)
            if not self._publish(now_ns, measured, clock=False):
                return

    def _run_ahead(self) -> None:
        """Compute up to `lookahead_s` of sim time ahead (measurements included) and release each step when due.

        The computed steps wait in a queue with their outputs; a step is released (/clock, then its outputs) when
        its time comes on the wall clock. A reset drops what was computed for the old episode.
        """
        ahead: deque[tuple[int, int, list]] = deque()  # (episode, sim time ns, outputs), oldest first
        while self._running and self.context.ok():
            while ahead and (ahead[0][0] != self._episode or self._due_in(ahead[0][1]) <= 0.0):
                episode, now_ns, outputs = ahead.popleft()
                if episode == self._episode:
                    self._catch_up(now_ns)
                    if not self._publish(now_ns, outputs, clock=True):
                        return
            newest = ahead[-1][1] if ahead else None
            if newest is None or self._due_in(newest) < self.lookahead_s:
                t0 = time.perf_counter()
                with self._lock:
                    outputs = self.runner.advance(self.chunk_s)
                    ahead.append((self._episode, self.scenario.time_ns, outputs))
                self.latency("step", (time.perf_counter() - t0) * 1e3)
            else:
                time.sleep(max(self._due_in(ahead[0][1]), 0.0))

    def _due_in(self, now_ns: int) -> float:
        """Wall seconds until sim time `now_ns` is due (real_time_factor); negative when late."""
        wall0, sim0 = self._pace_origin
        return (now_ns * 1e-9 - sim0) / self.rtf - (time.monotonic() - wall0)

    def _catch_up(self, now_ns: int) -> None:
        """Too far behind (a slow machine, or a reset): count it and pace from `now_ns` on."""
        if self._due_in(now_ns) < -0.5:
            self.count("overrun")
            self._pace_origin = (time.monotonic(), now_ns * 1e-9)

    def _pace(self, now_ns: int) -> None:
        """Wait until sim time `now_ns` is due on the wall clock (real_time_factor)."""
        if self.rtf <= 0:
            return
        wall0, sim0 = self._pace_origin
        lag = (time.monotonic() - wall0) - (now_ns * 1e-9 - sim0) / self.rtf
        if lag < 0:
            time.sleep(-lag)
        elif lag > 0.5:  # too slow to keep up (or reset): count it and stop trying to catch up
            self.count("overrun")
            self._pace_origin = (time.monotonic(), now_ns * 1e-9)

    def _publish(self, now_ns: int, outputs: list, clock: bool) -> bool:
        """Publish /clock (optionally) and the outputs; False when shutting down."""
        try:
            if clock and self.clock_pub is not None and self._clock_due(now_ns):
                self.clock_pub.publish(Clock(clock=ns_to_stamp(now_ns)))
                self._clock_ns = now_ns
            for out in outputs:
                getattr(self, f"_publish_{out.stream}")(out.robot, out.stamp_ns, out.data)
                self.tick(_in(out.robot, out.stream))
            late = self.runner.late_frame_count - self.counter("camera_frames_late")
            if late:  # rendered after their due time: sent late rather than holding up the other sensors
                self.count("camera_frames_late", late)
        except Exception as exc:  # a publish failure must not stop the physics loop
            if not self.context.ok():
                return False  # shutting down
            self.count("publish_error")
            self.log_throttled("publish_error", f"publishing: {exc}", 1.0, level="error")
        return True

    def _clock_due(self, now_ns: int) -> bool:
        """Whether /clock is published for sim time `now_ns`: a period (less half a step) after the last, or a reset."""
        return now_ns < self._clock_ns or now_ns - self._clock_ns >= self._clock_gap_ns

    def on_shutdown(self) -> None:
        """Stop the physics thread and release the renderer (called by run_node)."""
        self._running = False
        self._thread.join(timeout=5.0)

    # ---- publishing ------------------------------------------------------------------------------------------
    def _publish_static(self) -> None:
        stamp = self.scenario.time_ns
        for robot, view, _streams in self.runner.robots():
            if robot in self.tf:
                static, _ = view.frames()
                self.tf[robot].publish_static([(f.parent, f.child, stamp, f.T) for f in static])

    def _publish_goals(self) -> None:
        """Each fleet robot's goal in its map frame (every second).

        goal_pose is volatile, as RViz's and Nav2's are: sent again, it reaches a node that started later, and a
        corrector whose map -> odom moved (a reset) places it anew.
        """
        header = make_header("map", self.scenario.time_ns)
        for robot, view in self._goal_robots:
            pose = matrix_to_pose(planar_pose(*view.goal_pose()))
            self.pubs[(robot, "goal")].publish(PoseStamped(header=header, pose=pose))

    def _publish_tf(self, robot: str, stamp: int, frames: list) -> None:
        self.tf[robot].publish([(f.parent, f.child, stamp, f.T) for f in frames])

    def _publish_joint_states(self, robot: str, stamp: int, data: tuple) -> None:
        names, pos, vel, eff = data
        self.pubs[(robot, "joint_states")].publish(make_joint_state(names, pos, vel, eff, stamp_ns=stamp))

    def _publish_odom(self, robot: str, stamp: int, data: tuple) -> None:
        T, twist = data
        self.pubs[(robot, "odom")].publish(make_odometry(T, twist, "odom", "base_link", stamp_ns=stamp))

    def _publish_rgbd(self, robot: str, stamp: int, data: tuple) -> None:
        rgb, depth, K = data
        h, w = depth.shape
        self.pubs[(robot, "color")].publish(numpy_to_image(rgb, "rgb8", "camera_color_optical_frame", stamp))
        self.pubs[(robot, "color_info")].publish(make_camera_info(w, h, K, "camera_color_optical_frame", stamp))
        self.pubs[(robot, "depth")].publish(numpy_to_image(depth, "32FC1", "camera_depth_optical_frame", stamp))
        self.pubs[(robot, "depth_info")].publish(make_camera_info(w, h, K, "camera_depth_optical_frame", stamp))

    def _publish_lidar(self, robot: str, stamp: int, fields: dict[str, np.ndarray]) -> None:
        self.pubs[(robot, "lidar")].publish(numpy_to_pointcloud2(fields, "lidar_link", stamp))

    def _publish_scan(self, robot: str, stamp: int, ranges: np.ndarray) -> None:
        g = self.geometry
        n = len(ranges)
        self.pubs[(robot, "scan")].publish(numpy_to_laserscan(ranges, -np.pi, 2 * np.pi / n, 0.1, g.scan_range_max,
                                                              "lidar_link", stamp, scan_time=0.1))

    def _publish_tactile(self, robot: str, stamp: int, pads: list[PadReading]) -> None:
        msg = TactileState(header=make_header("", stamp))
        for pad in pads:
            loc = pad.contact_location
            msg.pads.append(TactilePad(name=pad.name, rows=pad.rows, cols=pad.cols,
                                       pressure=pad.pressure.astype(np.float32).tolist(),
                                       in_contact=bool(pad.in_contact), slip=bool(pad.slip),
                                       normal_force=float(pad.normal_force),
                                       contact_location=Point(x=float(loc[0]), y=float(loc[1]), z=float(loc[2]))))
        self.pubs[(robot, "tactile")].publish(msg)

    def _publish_ground_truth(self, robot: str, stamp: int, gt: GroundTruth) -> None:
        msg = SimGroundTruth(header=make_header("world" if gt.scenario == "arm" else "map", stamp),
                             scenario=gt.scenario, body_names=list(gt.body_names), collisions=int(gt.collisions),
                             min_person_clearance_m=float(min(gt.min_person_clearance_m, 1e9)),
                             progress=float(gt.progress), task_success=bool(gt.task_success),
                             episode_done=bool(gt.episode_done))
        for pose, tw in zip(gt.body_poses, gt.body_twists, strict=True):
            msg.body_poses.append(Pose(position=Point(x=pose[0], y=pose[1], z=pose[2]),
                                       orientation=Quaternion(w=pose[3], x=pose[4], y=pose[5], z=pose[6])))
            msg.body_twists.append(Twist(linear=Vector3(x=tw[0], y=tw[1], z=tw[2]),
                                         angular=Vector3(x=tw[3], y=tw[4], z=tw[5])))
        self.pubs[(robot, "ground_truth")].publish(msg)
        if robot and "contacts" in gt.extra:  # a fleet robot: what it touched and how close it came to the others
            self.set_status(DiagnosticStatus.OK, "running", **{
                f"{robot}.{k}": v for k, v in {**{f"contacts.{c}": n for c, n in gt.extra["contacts"].items()},
                                                  "min_robot_clearance_m": f"{gt.extra['min_robot_clearance_m']:.3f}",
                                                  "min_person_clearance_m": f"{gt.min_person_clearance_m:.3f}"
                                                  }.items()})


def _in(robot: str, topic: str) -> str:
    """A topic of one robot: in its namespace below the node's in a fleet, the node's own otherwise."""
    return f"{robot}/{topic}" if robot else topic


def main(args: list[str] | None = None) -> None:
    """Entry point."""
    run_node(MujocoSim, args, events_executor=True)  # C++ dispatch: less CPU per callback


if __name__ == "__main__":
    main()

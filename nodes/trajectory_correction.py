"""trajectory_correction: the real-time layer between the policy (or any planner) and the robot's driver.

Modes (`mode` parameter): "arm" executes ActionChunks / JointTrajectories as one jerk-limited stream and slows or
stops for obstacles near the links; "amr" corrects velocity chunks or /cmd_vel_in against LiDAR and tracked
obstacles, re-planning around blockages; "vehicle" tracks a path with obstacle-aware speed. The algorithms live in
physical_ai/control/; this module only wires topics, parameters and the timing loop.

The control loop runs on its own thread against time.monotonic() deadlines at `rate_hz` (up to 1 kHz) and is
measured by p99 cycle time and deadline misses (/correction/status, /diagnostics). ROS callbacks only hand
inputs to the core under a lock. Stale actions, obstacles or robot state (judged by stamp and by arrival) stop the
robot within the configured deceleration, and every limitation is reported with its reason.

The loop never dies silently and never leaves a moving command behind: an exception in a cycle, or a cycle still
running after `cycle_stall_s` (a monitor thread watches), sends the safe command at once (zero twist, zero vehicle
speed, the arm held where it was last commanded), discards that cycle's output, reports an error on /diagnostics
and the loop goes on; after any gap in the commands sent the base ramps from its measured velocity, not from the
last command. SIGINT, SIGTERM and fatal errors end with the same safe command.
"""

from __future__ import annotations

import dataclasses
import gc
import sys
import threading
import time
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import PoseStamped, Twist, TwistStamped
from nav_msgs.msg import OccupancyGrid, Odometry
from nav_msgs.msg import Path as PathMsg
from physical_ai_stack.msg import ActionChunk, CorrectionStatus, Obstacle, ObstacleArray
from sensor_msgs.msg import JointState, LaserScan, PointCloud2
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from physical_ai.control.amr import AMR_PARAMETERS, AmrCorrector, amr_config, amr_parameter_default
from physical_ai.control.arm import ARM_PARAMETERS, ArmCorrector, arm_config, arm_parameter_default
from physical_ai.control.arm_collision import CapsuleArm, ObstacleSpheres
from physical_ai.control.flags import OBSTACLE_REACTION, Flag
from physical_ai.control.footprint import points_near
from physical_ai.control.grid_planner import Grid
from physical_ai.control.limits import JointLimits
from physical_ai.control.loop_timer import LoopTimer
from physical_ai.control.shapes import boxes_to_discs
from physical_ai.control.vehicle import VehicleConfig, VehicleCorrector
from physical_ai.control.watchdog import Watchdog
from physical_ai.convert import (
    laserscan_to_xy,
    make_header,
    ns_to_stamp,
    odometry_to_arrays,
    pointcloud2_columns,
    pose_to_matrix,
    quaternion_to_yaw,
    stamp_to_ns,
)
from physical_ai.stats import RollingStats
from physical_ai.tf import TransformBuffer
from physical_ai_nodes._base import COMMAND_QOS, STATE_QOS, PhysaiNode, resolve_share_path, run_node
from physical_ai_nodes._tf import TfListener

MODES = ("arm", "amr", "vehicle")
ARM_OUTPUTS = ("position", "velocity", "trajectory")
JOINT_STATE_FUTURE_S = 0.5  # joint states stamped further ahead of the node clock are from before a clock reset [s]


def _yaw(T: np.ndarray) -> float:
    return float(np.arctan2(T[1, 0], T[0, 0]))


class TrajectoryCorrection(PhysaiNode):
    """Executes and corrects the policy's actions at a fixed rate on a dedicated thread."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("trajectory_correction", **kwargs)
        self.mode = self.param("mode", "arm", "Robot type: arm | amr | vehicle")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        default_rate = 1000.0 if self.mode == "arm" else 100.0
        self.rate_hz = self.param("rate_hz", default_rate, "Control loop rate [Hz]", (1.0, 1000.0))
        self.period = 1.0 / self.rate_hz
        status_hz = self.param("status_rate_hz", 20.0, "Rate of /correction/status [Hz]; a change of the obstacle "
                               "reaction, or a newer obstacle input while reacting, is reported at once", (0.5, 200.0))
        self.status_every = max(1, round(self.rate_hz / status_hz))
        self._reported = (0, 0)  # (obstacle reaction flags, obstacle input stamp) of the last status
        self.publish_every = self.param("publish_every", 1, "Publish the command every N cycles [cycles]", (1, 1000))
        spin_us = self.param("spin_us", 200.0, "Busy-wait before each deadline, for wake-up jitter [us]", (0.0, 2000.0))
        rt_priority = self.param("rt_priority", 0, "SCHED_FIFO priority of the loop thread (0 = normal scheduling)",
                                 (0, 99))
        cpus = self.param("cpu_affinity", [-1], "CPU cores for the loop thread ([-1] = no pinning)")
        # A thread holding the GIL (e.g. the executor parsing a point cloud) keeps it for up to this long before
        # the loop thread gets it; the default 5 ms would cost several 1 kHz deadlines.
        sys.setswitchinterval(self.param("gil_switch_interval_s", 1e-4, "Python GIL switch interval [s]",
                                         (1e-5, 5e-3)))
        timeouts = {
            "action": self.param("action_timeout_s", 0.5, "Stop when no action/command for this long (<=0: off) [s]",
                                 (-1.0, 60.0)),
            "obstacles": self.param("obstacle_timeout_s", 0.5, "Stop when obstacles are older (<=0: off) [s]",
                                    (-1.0, 60.0)),
            "state": self.param("state_timeout_s", 0.2, "Stop when robot state is older (<=0: off) [s]",
                                (-1.0, 60.0)),
        }
        self.watchdog = Watchdog(timeouts, {"action": Flag.STALE_ACTION, "obstacles": Flag.STALE_OBSTACLES,
                                            "state": Flag.STALE_STATE})
        self._clouds: dict[str, tuple[np.ndarray, float]] = {}  # AMR: latest points per sensor, arrival time
        self._cloud_keep_s = timeouts["obstacles"] if timeouts["obstacles"] > 0 else 0.5
        self.max_chunk_age = self.param("max_chunk_age_s", 0.5, "Reject chunks that ended longer ago [s]",
                                        (0.0, 10.0))
        self.max_chunk_future = self.param("max_chunk_future_s", 0.5, "Reject chunks starting further ahead [s]",
                                           (0.0, 10.0))
        chunk_topic = self.param("chunk_topic", "policy/action_chunk", "ActionChunk input topic")
        obstacle_topic = self.param("obstacle_topic", "perception/obstacles", "ObstacleArray input topic")
        required = self.param("required_obstacle_sensors", [""],
                              "Sensors that must be alive in the obstacle data for it to count as fresh "
                              "(lidar, camera, depth, tactile; [''] = any)")
        bits = {"lidar": Obstacle.SENSOR_LIDAR, "camera": Obstacle.SENSOR_CAMERA, "depth": Obstacle.SENSOR_DEPTH,
                "tactile": Obstacle.SENSOR_TACTILE}
        unknown = sorted(set(required) - set(bits) - {""})
        if unknown:
            raise SystemExit(f"trajectory_correction: required_obstacle_sensors: unknown {unknown}; use {list(bits)}")
        self.required_sensors = sum(bits[name] for name in set(required) if name)

        self._lock = threading.Lock()
        self.on_time_reset(self._restart)
        self.tf_buffer = TransformBuffer()
        self.tf_listener = TfListener(self, self.tf_buffer)
        self._flags = 0
        self._reasons: dict[str, None] = {}
        self._last_logged: tuple[str, ...] = ()
        self._rejected = 0
        self._status = (1.0, float("inf"), float("inf"))
        self._clock_mark: tuple[float, float] | None = None  # (wall, node clock) at the start of a rate window
        self._clock_rate = 1.0  # node clock seconds per wall second (below 1: a simulator slower than real time)
        # Sensor stamps [ns] of the obstacle inputs in the core (raw points/scan, fused obstacles) and the newest of
        # them that the last cycle used (reported in the status: a reaction is only caused by inputs it had).
        self._points_stamp_ns = self._fused_stamp_ns = self._used_stamp_ns = 0
        self.status_pub = self.checked_publisher(CorrectionStatus, "correction/status", STATE_QOS)
        self.create_subscription(ActionChunk, chunk_topic, self._on_chunk, COMMAND_QOS)
        self.sensor_subscription(ObstacleArray, obstacle_topic, self._on_obstacles, STATE_QOS)
        getattr(self, f"_setup_{self.mode}")()

        self.cycle_stall_s = self.param(
            "cycle_stall_s", 0.1, "A cycle still running after this long is an overrun: the safe command is sent at "
            "once and that cycle's command discarded [s]", (0.002, 5.0))
        self.resume_gap_s = self.param(
            "resume_gap_s", 0.1, "After this long without a command sent (a stall, a stopped process), the base "
            "ramps from its measured velocity instead of from the last command [s]", (0.001, 5.0))
        self._gap_s = max(self.resume_gap_s, 2.0 * self.publish_every * self.period)  # longer than between sends
        self._cycle_started: float | None = None  # monotonic start of the running cycle (None between cycles)
        self._cycle_void = False  # the running cycle overran: its command is not sent
        self._last_sent = time.monotonic()  # when a cycle last sent a command
        self._measured = (0.0, 0.0, -np.inf)  # base (linear, angular) velocity from odometry, its stamp [s, node clock]
        self._last_arm_position: list[float] | None = None  # where the arm was last commanded to be
        self._fail_safe_lock = threading.Lock()
        self.loop = LoopTimer(self.period, self._guarded_cycle, spin_s=spin_us * 1e-6, rt_priority=rt_priority,
                              cpus=[c for c in cpus if c >= 0])
        self._wall = RollingStats(2000)
        self.loop.start(name=f"correction_{self.mode}")
        self.create_timer(0.5, self._check_loop)
        self._monitor_stop = threading.Event()
        threading.Thread(target=self._monitor_cycles, name="correction_monitor", daemon=True).start()
        self.get_logger().info(f"trajectory_correction: mode={self.mode} rate={self.rate_hz:.0f} Hz")
        if rt_priority:
            time.sleep(0.05)
            if self.loop.rt_error:
                self.get_logger().warning(f"real-time scheduling not applied: {self.loop.rt_error} (see README)")

    # ---- setup per mode ---------------------------------------------------------------------------------------
    def _setup_arm(self) -> None:
        names = self.param("joint_names", [f"joint{i}" for i in range(1, 8)], "Arm joints in command order")
        n = len(names)
        limits = JointLimits.from_lists(
            names,
            self.param("position_lower", [-2.9, -1.76, -2.9, -0.2, -2.9, -2.6, -2.9][:n], "Lower limits [rad]"),
            self.param("position_upper", [2.9, 1.76, 2.9, 2.9, 2.9, 2.6, 2.9][:n], "Upper limits [rad]"),
            self.param("max_velocity", [1.5] * n, "Velocity limits [rad/s]"),
            self.param("max_acceleration", [5.0] * n, "Acceleration limits [rad/s^2]"),
            self.param("max_jerk", [50.0] * n, "Jerk limits [rad/s^3]"))
        values = {name: self.param(name, arm_parameter_default(name), description, value_range)
                  for name, (description, value_range) in ARM_PARAMETERS.items()}
        config = dataclasses.replace(arm_config(values, period_s=self.period), max_age_s=self.max_chunk_age,
                                     max_future_s=self.max_chunk_future)
        model = self.param("model_path", "models/arm_cell/arm_cell.xml",
                           "MJCF with the arm's collision geoms (relative to the package share dir); '' = none")
        collision = None
        if model:
            prefix = self.param("collision_geom_prefix", "col_", "Only geoms whose name starts with this")
            collision = CapsuleArm.from_file(resolve_share_path(model), names, prefix)
        self.arm_frame = self.param("arm_frame", "world", "Frame of the model's world (obstacles are moved into it)")
        # Parts are what the arm is there to touch; the policy handles them, the barrier keeps it from the rest.
        self.ignored_classes = set(self.param("ignored_obstacle_classes", [Obstacle.CLASS_PART],
                                              "Obstacle classes the arm may touch (Obstacle.CLASS_*)"))
        self.arm = ArmCorrector(limits, config, collision)
        self._traj_sent: float | None = None  # node time of the last trajectory sent (arm_output: trajectory)
        self.joint_names = list(names)
        self.arm_output = self.param("arm_output", "position", "position | velocity | trajectory")
        if self.arm_output not in ARM_OUTPUTS:
            raise ValueError(f"arm_output must be one of {ARM_OUTPUTS}")
        if self.arm_output == "trajectory":
            self.cmd_pub = self.checked_publisher(JointTrajectory, self.param(
                "trajectory_topic", "arm_controller/joint_trajectory", "JointTrajectory output"), COMMAND_QOS)
            self.trajectory_lookahead_s = self.param(
                "trajectory_lookahead_s", 0.03, "arm_output trajectory: the point sent is where the command will be "
                "this far ahead (at least one sending interval), so a late or lost message does not stall the "
                "controller [s]", (0.0, 0.5))
        else:
            self.cmd_pub = self.checked_publisher(Float64MultiArray, self.param(
                "commands_topic", "arm_controller/commands", "Float64MultiArray output"), COMMAND_QOS)
        self.gripper_pub = self.checked_publisher(Float64MultiArray, self.param(
            "gripper_topic", "gripper_controller/commands", "Gripper opening output"), COMMAND_QOS)
        trajectory_in = self.param("trajectory_in_topic", "", "JointTrajectory input from another planner (e.g. "
                                   "MoveIt); '' = off")
        if trajectory_in:
            self.create_subscription(JointTrajectory, trajectory_in, self._on_trajectory, COMMAND_QOS)
        self.sensor_subscription(JointState, "joint_states", self._on_joint_states)
        self._step = self._step_arm

    def _setup_amr(self) -> None:
        values = {name: self.param(name, amr_parameter_default(name), description, value_range)
                  for name, (description, value_range) in AMR_PARAMETERS.items()}
        config = dataclasses.replace(amr_config(values, period_s=self.period), max_age_s=self.max_chunk_age,
                                     max_future_s=self.max_chunk_future)
        self.amr = AmrCorrector(config)
        self.points_z = (self.param("points_min_z", 0.05, "Lowest point that can hit the base [m]", (-5.0, 5.0)),
                         self.param("points_max_z", 1.8, "Highest point that can hit the base [m]", (-5.0, 10.0)))
        self.base_frame = self.param("base_frame", "base_link", "Robot frame")
        self.wake_on_points = self.param("wake_on_points", True, "Run a cycle at once when a LiDAR frame (points or "
                                         "scan) arrives, not at the next period (the periodic phase stays)")
        self.stamped = self.param("cmd_vel_stamped", False, "Publish TwistStamped instead of Twist")
        out = self.param("cmd_vel_topic", "cmd_vel", "Velocity command output")
        self.cmd_pub = self.checked_publisher(TwistStamped if self.stamped else Twist, out, COMMAND_QOS)
        self.create_subscription(Twist, self.param("cmd_vel_in_topic", "cmd_vel_in", "Planner command input"),
                                 self._on_cmd_vel, COMMAND_QOS)
        for topic, kind, cb in ((self.param("points_topic", "lidar/points", "PointCloud2 input ('' = off)"),
                                 PointCloud2, self._on_points),
                                (self.param("scan_topic", "scan", "LaserScan input ('' = off)"), LaserScan,
                                 self._on_scan)):
            if topic:
                self.sensor_subscription(kind, topic, cb)
        self.sensor_subscription(Odometry, "odom", self._on_odom)
        grid_topic = self.param("occupancy_topic", "perception/occupancy", "OccupancyGrid input ('' = off)")
        if grid_topic:
            self.sensor_subscription(OccupancyGrid, grid_topic, self._on_grid)
        self.create_subscription(PoseStamped, self.param(
            "goal_topic", "goal_pose", "Route goal input (PoseStamped in odom or a frame tf places in it): the base "
            "stops there, detours head there"),
                                 self._on_goal, COMMAND_QOS)
        self._step = self._step_amr

    def _setup_vehicle(self) -> None:
        config = VehicleConfig(
            wheelbase=self.param("wheelbase", 2.7, "Wheelbase [m]", (0.5, 10.0)),
            max_steer=self.param("max_steer", 0.5, "Steering limit [rad]", (0.01, 1.5)),
            max_steer_rate=self.param("max_steer_rate", 0.6, "Steering rate limit [rad/s]", (0.01, 10.0)),
            max_lateral_acc=self.param("max_lateral_acc", 3.0, "Lateral acceleration limit [m/s^2]", (0.1, 20.0)),
            max_speed=self.param("max_speed", 15.0, "Speed limit [m/s]", (0.1, 60.0)),
            max_acc=self.param("max_acc", 2.0, "Acceleration limit [m/s^2]", (0.1, 20.0)),
            max_decel=self.param("max_decel", 5.0, "Braking limit [m/s^2]", (0.1, 20.0)),
            cruise_speed=self.param("cruise_speed", 8.0, "Speed when following a path without a policy [m/s]",
                                    (0.0, 60.0)),
            min_gap_m=self.param("min_gap_m", 2.5, "Distance kept behind obstacles [m]", (0.0, 50.0)),
            time_gap_s=self.param("time_gap_s", 1.5, "Extra gap per m/s of a moving lead [s]", (0.0, 10.0)),
            lane_half_width=self.param("lane_half_width", 1.75, "Obstacles closer to the path count [m]",
                                       (0.1, 10.0)),
            max_age_s=self.max_chunk_age, max_future_s=self.max_chunk_future, period_s=self.period)
        self.vehicle = VehicleCorrector(config)
        from ackermann_msgs.msg import AckermannDriveStamped  # built by the stack from its definition

        self._ackermann = AckermannDriveStamped
        self.cmd_pub = self.checked_publisher(AckermannDriveStamped, self.param(
            "ackermann_topic", "ackermann_cmd", "Ackermann output"), COMMAND_QOS)
        self.sensor_subscription(Odometry, "odom", self._on_odom)
        self.create_subscription(PathMsg, self.param("path_topic", "plan", "Path/lane centre input (odom frame)"),
                                 self._on_path, STATE_QOS)
        self._step = self._step_vehicle

    # ---- inputs ---------------------------------------------------------------------------------------------------
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _reject(self, what: str, reasons: list[str]) -> None:
        reason = "; ".join(reasons)
        self._rejected += 1
        self.count(f"rejected_{what}")
        self._note(Flag.INPUT_REJECTED, f"{what} {reason}")
        self.log_throttled(f"rejected_{what}", f"{what} {reason}", 1.0)

    def _note(self, flags: int, reason: str) -> None:
        self._flags |= int(flags)
        if len(self._reasons) < 16:
            self._reasons[reason] = None

    def _on_chunk(self, msg: ActionChunk) -> None:
        self.tick("chunk")
        now = self._now()
        if msg.embodiment and msg.embodiment != self.mode:
            self._reject("chunk", [f"rejected: embodiment {msg.embodiment!r} is not {self.mode!r}"])
            return
        core = self._core()
        values = np.frombuffer(msg.values, dtype=np.float64) if isinstance(msg.values, (bytes, bytearray)) \
            else np.asarray(msg.values, dtype=np.float64)
        args = (list(msg.action_names), values, stamp_to_ns(msg.start_time) * 1e-9, float(msg.dt), int(msg.horizon),
                now)
        if self.mode == "arm":  # the checks run outside the loop's lock; only the hand-over holds it
            check = core.check_chunk(*args)
            with self._lock:
                check = core.accept(check, now)
                if check.reference is not None:
                    self.watchdog.feed("action", now)
        else:
            with self._lock:
                check = core.submit_chunk(*args)
                if check.reference is not None:
                    self.watchdog.feed("action", now)
        if check.reference is None:
            if any(r.startswith("rejected: implausible") for r in check.reasons):
                self.count("chunk_implausible")
            self._reject("chunk", check.reasons)
        elif check.reasons:
            self.count("chunk_clamped" if check.clamped else "chunk_names_ignored")
            self._note(Flag.LIMIT_POSITION if check.clamped else 0, "chunk " + "; ".join(check.reasons))

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        now = self._now()
        if not msg.points:
            self._reject("trajectory", ["rejected: no points"])
            return
        start = stamp_to_ns(msg.header.stamp) * 1e-9 or now
        times = start + np.array([p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points])
        try:
            positions = np.array([list(p.positions) for p in msg.points], dtype=float)
        except ValueError:
            self._reject("trajectory", ["rejected: points of different lengths"])
            return
        check = self.arm.check_points(list(msg.joint_names), positions, times, now)
        with self._lock:
            check = self.arm.accept(check, now)
            if check.reference is not None:
                self.watchdog.feed("action", now)
        if check.reference is None:
            self._reject("trajectory", check.reasons)

    def _on_joint_states(self, msg: JointState) -> None:
        index = {n: i for i, n in enumerate(msg.name)}
        if len(msg.position) != len(msg.name) or any(n not in index for n in self.joint_names):
            self.count("joint_states_incomplete")
            return
        if len(index) != len(msg.name):  # a joint named twice: which of its positions is the arm's is unknown
            self.count("joint_states_ambiguous")
            self.log_throttled("joint_states_ambiguous", "joint state naming a joint twice ignored")
            return
        q = np.array([msg.position[index[n]] for n in self.joint_names])
        if not np.all(np.isfinite(q)):
            self.count("joint_states_nonfinite")
            return
        if (msg.header.stamp.sec or msg.header.stamp.nanosec) and \
                msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9 > self._now() + JOINT_STATE_FUTURE_S:
            # a state stamped on the clock before a simulator reset: the arm is no longer there, and the corrector
            # restarts its command from the next measured state
            self.count("joint_states_future")
            return
        gripper = float("nan")
        for name in ("gripper", "finger_left_joint"):
            if name in index:
                gripper = msg.position[index[name]] * (2.0 if name == "finger_left_joint" else 1.0)
        with self._lock:
            accepted = self.arm.set_measured(q, gripper)
            if accepted:
                self.watchdog.feed("state", self._now())
        if not accepted:  # no arm is there: the state goes stale and the arm stops, as without a feed
            self.count("joint_states_implausible")
            self.log_throttled("joint_states_implausible", "joint state beyond the position limits by more than "
                               f"plausible_margin ignored: {np.round(q, 3).tolist()}")

    def _core(self) -> ArmCorrector | AmrCorrector | VehicleCorrector | None:
        """The correction core of this node's mode (its attribute is named after the mode; None before set-up)."""
        return getattr(self, self.mode, None)

    def _restart(self) -> None:
        """ROS time jumped back (simulator reset): commands, references and input ages of the old clock are void.

        Every input is stale until received again, so the loop stops the robot meanwhile.
        """
        core = self._core()
        with self._lock:
            self.watchdog.reset()
            self._clouds.clear()
            self._points_stamp_ns = self._fused_stamp_ns = self._used_stamp_ns = 0
            if core is not None:
                core.restart_clock()
            self._traj_sent = None

    def _on_obstacles(self, msg: ObstacleArray) -> None:
        now = self._now()
        # Obstacles from the cameras alone do not make a LiDAR-guarded robot safe: without the required sensors the
        # data is used but does not count as fresh, so the watchdog stops the robot.
        fresh = (msg.sensors_alive & self.required_sensors) == self.required_sensors
        if not fresh:
            self.count("obstacles_missing_required_sensor")
            self.log_throttled("obstacles_missing_required_sensor", "obstacles without required sensors (alive mask "
                               f"{msg.sensors_alive}, need {self.required_sensors}): not counted as fresh")
        obs = msg.obstacles
        if self.mode == "arm" and self.ignored_classes:
            obs = [o for o in obs if o.classification not in self.ignored_classes]
        centres = np.array([[o.pose.position.x, o.pose.position.y, o.pose.position.z] for o in obs]).reshape(-1, 3)
        sizes = np.array([[o.size.x, o.size.y, o.size.z] for o in obs]).reshape(-1, 3)
        vel = np.array([[o.velocity.x, o.velocity.y, o.velocity.z] for o in obs]).reshape(-1, 3)
        if self.mode == "arm":
            frame = msg.header.frame_id or self.arm_frame
            if frame != self.arm_frame and len(obs):
                try:
                    T = self.tf_buffer.lookup(self.arm_frame, frame)
                except (LookupError, ValueError) as exc:
                    self.count("obstacles_no_transform")
                    self.log_throttled("obstacles_no_transform", f"obstacles in {frame!r}: {exc}")
                    return
                centres = centres @ T[:3, :3].T + T[:3, 3]
                vel = vel @ T[:3, :3].T
            spheres = ObstacleSpheres.from_arrays(centres, 0.5 * np.linalg.norm(sizes, axis=1), vel)
            with self._lock:
                self.arm.obstacles = spheres
                self._fused_stamp_ns = stamp_to_ns(msg.header.stamp)
                if fresh:
                    self.watchdog.feed("obstacles", self._data_time(msg.header.stamp, now))
            return
        yaws = np.array([quaternion_to_yaw(o.pose.orientation) for o in obs])  # NaN kept, counted below
        nonfinite = ~(np.isfinite(centres).all(axis=1) & np.isfinite(sizes[:, :2]).all(axis=1) & np.isfinite(yaws)
                      & np.isfinite(vel).all(axis=1))
        if nonfinite.any():  # the cores skip them; count so that bad perception output shows on /diagnostics
            self.count("obstacles_nonfinite", int(nonfinite.sum()))
            self.log_throttled("obstacles_nonfinite", f"{int(nonfinite.sum())} obstacle(s) with non-finite "
                               "pose/size/velocity ignored")
        ok = ~nonfinite
        # Long obstacles (a shelf face) as chains of discs, not one disc over the whole aisle.
        disc_centres, radii, disc_vel, owner = boxes_to_discs(centres[ok, :2], sizes[ok, 0], sizes[ok, 1], yaws[ok],
                                                              vel[ok, :2])
        core = self._core()
        discs: tuple = (disc_centres, radii, disc_vel)
        if self.mode == "amr":  # the AMR gives way earlier to people (AmrCorrector._stop_or_give_way)
            discs += (np.array([o.classification == Obstacle.CLASS_PERSON for o in obs], bool)[ok][owner],)
        with self._lock:
            core.set_obstacles(*discs)
            self._fused_stamp_ns = stamp_to_ns(msg.header.stamp)
            if fresh:
                self.watchdog.feed("obstacles", self._data_time(msg.header.stamp, now))

    def _on_cmd_vel(self, msg: Twist) -> None:
        now = self._now()
        with self._lock:
            reasons = self.amr.submit_cmd_vel(msg.linear.x, msg.angular.z, now)
            if not any(r.startswith("rejected") for r in reasons):
                self.watchdog.feed("action", now)
        if any(r.startswith("rejected") for r in reasons):
            self._reject("cmd_vel", reasons)

    def _lidar_to_base(self, frame: str) -> np.ndarray | None:
        if not frame or frame == self.base_frame:
            return np.eye(4)
        try:
            return self.tf_buffer.lookup(self.base_frame, frame)
        except (LookupError, ValueError):
            self.count("points_no_transform")
            return None

    def _on_points(self, msg: PointCloud2) -> None:
        try:
            x, y, z = pointcloud2_columns(msg)
        except ValueError as exc:
            self.count("points_malformed")
            self.log_throttled("points_malformed", f"dropped point cloud: {exc}")
            return
        T = self._lidar_to_base(msg.header.frame_id)
        if T is None:
            return
        xy, nonfinite = points_near(x, y, z, T, self.points_z, self.amr.reach)
        if nonfinite:  # NaN/inf returns (no echo): normal for LiDARs, counted so a sensor going blind shows
            self.count("points_nonfinite", nonfinite)
        self._take_points("points", xy, msg.header.stamp)

    def _on_scan(self, msg: LaserScan) -> None:
        try:
            xy = laserscan_to_xy(msg).astype(np.float64)
        except ValueError as exc:
            self.count("scan_malformed")
            self.log_throttled("scan_malformed", f"dropped scan: {exc}")
            return
        # A 2D scan lies in its own plane: it can always hit the base.
        xyz = np.column_stack((xy, np.full(len(xy), 0.5 * sum(self.points_z))))
        T = self._lidar_to_base(msg.header.frame_id)
        if T is not None:
            self._take_points("scan", (xyz @ T[:3, :3].T + T[:3, 3])[:, :2], msg.header.stamp)

    def _take_points(self, source: str, xy: np.ndarray, stamp: Any) -> None:
        """Hand one sensor's points (base frame, N x 2) to the core, which checks the latest frame of every sensor.

        The 3D LiDAR and a 2D scanner see different things (a pallet below the scan plane): each frame replacing
        the other's left the other's obstacles out of every second cycle. A sensor silent for obstacle_timeout_s
        drops out: its points, in the robot frame of their time, would move along with the robot.
        """
        arrived = time.monotonic()
        with self._lock:
            self._clouds[source] = (xy, arrived)
            recent = [p for p, t in self._clouds.values() if arrived - t <= self._cloud_keep_s]
            self.amr.set_points(recent[0] if len(recent) == 1 else np.concatenate(recent))
            self._points_stamp_ns = stamp_to_ns(stamp)
        if self.wake_on_points:
            self.loop.wake()

    def _on_odom(self, msg: Odometry) -> None:
        try:
            T, twist = odometry_to_arrays(msg)
        except ValueError:
            self.count("odom_malformed")
            return
        now = self._now()
        with self._lock:
            if self.mode == "amr":
                self.amr.set_pose(T[0, 3], T[1, 3], _yaw(T))
            else:
                self.vehicle.set_pose(T[0, 3], T[1, 3], _yaw(T), float(twist[0]))
            measured_at = self._data_time(msg.header.stamp, now)
            self._measured = (float(twist[0]), float(twist[5]), measured_at)
            self.watchdog.feed("state", measured_at)

    @staticmethod
    def _data_time(stamp: Any, now: float) -> float:
        """When the data was measured, for the watchdog: its stamp (never later than now); arrival when unstamped.

        Data stamped 60 s ago is 60 s old however recently it arrived.
        """
        ns = stamp_to_ns(stamp)
        return now if ns == 0 else min(ns * 1e-9, now)

    def _on_grid(self, msg: OccupancyGrid) -> None:
        info = msg.info
        data = np.asarray(msg.data, dtype=np.int8)
        if info.width * info.height != data.size or info.resolution <= 0:
            self.count("occupancy_malformed")
            return
        frame = msg.header.frame_id or "odom"
        T = np.eye(4)
        if frame != "odom":
            try:
                T = self.tf_buffer.lookup_at_or_latest("odom", frame, stamp_to_ns(msg.header.stamp))
            except (LookupError, ValueError):
                self.count("occupancy_no_transform")
                return
        # the grid's corner cell in odom: a robot-centred perception grid (base_link) turns with the base
        T = T @ pose_to_matrix(info.origin)
        grid = Grid(data.reshape(info.height, info.width) >= 50, float(info.resolution), (0.0, 0.0))
        with self._lock:
            self.amr.set_grid(grid, (float(T[0, 3]), float(T[1, 3]), _yaw(T)))

    def _on_goal(self, msg: PoseStamped) -> None:
        xy = np.array([msg.pose.position.x, msg.pose.position.y, 0.0, 1.0])
        if not np.isfinite(xy).all():
            self.count("goal_malformed")
            return
        frame = msg.header.frame_id or "odom"
        if frame != "odom":  # e.g. map: placed with the latest map -> odom (a fleet manager sends it again)
            try:
                xy = self.tf_buffer.lookup("odom", frame) @ xy
            except (LookupError, ValueError) as exc:
                self.count("goal_no_transform")
                self.log_throttled("goal_no_transform", f"goal in {frame!r}: {exc}", 5.0)
                return
        with self._lock:
            self.amr.set_goal(xy[:2])

    def _on_path(self, msg: PathMsg) -> None:
        xy = np.array([[p.pose.position.x, p.pose.position.y] for p in msg.poses]).reshape(-1, 2)
        with self._lock:
            self.vehicle.set_path(xy if len(xy) >= 2 else None)
            self.watchdog.feed("action", self._now())

    # ---- control loop (dedicated thread) -------------------------------------------------------------------
    def _guarded_cycle(self) -> None:
        """One cycle; an exception in it sends the safe command and is reported, and the loop goes on."""
        self._cycle_started = time.monotonic()
        try:
            if self.mode == "amr" and time.monotonic() - self._last_sent > self._gap_s:
                self._resume_after_gap()
            self._cycle()
        except Exception as exc:
            self._fail_safe("cycle_error", f"control cycle failed: {exc!r}")
        finally:
            self._cycle_started = None
            self._cycle_void = False

    def _resume_after_gap(self) -> None:
        """No command went out for a while: the driver may have stopped the base, so ramp from what it measures.

        Only a measurement stamped within resume_gap_s says what the base does now (after a stopped process, the
        odometry queued during the stop arrives first): otherwise the ramp starts from standstill. After the safe
        command it starts from standstill too, the last command on the wire ("never from above its last command"):
        the core had not seen that zero, and resumed from the measured speed of a base still braking for it, a step
        from 0 back to 0.99 m/s (fleet through the nodes at load 6, seed 200001, robot1).
        """
        v, w, measured_at = self._measured
        after_safe = self._last_sent == -np.inf  # set by _fail_safe only
        fresh = self._now() - measured_at <= self.resume_gap_s and not after_safe
        with self._lock:
            self.amr.resume_from(v if fresh else 0.0, w if fresh else 0.0)
        self._last_sent = time.monotonic()  # once per gap
        self.count("resumed_after_gap")

    def _send(self, publisher: Any, msg: Any) -> None:
        """Publish a cycle's command unless the cycle overran (then the safe command goes instead).

        Checked here too, not only by the monitor: a cycle stalled with its process (SIGSTOP) would otherwise send
        its stale command on resuming before the monitor thread runs.
        """
        started = self._cycle_started
        with self._fail_safe_lock:
            if self._cycle_void:
                return
            if started is None or time.monotonic() - started <= self.cycle_stall_s:
                publisher.publish(msg)
                self._last_sent = time.monotonic()
                return
        self._fail_safe("cycle_overrun", f"control cycle overran: its command was due after "
                        f"{time.monotonic() - started:.3f} s; safe command sent instead")

    def _monitor_cycles(self) -> None:
        """Watch the loop from another thread: a cycle running past cycle_stall_s gets the safe command sent."""
        while not self._monitor_stop.wait(self.cycle_stall_s / 4):
            started = self._cycle_started
            if started is not None and not self._cycle_void and time.monotonic() - started > self.cycle_stall_s:
                self._fail_safe("cycle_overrun", f"control cycle overran: still running after "
                                f"{self.cycle_stall_s * 1e3:.0f} ms; safe command sent, its output discarded")

    def _fail_safe(self, counter: str, reason: str) -> None:
        """Send the safe command now, void the running cycle's output, and report an error."""
        with self._fail_safe_lock:
            self._cycle_void = True
            self._publish_safe_command()
            self._last_sent = -np.inf  # the next cycle resumes, ramping from this zero (_resume_after_gap)
        self.count(counter)
        self.set_status(DiagnosticStatus.ERROR, reason)
        self.log_throttled(counter, reason, 1.0, level="error")

    def _publish_safe_command(self) -> None:
        """Zero twist (AMR), zero speed (vehicle), or the arm held at its last commanded position."""
        if not self.context.ok():
            return
        if self.mode == "amr":
            self.cmd_pub.publish(TwistStamped(header=make_header(self.base_frame, int(self._now() * 1e9)))
                                 if self.stamped else Twist())
        elif self.mode == "vehicle":
            self.cmd_pub.publish(self._ackermann(header=make_header("base_link", int(self._now() * 1e9))))
        elif self._last_arm_position is not None:
            position = self._last_arm_position
            if self.arm_output == "trajectory":
                msg = JointTrajectory(joint_names=self.joint_names, points=[JointTrajectoryPoint(
                    positions=position, velocities=[0.0] * len(position))])
                msg.points[0].time_from_start.nanosec = int(self.period * 1e9)
            else:
                msg = Float64MultiArray(data=position if self.arm_output == "position" else [0.0] * len(position))
            self.cmd_pub.publish(msg)

    def _cycle(self) -> None:
        now = self._now()
        with self._lock:
            wflags, wreasons = self.watchdog.check(now)
            result = self._step(now, wflags, wreasons)
            self._used_stamp_ns = max(self._points_stamp_ns, self._fused_stamp_ns)
        if result is None:
            return
        flags, reasons, scale, clearance, ttc = result
        self._flags |= flags | wflags
        for r in reasons:
            if len(self._reasons) < 16:
                self._reasons[r] = None
        self._status = (scale, clearance, ttc)
        # The cycle that starts (or ends) a reaction to an obstacle, or reacts to a newer obstacle input, is reported
        # right after its command, whatever the status rate: the first corrected command is seen on the wire
        # without a status every cycle.
        reacting = int(flags) & OBSTACLE_REACTION
        reaction = (reacting, self._used_stamp_ns if reacting else 0)
        if reaction != self._reported or self.loop.cycles % self.status_every == 0:
            self._reported = reaction
            self._publish_status(now)

    def _step_arm(self, now: float, wflags: int, wreasons: list[str]) -> tuple | None:
        if not self.arm.started:
            self._note(Flag.STALE_STATE, "waiting for /joint_states")
            if self.loop.cycles % self.status_every == 0:
                self._publish_status(now)
            return None
        cmd = self.arm.step(now, wreasons)
        if self.arm_output == "trajectory":
            self._publish_trajectory(now, cmd)
        elif self.loop.cycles % self.publish_every == 0:
            self._send(self.cmd_pub, Float64MultiArray(
                data=(cmd.position if self.arm_output == "position" else cmd.velocity).tolist()))
        self._last_arm_position = cmd.position.tolist()
        if np.isfinite(cmd.gripper) and self.loop.cycles % max(1, self.status_every) == 0:
            self._send(self.gripper_pub, Float64MultiArray(data=[cmd.gripper]))
        return cmd.flags, cmd.reasons, cmd.speed_scale, cmd.min_clearance_m, cmd.time_to_collision_s

    def _publish_trajectory(self, now: float, cmd: Any) -> None:
        """Send the command as a one-point JointTrajectory for a joint_trajectory_controller.

        The point is where the command will be `trajectory_lookahead_s` ahead on the node clock (at least h, the
        clock time since the previous one, and publish_every periods), extrapolated from its velocity and
        acceleration, so the controller interpolates from where it is towards it at the commanded speed at any
        loop rate, and keeps moving through a late or lost message. Before, the point was one nominal period
        ahead while the command had moved a whole simulator step (5 ms): the simulator refused every trajectory as
        too fast. Nothing is sent while the clock stands still (a simulator's clock steps 5 ms; the loop 1 ms).
        Positions only: the controller interpolates linearly, never faster than the command.
        """
        last = self._traj_sent
        if last is not None and 0.0 <= now - last < self.period * self.publish_every:
            return
        h = self.period * self.publish_every if last is None or now < last else now - last
        h = max(h, self.trajectory_lookahead_s)
        self._traj_sent = now
        lim = self.arm.limits
        speed = np.clip(cmd.velocity + 0.5 * cmd.acceleration * h, -lim.max_velocity, lim.max_velocity)
        q = cmd.position + speed * h
        # inside stays inside; a joint beyond a limit (start pose) is never sent further out
        q = np.clip(q, np.minimum(lim.lower, cmd.position), np.maximum(lim.upper, cmd.position))
        msg = JointTrajectory(joint_names=self.joint_names)
        msg.header.stamp = ns_to_stamp(int(now * 1e9))
        point = JointTrajectoryPoint(positions=q.tolist())
        point.time_from_start.sec, point.time_from_start.nanosec = divmod(int(h * 1e9), 1_000_000_000)
        msg.points = [point]
        self._send(self.cmd_pub, msg)

    def _robot_dt(self, now: float) -> float:
        """The time this cycle stands for on the robot's clock [s]: wall time scaled by the node clock's rate.

        The loop's elapsed wall time, times how fast the node's clock runs (below 1 with use_sim_time and a
        simulator slower than real time, e.g. a fleet at half speed). The limits are accelerations over the robot's
        time: over wall time a simulator at half speed would have been commanded twice the acceleration it can
        make, and the corrector would have believed its base slower than it is when braking. The rate is measured
        over the last ~0.5 s of wall time (1 in real time).
        """
        wall = time.monotonic()
        if self._clock_mark is None or now < self._clock_mark[1]:  # first cycle, or ROS time jumped back
            self._clock_mark = (wall, now)
        elif wall - self._clock_mark[0] >= 0.5:
            rate = (now - self._clock_mark[1]) / (wall - self._clock_mark[0])
            self._clock_rate = float(np.clip(rate, 0.0, 1.0))
            self._clock_mark = (wall, now)
        return self.loop.dt_s * self._clock_rate

    def _step_amr(self, now: float, wflags: int, wreasons: list[str]) -> tuple:
        cmd = self.amr.step(now, wreasons, dt_s=self._robot_dt(now))
        if self.loop.cycles % self.publish_every == 0:
            twist = Twist()
            twist.linear.x, twist.angular.z = cmd.linear, cmd.angular
            self._send(self.cmd_pub, TwistStamped(header=make_header(self.base_frame, int(now * 1e9)), twist=twist)
                       if self.stamped else twist)
        return cmd.flags, cmd.reasons, cmd.speed_scale, cmd.min_clearance_m, cmd.time_to_collision_s

    def _step_vehicle(self, now: float, wflags: int, wreasons: list[str]) -> tuple:
        cmd = self.vehicle.step(now, wreasons)
        if self.loop.cycles % self.publish_every == 0:
            msg = self._ackermann(header=make_header("base_link", int(now * 1e9)))
            msg.drive.steering_angle = cmd.steering_angle
            msg.drive.speed = cmd.speed
            self._send(self.cmd_pub, msg)
        return cmd.flags, cmd.reasons, cmd.speed_scale, cmd.min_gap_m, cmd.time_to_collision_s

    def _publish_status(self, now: float) -> None:
        flags, reasons = self._flags, list(self._reasons)
        self._flags, self._reasons = 0, {}
        scale, clearance, ttc = self._status
        p99 = self.loop.cycle_ms.percentile(99)
        msg = CorrectionStatus(mode=self.mode, flags=flags, reasons=reasons, speed_scale=float(scale),
                               min_clearance_m=float(min(clearance, 1e9)), time_to_collision_s=float(ttc),
                               cycle_time_ms=float(self.loop.cycle_ms.last if len(self.loop.cycle_ms) else 0.0),
                               cycle_time_p99_ms=float(0.0 if np.isnan(p99) else p99), cycles=self.loop.cycles,
                               deadline_misses=self.loop.misses, rejected_inputs=self._rejected,
                               obstacles_stamp=ns_to_stamp(self._used_stamp_ns))
        msg.header = make_header("", int(now * 1e9))
        self.status_pub.publish(msg)
        stale = flags & (Flag.STALE_ACTION | Flag.STALE_OBSTACLES | Flag.STALE_STATE)
        limited = flags & ~int(Flag.INPUT_REJECTED) & ~stale
        level = DiagnosticStatus.ERROR if stale else DiagnosticStatus.WARN if limited else DiagnosticStatus.OK
        message = "; ".join(reasons[:3]) if reasons else "ok"
        self.set_status(level, message, cycle_p99_ms=f"{msg.cycle_time_p99_ms:.3f}", cycles=self.loop.cycles,
                        deadline_misses=self.loop.misses, deadline_miss_pct=f"{self.loop.miss_pct:.3f}",
                        speed_scale=f"{scale:.2f}", flags=flags)
        # Logged when the set of reasons changes; acceleration and jerk at their limits come and go with every
        # move (they stay in the status and diagnostics) and would fill the log.
        key = tuple(sorted(r.split(":")[0] for r in reasons if not r.startswith(("acceleration", "jerk"))))
        if key != self._last_logged:
            self._last_logged = key
            if key:
                self.get_logger().info(f"correction: {message}")

    def _check_loop(self) -> None:
        if self.loop.error is not None:  # only a BaseException out of a cycle gets here: end, to be respawned
            self._publish_safe_command()
            raise SystemExit(f"trajectory_correction: control loop died: {self.loop.error!r}")

    def destroy_node(self) -> None:
        """Stop the control loop first: a cycle in flight would publish on destroyed handles (InvalidHandle).

        A node whose set-up failed has no loop yet: its error, not this one, is what the user must see.
        """
        if hasattr(self, "loop"):
            self._monitor_stop.set()
            self.loop.stop()
        super().destroy_node()

    def on_shutdown(self) -> None:
        """Stop the loop; the robot gets a last safe command so it does not coast on the previous one."""
        self._monitor_stop.set()
        self.loop.stop()
        with self._fail_safe_lock:
            self._cycle_void = True  # a cycle still running after stop() must not follow the stop with a command
            self._publish_safe_command()
        time.sleep(0.01)
        # The loop froze the collector's view of startup objects; release the cores so their native trajectory
        # generators are freed before the interpreter exits.
        gc.unfreeze()
        for name in ("arm", "amr", "vehicle"):
            if hasattr(self, name):
                setattr(self, name, None)
        gc.collect()


def main(args: list[str] | None = None) -> None:
    """Entry point: `python -m physical_ai_nodes.trajectory_correction --ros-args --params-file config/arm.yaml`."""
    run_node(TrajectoryCorrection, args, events_executor=True)  # C++ dispatch: less CPU per callback


if __name__ == "__main__":
    main()

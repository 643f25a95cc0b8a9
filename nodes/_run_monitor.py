"""Run monitor for `physai demo`: watches a simulated run over DDS and fills a `RunLog` for the report.

It reads the simulator's privileged ground truth (scoring only: it never feeds the stack), the commands on the
wire, the corrector's status, the policy's chunks and the perception output. Latencies are real time, measured on
the wire, not by when this Python executor got round to a callback: every time is the system clock [ns] as DDS
stamped it (the publisher's write time, `source_timestamp`, or the middleware's reception here,
`received_timestamp`). Sim-time stamps are mapped to system time from the simulator's /clock publications (their
source timestamps): it publishes sim time t no earlier than t is due on its real-time schedule, later when its
computation fell behind (a render, a raycast); t is taken to happen when it was due, the lower envelope of the
publications around it (never later than t's own publication: latencies from it are not understated by a late
simulator).

Reaction latency (e2e): for each LiDAR frame in which a person is inside the robot's swept path for the first
time while the robot moves, the time from that frame's stamp to the first corrected command on the wire. "In the
swept path" is one definition shared with the corrector (`physical_ai.control.amr.in_swept_path`): the person, where
the ground truth has them at the frame's stamp, comes within the clearance of the footprint along the motion the
corrector checks the nominal command against (from the robot's present motion, ramp to the policy's command at that
stamp, hold it, brake to rest by the end of the look-ahead). A person farther ahead, or one the policy is already
stopping short of, needs no correction yet; scoring from when they first appear anywhere ahead would count the
frames in which no correction was due. The corrected command's time
is the write time of the first /correction/status whose flags say the cycle's command was cut or steered for an
obstacle AND whose `obstacles_stamp` (newest obstacle input the cycle used) is not older than the frame, i.e. a
cycle that had the frame (a cycle already slowing for a predicted crossing before the frame arrived does not
count). The corrector publishes the status right after the cycle's cmd_vel, so its write time bounds the command's
from above; it reports a cycle at once when its obstacle reaction starts or ends or uses a newer obstacle input,
whatever its status rate. An entry with no such cycle within `window_s` is counted apart (`reactions_not_needed`).

LiDAR transport (the floor under any reaction): a frame's stamp to its reception by the middleware here.
"""

from __future__ import annotations

import bisect
import struct
import threading
import time
from typing import Any

import numpy as np
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from physical_ai_stack.msg import ActionChunk, CorrectionStatus, ObstacleArray, SimGroundTruth
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import PointCloud2

from physical_ai.bringup.report import RunLog
from physical_ai.control.amr import AmrConfig, in_swept_path
from physical_ai.control.chunks import Reference
from physical_ai.control.flags import OBSTACLE_REACTION
from physical_ai.convert import quaternion_to_yaw, stamp_to_ns
from physical_ai_nodes._base import STATE_QOS

PERSON_PREFIXES = ("worker", "hand", "person")
ROBOT_BODIES = ("base_link", "ego", "car", "tcp")
NO_PERSON_M = 1e6  # ground truth's nearest-person distance when nobody is near (inf, or a large sentinel) [m]
_HEADER_STAMP = struct.Struct("<iI")  # CDR little-endian: 4-byte encapsulation, then Header.stamp (sec, nanosec)


class RunMonitor(Node):
    """Collects what the report needs; thread-safe snapshot via `snapshot()`."""

    def __init__(self, scenario: str, corrector: AmrConfig | None = None, person_radius_m: float = 0.22,
                 namespace: str = "", clock_topic: str = "/clock") -> None:
        """Subscribe to the run's topics.

        Args:
            scenario: scenario name (report title).
            corrector: the AMR corrector's configuration (footprint, clearance, look-ahead, acceleration limits),
                which defines the swept path; defaults when None.
            person_radius_m: a person's radius around their ground-truth position [m] (the simulated worker's body
                capsule).
            namespace: the robot's namespace ('' = root): its topics are watched there.
            clock_topic: the simulator's clock (global /clock; a namespaced stack with its own simulator has its own,
                `physical_ai.bringup.stack.clock_topic`).
        """
        super().__init__("physai_run_monitor", namespace=f"/{namespace.strip('/')}")
        self.log = RunLog(scenario)
        self._lock = threading.Lock()
        self._clock: list[tuple[int, int]] = []  # (sim ns, system ns the simulator published it), increasing
        self._lidar: list[tuple[int, int, int]] = []  # (stamp sim ns, simulator's write, reception here; system ns)
        self._cmds: list[tuple[int, float, float]] = []  # (reception system ns, v, w)
        self._cmd_sent: list[int] = []  # the publisher's send time of each command [ns, system clock]
        self._judged_cmds: int | None = None  # commands judged by the limit checks (None: all; see mark_stopping)
        self._gt_times: list[int] = []
        # per (LiDAR stamp, min speed): (person in the path, robot moving), kept once ground truth at/after it is in
        self._frame_state: dict[tuple[int, float], tuple[bool, bool]] = {}
        self._gt_robot: list[np.ndarray] = []  # x, y, yaw, forward speed [m/s], yaw rate [rad/s]
        self._gt_people: list[np.ndarray] = []  # (P, 2)
        # (write system ns, stamp sim ns, flags, obstacles_stamp sim ns)
        self._status: list[tuple[int, int, int, int]] = []
        # the policy's velocity chunks, (linear_x, angular_z) over sim time [s], and their reception [system ns]
        self._chunks: list[Reference] = []
        self._chunk_rx: list[int] = []
        self.reactions_not_needed = 0
        self.path_entries_slow = 0  # a person entered the swept path while the robot was slower than min_speed
        self.latest_gt: SimGroundTruth | None = None
        self.latest_status: CorrectionStatus | None = None
        self._corrector = corrector or AmrConfig()
        self._person_radius = person_radius_m
        self._actual_speed = 0.0
        self.create_subscription(Clock, clock_topic, self._on_clock, qos_profile_sensor_data)
        self.create_subscription(SimGroundTruth, "sim/ground_truth", self._on_gt, STATE_QOS)
        # Every command, not the latest only (a depth-1 queue drops some under load and fakes jumps between the rest).
        every_command = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
        self.create_subscription(Twist, "cmd_vel", self._on_cmd, every_command)
        self.create_subscription(Odometry, "odom", self._on_odom, qos_profile_sensor_data)
        self.create_subscription(PointCloud2, "lidar/points", self._on_lidar, qos_profile_sensor_data, raw=True)
        self.create_subscription(ObstacleArray, "perception/obstacles", self._on_obstacles, STATE_QOS)
        self.create_subscription(ActionChunk, "policy/action_chunk", self._on_chunk, STATE_QOS)
        self.create_subscription(CorrectionStatus, "correction/status", self._on_status, STATE_QOS)

    def new_episode(self) -> None:
        """Forget the previous episode's samples (after `/sim/reset`; the report log is kept)."""
        with self._lock:
            self._clock.clear()
            self._lidar.clear()
            self._cmds.clear()
            self._cmd_sent.clear()
            self._judged_cmds = None
            self._gt_times.clear()
            self._frame_state.clear()
            self._gt_robot.clear()
            self._gt_people.clear()
            self._status.clear()
            self._chunks.clear()
            self._chunk_rx.clear()
            self.latest_gt = None

    def lidar_transport_ms(self) -> list[float]:
        """Per LiDAR frame: its stamp to its reception here on the wire (the floor under any reaction latency)."""
        with self._lock:
            frames = list(self._lidar)
        out = []
        for stamp_ns, _sent, rx in frames:
            wall = self.sim_to_wall(stamp_ns)
            if wall is not None:
                out.append((rx - wall) * 1e-6)
        return out

    def lidar_write_ms(self) -> list[float]:
        """Per LiDAR frame: its stamp to the simulator's (the driver's) write of it (part of the transport)."""
        with self._lock:
            frames = list(self._lidar)
        walls = [(self.sim_to_wall(stamp_ns), sent) for stamp_ns, sent, _rx in frames]
        return [(sent - wall) * 1e-6 for wall, sent in walls if wall is not None]

    # ---- time mapping ----------------------------------------------------------------------------------------
    def realtime_factor(self) -> float:
        """Sim seconds per wall second over this episode's /clock publications (NaN before two of them)."""
        with self._lock:
            if len(self._clock) < 2 or self._clock[-1][1] <= self._clock[0][1]:
                return float("nan")
            return (self._clock[-1][0] - self._clock[0][0]) / (self._clock[-1][1] - self._clock[0][1])

    def _sim_now(self) -> float:
        """The latest sim time the simulator published [s] (0 before its first /clock): the report's time axis."""
        with self._lock:
            return self._clock[-1][0] * 1e-9 if self._clock else 0.0

    def _wall_now(self) -> int:
        """Now on the system clock [ns], the clock of DDS's source and reception timestamps."""
        return time.time_ns()

    def sim_to_wall(self, sim_ns: int, window_ns: int = 250_000_000) -> int | None:
        """System time [ns] at which sim time `sim_ns` was due (see module docstring); None outside the /clock data.

        Over the /clock publications within `window_ns` of `sim_ns`, and at least the two around it (a /clock gap
        longer than the window, e.g. best-effort drops under load): the pace (wall per sim second) between the first
        and last of them, and the earliest publication offset against that pace.
        """
        with self._lock:
            if not self._clock or not self._clock[0][0] <= sim_ns <= self._clock[-1][0]:
                return None
            at = bisect.bisect_left(self._clock, (sim_ns, -1))
            lo = min(bisect.bisect_left(self._clock, (sim_ns - window_ns, -1)), max(at - 1, 0))
            hi = max(bisect.bisect_right(self._clock, (sim_ns + window_ns, 2**63)), at + 1)
            near = np.array(self._clock[lo:hi], dtype=np.int64)
        if len(near) < 2 or near[-1, 0] == near[0, 0]:
            return int(near[-1, 1])
        s0, w0 = near[0]
        sim, wall = (near[:, 0] - s0).astype(np.float64), (near[:, 1] - w0).astype(np.float64)  # exact in float64
        pace = wall[-1] / sim[-1]
        return int(w0 + round(pace * (sim_ns - s0) + np.min(wall - pace * sim)))

    def _t(self, sim_ns: int) -> float:
        return sim_ns * 1e-9

    # ---- callbacks ---------------------------------------------------------------------------------------
    @staticmethod
    def _stamp(info: dict, key: str) -> int:
        """A DDS timestamp of the message [system ns]; now when the middleware gives none (0)."""
        return int(info.get(key) or 0) or time.time_ns()

    def _on_clock(self, msg: Clock, info: dict) -> None:
        sim_ns = stamp_to_ns(msg.clock)
        sent = self._stamp(info, "source_timestamp")
        with self._lock:
            if not self._clock or sim_ns > self._clock[-1][0]:
                self._clock.append((sim_ns, sent))
            elif sim_ns < self._clock[-1][0]:  # simulator reset: new episode time base
                self._clock = [(sim_ns, sent)]

    def _on_gt(self, msg: SimGroundTruth) -> None:
        t_ns = stamp_to_ns(msg.header.stamp)
        names = list(msg.body_names)
        poses = {n: p for n, p in zip(names, msg.body_poses, strict=False)}
        twists = {n: tw for n, tw in zip(names, msg.body_twists, strict=False)}
        robot = next((n for n in ROBOT_BODIES if n in poses), names[0] if names else None)
        people = [n for n in names if n.startswith(PERSON_PREFIXES)]
        t = self._t(t_ns)
        with self._lock:
            self.latest_gt = msg
            if robot is not None:
                p = poses[robot]
                yaw = quaternion_to_yaw(p.orientation)
                tw = twists.get(robot)
                # world-frame twist: the forward speed is its projection on the heading
                v = float(np.cos(yaw) * tw.linear.x + np.sin(yaw) * tw.linear.y) if tw is not None else 0.0
                w = float(tw.angular.z) if tw is not None else 0.0
                self.log.robot.append((t, p.position.x, p.position.y, yaw))
                self._gt_times.append(t_ns)
                self._gt_robot.append(np.array([p.position.x, p.position.y, yaw, v, w]))
                self._gt_people.append(np.array([[poses[n].position.x, poses[n].position.y] for n in people])
                                       .reshape(-1, 2))
            for n in people:
                self.log.people.setdefault(n, []).append((t, poses[n].position.x, poses[n].position.y))
            clearance = float(msg.min_person_clearance_m)
            if people and robot is not None and abs(clearance) < NO_PERSON_M:  # not the "nobody near" sentinel
                self.log.clearance.append((t, clearance))

    def _on_cmd(self, msg: Twist, info: dict) -> None:
        wall = self._stamp(info, "received_timestamp")
        t = self._sim_now()  # a Twist has no stamp: the sim time it arrived at, the time axis of every panel
        with self._lock:
            self._cmds.append((wall, msg.linear.x, msg.angular.z))
            self._cmd_sent.append(int(info["source_timestamp"]))
            self.log.speed.append((t, msg.linear.x, self._actual_speed))

    def _on_odom(self, msg: Odometry) -> None:
        self._actual_speed = float(np.hypot(msg.twist.twist.linear.x, msg.twist.twist.linear.y))

    def _on_lidar(self, data: bytes, info: dict) -> None:
        sec, nsec = _HEADER_STAMP.unpack_from(data, 4)
        with self._lock:
            self._lidar.append((sec * 1_000_000_000 + nsec, self._stamp(info, "source_timestamp"),
                                self._stamp(info, "received_timestamp")))

    def _on_obstacles(self, msg: ObstacleArray, info: dict) -> None:
        rx = self._stamp(info, "received_timestamp")
        stamp_ns = stamp_to_ns(msg.header.stamp)
        wall = self.sim_to_wall(stamp_ns)
        if wall is not None:
            self.log.add_latency("perception_e2e_ms", (rx - wall) * 1e-6)
        pose = self._robot_at(stamp_ns)
        if pose is None:
            return
        x, y, yaw = pose[:3]
        c, s = np.cos(yaw), np.sin(yaw)
        with self._lock:
            for o in msg.obstacles:
                ox, oy = o.pose.position.x, o.pose.position.y
                self.log.obstacles.append((self._t(stamp_ns), x + c * ox - s * oy, y + s * ox + c * oy,
                                           int(o.classification)))

    def _on_chunk(self, msg: ActionChunk, info: dict) -> None:
        self.log.add_latency("policy_inference_ms", float(msg.inference_latency_ms))
        names = list(msg.action_names)
        if (not {"linear_x", "angular_z"} <= set(names) or msg.horizon == 0
                or len(msg.values) != msg.horizon * len(names)):
            return
        values = np.asarray(msg.values).reshape(msg.horizon, len(names))[:, [names.index("linear_x"),
                                                                            names.index("angular_z")]]
        times = stamp_to_ns(msg.start_time) * 1e-9 + float(msg.dt) * np.arange(msg.horizon)
        with self._lock:
            self._chunks.append(Reference(times, values))
            self._chunk_rx.append(self._stamp(info, "received_timestamp"))

    def _on_status(self, msg: CorrectionStatus, info: dict) -> None:
        with self._lock:
            self.latest_status = msg
            self._status.append((self._stamp(info, "source_timestamp"), stamp_to_ns(msg.header.stamp),
                                 int(msg.flags), stamp_to_ns(msg.obstacles_stamp)))
            self.log.interventions.append((self._t(stamp_to_ns(msg.header.stamp)), int(msg.flags)))
        self.log.add_latency("correction_cycle_ms", float(msg.cycle_time_ms))

    # ---- analysis -------------------------------------------------------------------------------------------
    def _robot_at(self, sim_ns: int) -> np.ndarray | None:
        with self._lock:
            if not self._gt_times:
                return None
            i = min(bisect.bisect_left(self._gt_times, sim_ns), len(self._gt_times) - 1)
            return self._gt_robot[i]

    def _nominal_at(self, stamp_ns: int, max_age_s: float = 0.5) -> tuple[float, float] | None:
        """The policy's command at sim time `stamp_ns`, from the newest chunk received by then (None: none)."""
        wall = self.sim_to_wall(stamp_ns)
        with self._lock:
            k = bisect.bisect_right(self._chunk_rx, wall) if wall is not None else 0
            ref = self._chunks[k - 1] if k else None
        t = stamp_ns * 1e-9
        if ref is None or t > ref.end + max_age_s:
            return None
        value, _ = ref.sample(t)
        return float(value[0]), float(value[1])

    def _person_in_path(self, i: int, nominal: tuple[float, float] | None = None) -> bool:
        """Whether a person is in the robot's swept path at ground-truth sample i (`in_swept_path`).

        The path is that of the `nominal` (linear, angular) command, reached from the robot's ground-truth motion;
        None: the robot keeps its present motion.
        """
        x, y, yaw, v, w = self._gt_robot[i]
        people = self._gt_people[i]
        if people.size == 0:
            return False
        d = people - [x, y]
        c, s = np.cos(yaw), np.sin(yaw)
        local = np.column_stack((c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]))
        return in_swept_path(self._corrector, *(nominal or (v, w)), local, np.full(len(local), self._person_radius),
                             start=(v, w))

    def _frame_in_path(self, stamp_ns: int, times: list[int], min_speed: float) -> tuple[bool, bool]:
        """(a person in the swept path, the robot moving) at a LiDAR frame's stamp, computed once per frame.

        Callers poll the latencies every 0.1 s: re-sweeping every frame of the episode each time cost the bench's
        own process a growing share of a core as an episode went on, beside the stack it measures.
        """
        key = (stamp_ns, min_speed)
        if key in self._frame_state:
            return self._frame_state[key]
        j = bisect.bisect_left(times, stamp_ns)
        i = min(j, len(times) - 1)
        state = (self._person_in_path(i, self._nominal_at(stamp_ns)), abs(self._gt_robot[i][3]) >= min_speed)
        if j < len(times):  # ground truth at or after the stamp is in: final
            self._frame_state[key] = state
        return state

    def reaction_latencies_ms(self, min_speed: float = 0.2, window_s: float = 1.0) -> list[float]:
        """E2E reaction latency per person-enters-path event (see module docstring)."""
        with self._lock:
            frames, status, times = list(self._lidar), list(self._status), list(self._gt_times)
        out: list[float] = []
        not_needed = slow = 0
        inside = False
        for stamp_ns, _sent, _rx in frames:
            if not times:
                break
            now_inside, moving = self._frame_in_path(stamp_ns, times, min_speed)
            slow += now_inside and not inside and not moving
            if now_inside and not inside and moving:
                wall = self.sim_to_wall(stamp_ns)
                if wall is not None:
                    corrected = [sent for sent, stamp, flags, used in status
                                 if flags & OBSTACLE_REACTION and used >= stamp_ns and sent >= wall
                                 and stamp - stamp_ns <= window_s * 1e9]
                    if corrected:
                        out.append((min(corrected) - wall) * 1e-6)
                    else:
                        not_needed += 1
            inside = now_inside
        self.reactions_not_needed = not_needed
        self.path_entries_slow = slow
        return out

    def mark_stopping(self) -> None:
        """The stack is about to be stopped: the limit checks judge the commands received until now.

        A corrector told to stop sends a zero command at once (a moving base's last command is never left to coast
        on), a step no acceleration limit allows; it ends the run rather than belonging to it.
        """
        with self._lock:
            self._judged_cmds = len(self._cmds)

    def limit_violations(self, max_linear: float, max_angular: float, max_acc: float, max_alpha: float,
                         period_s: float, tol: float = 1.05) -> int:
        """Commands on the wire beyond the base's velocity limits, or changing faster than its acceleration limits.

        The change between consecutive commands is judged over the time between their sending (DDS source
        timestamps; DDS may deliver two commands back to back), and over at least one control period (`period_s`):
        the corrector limits the change per period. Commands after `mark_stopping` are not judged.
        """
        with self._lock:
            cmds = np.array(self._cmds[:self._judged_cmds], dtype=float).reshape(-1, 3)
            sent = np.array(self._cmd_sent[:self._judged_cmds], dtype=float)
        if len(cmds) == 0:
            return 0
        bad = (np.abs(cmds[:, 1]) > max_linear * tol + 1e-6) | (np.abs(cmds[:, 2]) > max_angular * tol + 1e-6)
        dt = np.maximum(np.diff(sent) * 1e-9, period_s)
        bad[1:] |= np.abs(np.diff(cmds[:, 1])) > max_acc * dt * tol + 1e-4
        bad[1:] |= np.abs(np.diff(cmds[:, 2])) > max_alpha * dt * tol + 1e-4
        return int(bad.sum())

    def state(self) -> dict[str, Any]:
        """Latest values for the live progress line."""
        with self._lock:
            gt, status = self.latest_gt, self.latest_status
        return {"gt": gt, "status": status, "speed": self._actual_speed}

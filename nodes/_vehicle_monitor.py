"""Run monitor for `physai demo vehicle`: the AMR monitor's ground truth, latencies and report log, plus the car.

The car is commanded on /ackermann_cmd (AckermannDriveStamped), not /cmd_vel: this monitor records those commands
(speed and steering angle) for the speed timeline and checks them against the car's limits on the wire (speed,
steering angle, steering rate, acceleration, braking), judging rates over the commands' own header stamps (the
time base the corrector limits them on), not over their arrival here, which DDS and this process's scheduling
bunch and delay. The lead car's ground-truth path goes on the map, and the
gap from the front bumper to its rear at the end of the run is reported (the task: stop 1-10 m behind it).
"""

from __future__ import annotations

import numpy as np
from ackermann_msgs.msg import AckermannDriveStamped
from physical_ai_stack.msg import SimGroundTruth
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from physical_ai.convert import stamp_to_ns
from physical_ai_nodes._run_monitor import RunMonitor

LEAD_BODY = "obstacle_car"
FRONT_M = 3.65        # base_link (rear axle) to the front bumper [m] (physical_ai.sim.scenarios.VehicleLane)
LEAD_HALF_LENGTH_M = 2.2
# Every command, not only the latest (the corrector publishes reliable, depth 1): a rate check across commands this
# process missed while busy would compare values further apart than consecutive ones.
ALL_COMMANDS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=500, reliability=ReliabilityPolicy.RELIABLE)


class VehicleRunMonitor(RunMonitor):
    """`RunMonitor` for the Ackermann car (see module docstring)."""

    def __init__(self, ackermann_topic: str = "ackermann_cmd", namespace: str = "",
                 clock_topic: str = "/clock") -> None:
        super().__init__("vehicle", namespace=namespace, clock_topic=clock_topic)
        self._stamps: list[int] = []  # header stamp of each command in self._cmds [ns]
        self.lead_gap_m = float("nan")
        self.create_subscription(AckermannDriveStamped, ackermann_topic, self._on_ackermann, ALL_COMMANDS_QOS)

    def _on_ackermann(self, msg: AckermannDriveStamped) -> None:
        wall = self._wall_now()
        t = self._sim_now()
        with self._lock:
            # (wall ns, speed, steering) in the base class's (wall, v, w) layout: the reaction analysis reads v
            self._cmds.append((wall, float(msg.drive.speed), float(msg.drive.steering_angle)))
            self._stamps.append(stamp_to_ns(msg.header.stamp) or wall)
            self.log.speed.append((t, float(msg.drive.speed), self._actual_speed))

    def _on_gt(self, msg: SimGroundTruth) -> None:
        super()._on_gt(msg)
        names = list(msg.body_names)
        if LEAD_BODY not in names or "base_link" not in names:
            return
        lead = msg.body_poses[names.index(LEAD_BODY)].position
        ego = msg.body_poses[names.index("base_link")].position
        t = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        with self._lock:
            self.log.people.setdefault(LEAD_BODY, []).append((t, lead.x, lead.y))
            # straight-line approximation of the along-lane gap (the lead car stops on gentle curvature)
            self.lead_gap_m = float(np.hypot(lead.x - ego.x, lead.y - ego.y) - FRONT_M - LEAD_HALF_LENGTH_M)

    @property
    def commands_received(self) -> int:
        """Ackermann commands seen on the wire so far."""
        with self._lock:
            return len(self._cmds)

    def vehicle_limit_violations(self, max_speed: float, max_steer: float, max_steer_rate: float, max_acc: float,
                                 max_decel: float, period_s: float, tol: float = 1.05) -> int:
        """Ackermann commands on the wire beyond the car's limits, or changing faster than its rate limits.

        The change between consecutive commands is judged over their stamp difference, at least one control period
        (the corrector may issue two commands within one tick of the simulated clock). Commands after
        `mark_stopping` are not judged.
        """
        with self._lock:
            cmds = np.array(self._cmds[:self._judged_cmds], dtype=float).reshape(-1, 3)
            stamps = np.array(self._stamps[:self._judged_cmds], dtype=float)
        if len(cmds) == 0:
            return 0
        speed, steer = cmds[:, 1], cmds[:, 2]
        bad = (speed > max_speed * tol + 1e-6) | (speed < -1e-6) | (np.abs(steer) > max_steer * tol + 1e-6)
        dt = np.maximum(np.abs(np.diff(stamps)) * 1e-9, period_s)
        dv = np.diff(speed)
        bad[1:] |= (dv > max_acc * dt * tol + 1e-4) | (-dv > max_decel * dt * tol + 1e-4)
        bad[1:] |= np.abs(np.diff(steer)) > max_steer_rate * dt * tol + 1e-4
        return int(bad.sum())

"""Vehicle correction: pure-pursuit path tracking, obstacle-aware speed, steering-rate and lateral-accel limits.

Steering: pure pursuit on the lane/path (odom frame) when one is known, else the policy's steering angle; speed:
the policy's (or the cruise speed), capped by the lateral-acceleration limit at the commanded curvature and by a
following rule for obstacles in the lane ahead (stop `min_gap_m` behind a stopped obstacle, follow a slower one at
`min_gap_m + time_gap_s * its speed`), with braking at most `max_decel`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from physical_ai.control.chunks import ChunkCheck, ChunkPolicy, Reference, check_chunk
from physical_ai.control.flags import Flag

NAMES = ("steering_angle", "speed")


@dataclasses.dataclass(frozen=True)
class VehicleConfig:
    """Vehicle geometry, limits and tuning (SI units). base_link is the rear axle centre."""

    wheelbase: float = 2.7
    front_overhang: float = 3.7   # rear axle to front bumper [m]
    half_width: float = 0.95
    max_steer: float = 0.5
    max_steer_rate: float = 0.6
    max_lateral_acc: float = 3.0
    max_speed: float = 15.0
    max_acc: float = 2.0
    max_decel: float = 5.0
    cruise_speed: float = 8.0
    min_gap_m: float = 2.5
    time_gap_s: float = 1.5
    lane_half_width: float = 1.75
    lookahead_min_m: float = 4.0
    lookahead_gain_s: float = 0.6
    steering_correction_threshold: float = 0.05
    max_age_s: float = 0.5
    max_future_s: float = 0.5
    period_s: float = 0.01


@dataclasses.dataclass
class VehicleCommand:
    """One cycle's command and why it differs from the nominal one."""

    steering_angle: float
    speed: float
    flags: int
    reasons: list[str]
    speed_scale: float
    min_gap_m: float
    time_to_collision_s: float


class VehicleCorrector:
    """Ackermann commands that track a path and keep their distance to obstacles ahead."""

    def __init__(self, config: VehicleConfig) -> None:
        self.config = config
        c = config
        self._policy = ChunkPolicy(NAMES, np.array([-c.max_steer, -c.max_speed]), np.array([c.max_steer, c.max_speed]),
                                   c.max_age_s, c.max_future_s)
        self._ref: Reference | None = None
        self._last_start: float | None = None
        self._path: np.ndarray | None = None
        self._pose: np.ndarray | None = None
        self._speed_now = 0.0
        self._obstacles = (np.zeros((0, 2)), np.zeros(0), np.zeros((0, 2)))
        self._out = np.zeros(2)  # steering, speed

    def submit_chunk(self, names: Sequence[str], values: np.ndarray, start_s: float, dt: float, horizon: int,
                     now_s: float) -> ChunkCheck:
        """A (steering_angle, speed) chunk from the policy."""
        check = check_chunk(self._policy, names, values, start_s, dt, horizon, now_s, self._last_start)
        if check.reference is not None:
            self._ref = check.reference
            self._last_start = check.reference.start
        return check

    def restart_clock(self) -> None:
        """Forget the chunk timed on the old clock (ROS time jumped back): the car brakes until a new one arrives."""
        self._ref, self._last_start = None, None

    def set_path(self, xy: np.ndarray | None) -> None:
        """Path/lane centre (N, 2) in the odom frame, in driving order; None to steer by the policy alone."""
        if xy is None:
            self._path = None
            return
        xy = np.asarray(xy, float).reshape(-1, 2)
        self._path = xy[np.all(np.isfinite(xy), axis=1)] if len(xy) >= 2 else None

    def set_pose(self, x: float, y: float, yaw: float, speed: float) -> None:
        """Pose of base_link in the odom frame and forward speed (odometry)."""
        if np.all(np.isfinite([x, y, yaw, speed])):
            self._pose = np.array([x, y, yaw])
            self._speed_now = float(speed)

    def set_obstacles(self, centres: np.ndarray, radii: np.ndarray, velocities: np.ndarray) -> None:
        """Obstacles in the base_link frame: centres (M, 2), radii (M,), velocities (M, 2)."""
        centres = np.asarray(centres, float).reshape(-1, 2)
        radii = np.asarray(radii, float).reshape(-1)
        velocities = np.asarray(velocities, float).reshape(-1, 2)
        ok = np.all(np.isfinite(centres), axis=1) & np.isfinite(radii) & np.all(np.isfinite(velocities), axis=1)
        self._obstacles = (centres[ok], radii[ok], velocities[ok])

    def _local_path(self) -> np.ndarray | None:
        if self._path is None or self._pose is None:
            return None
        c, s = np.cos(self._pose[2]), np.sin(self._pose[2])
        d = self._path - self._pose[:2]
        return np.column_stack((c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]))

    def pure_pursuit(self, local: np.ndarray, speed: float) -> float:
        """Steering angle towards the path point one lookahead distance ahead (path in the base_link frame)."""
        c = self.config
        lookahead = max(c.lookahead_min_m, c.lookahead_gain_s * abs(speed))
        nearest = int(np.argmin(np.hypot(local[:, 0], local[:, 1])))
        ahead = local[nearest:]
        far = np.flatnonzero(np.hypot(ahead[:, 0], ahead[:, 1]) >= lookahead)
        tx, ty = ahead[far[0]] if far.size else ahead[-1]
        d2 = max(tx * tx + ty * ty, 1e-6)
        return float(np.arctan(2.0 * c.wheelbase * ty / d2))

    def lane_gap(self, local: np.ndarray | None) -> tuple[float, float]:
        """(free distance from the front bumper to the nearest obstacle in the lane ahead, its forward speed)."""
        c = self.config
        centres, radii, vel = self._obstacles
        if not centres.shape[0]:
            return float("inf"), 0.0
        if local is not None and len(local) >= 2:
            # Lateral offset of each obstacle from the path (nearest path vertex; the path is densely sampled).
            d = np.hypot(centres[:, None, 0] - local[None, :, 0], centres[:, None, 1] - local[None, :, 1])
            lateral = d.min(axis=1)
        else:
            lateral = np.abs(centres[:, 1])
        in_lane = (lateral - radii < c.lane_half_width) & (centres[:, 0] > 0.0)
        if not in_lane.any():
            return float("inf"), 0.0
        gap = centres[:, 0] - radii - c.front_overhang
        k = int(np.argmin(np.where(in_lane, gap, np.inf)))
        return float(gap[k]), float(max(vel[k, 0], 0.0))

    def step(self, now_s: float, stop_reasons: Sequence[str] = ()) -> VehicleCommand:
        """One control period: (steering angle, speed) with flags and reasons."""
        c = self.config
        flags, reasons = 0, list(stop_reasons)
        steer_nominal, speed_nominal = float(self._out[0]), c.cruise_speed
        if self._ref is not None:
            if now_s <= self._ref.end + c.max_age_s:
                v, _ = self._ref.sample(now_s)
                steer_nominal, speed_nominal = float(v[0]), float(v[1])
            else:
                speed_nominal = 0.0
                reasons.append("chunk exhausted: stopping")
        local = self._local_path()
        steer = steer_nominal
        if local is not None:
            steer = self.pure_pursuit(local, max(self._speed_now, self._out[1]))
            if self._ref is not None and abs(steer - steer_nominal) > c.steering_correction_threshold:
                flags |= Flag.STEERING_CORRECTED
                reasons.append(f"steering corrected to the path by {steer - steer_nominal:+.3f} rad")
        elif self._ref is None:
            speed_nominal = 0.0
            reasons.append("no path and no command: stopping")
        speed = 0.0 if stop_reasons else max(speed_nominal, 0.0)
        gap, lead_speed = self.lane_gap(local)
        ttc = float("inf")
        if np.isfinite(gap):
            closing = max(self._speed_now - lead_speed, 0.0)
            ttc = gap / closing if closing > 1e-6 else float("inf")
            margin = c.min_gap_m + c.time_gap_s * lead_speed
            # Largest speed from which braking at max_decel (after one period) ends `margin` behind the obstacle.
            room = max(gap - margin - self._out[1] * c.period_s, 0.0)
            v_safe = float(np.sqrt(2.0 * c.max_decel * 0.8 * room + lead_speed * lead_speed))
            if v_safe < speed:
                speed = v_safe
                flags |= Flag.OBSTACLE_STOP if v_safe < 0.05 else Flag.OBSTACLE_SLOWDOWN
                reasons.append(f"obstacle {gap:.1f} m ahead: speed {v_safe:.2f} m/s")
        scale = speed / speed_nominal if speed_nominal > 1e-6 else 0.0
        return self._limit(steer, speed, flags, reasons, scale, gap, ttc)

    def _limit(self, steer: float, speed: float, flags: int, reasons: list[str], scale: float, gap: float,
               ttc: float) -> VehicleCommand:
        c = self.config
        dt = c.period_s
        s = float(np.clip(steer, -c.max_steer, c.max_steer))
        ds = c.max_steer_rate * dt
        s_lim = float(np.clip(s, self._out[0] - ds, self._out[0] + ds))
        if s_lim != steer:
            flags |= Flag.LIMIT_POSITION if s != steer else Flag.LIMIT_VELOCITY
        curvature = abs(np.tan(s_lim)) / c.wheelbase
        v_lat = np.sqrt(c.max_lateral_acc / curvature) if curvature > 1e-6 else np.inf
        v = float(min(speed, c.max_speed, v_lat))
        if v < speed - 1e-9:
            flags |= Flag.LIMIT_ACCELERATION
            reasons.append(f"lateral acceleration limit: speed {v:.2f} m/s")
        v_lim = float(np.clip(v, self._out[1] - c.max_decel * dt, self._out[1] + c.max_acc * dt))
        v_lim = max(v_lim, 0.0)
        self._out = np.array([s_lim, v_lim])
        return VehicleCommand(s_lim, v_lim, flags, reasons, float(np.clip(scale, 0.0, 1.0)), gap, ttc)

"""Driver command interfaces of the simulated robots, with the validation a real driver does.

Every command goes through these classes: a bad one raises `CommandRejected` with a short reason key (counted by
the node in /diagnostics) and leaves the robot holding its last safe target. Times are integers in ns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NS = 1_000_000_000


class CommandRejected(ValueError):
    """A command refused by a driver; `reason` is a short key such as "nan" or "out_of_range"."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def check_finite(values: np.ndarray, what: str) -> np.ndarray:
    """Return `values` as float64, or reject when any is NaN or infinite."""
    arr = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise CommandRejected("nan", f"{what} contains NaN or inf")
    return arr


def check_length(values: np.ndarray, expected: int, what: str) -> None:
    """Reject a vector of the wrong length."""
    if len(values) != expected:
        raise CommandRejected("wrong_length", f"{what} has {len(values)} values, expected {expected}")


def check_range(values: np.ndarray, lo: np.ndarray, hi: np.ndarray, what: str, names: list[str]) -> None:
    """Reject values outside [lo, hi] (element-wise), naming the first offender."""
    bad = np.flatnonzero((values < lo) | (values > hi))
    if bad.size:
        i = int(bad[0])
        raise CommandRejected("out_of_range", f"{what} {names[i]}={values[i]:.4g} outside [{lo[i]:.4g}, {hi[i]:.4g}]")


def check_stamp(stamp_ns: int, now_ns: int, max_age_s: float, max_future_s: float) -> None:
    """Reject a stamped command older than `max_age_s` or further ahead than `max_future_s`; 0 means "now"."""
    if stamp_ns == 0:
        return
    age = (now_ns - stamp_ns) / NS
    if age > max_age_s:
        raise CommandRejected("stale_stamp", f"stamp is {age:.3f} s in the past (limit {max_age_s} s)")
    if -age > max_future_s:
        raise CommandRejected("future_stamp", f"stamp is {-age:.3f} s in the future (limit {max_future_s} s)")


@dataclass
class JointLimits:
    """Position and velocity limits of a set of joints, in their order."""

    names: list[str]
    lower: np.ndarray
    upper: np.ndarray
    max_velocity: np.ndarray


class JointTrajectoryFollower:
    """Executes joint trajectories like ros2_control's joint_trajectory_controller.

    A new trajectory replaces the old one from its start time; the current command state is inserted as the
    first point, segments are cubic Hermite when velocities are given and linear otherwise, and after the last
    point the final positions are held. Joints a trajectory leaves out hold their current targets.
    """

    def __init__(self, limits: JointLimits, initial: np.ndarray) -> None:
        self.limits = limits
        self._index = {n: i for i, n in enumerate(limits.names)}
        self._hold = np.array(initial, dtype=float)
        self._times: np.ndarray | None = None  # [ns], absolute, first = start
        self._pos: np.ndarray | None = None  # (K, n)
        self._vel: np.ndarray | None = None  # (K, n) or None

    def hold(self, positions: np.ndarray) -> None:
        """Drop any trajectory and hold `positions` (used by streaming commands and resets)."""
        self._hold = np.array(positions, dtype=float)
        self._times = self._pos = self._vel = None

    def set_trajectory(self, joint_names: list[str], times_s: list[float], positions: list[list[float]],
                       velocities: list[list[float]] | None, start_ns: int, now_ns: int) -> None:
        """Validate and accept a trajectory (points relative to `start_ns`; 0 = now)."""
        if not joint_names:
            raise CommandRejected("empty", "trajectory names no joints")
        unknown = [n for n in joint_names if n not in self._index]
        if unknown:
            raise CommandRejected("unknown_joint", f"unknown joint names {unknown}")
        if len(set(joint_names)) != len(joint_names):
            raise CommandRejected("duplicate_joint", f"duplicate joint names in {joint_names}")
        if not positions:
            raise CommandRejected("empty", "trajectory has no points")
        cols = [self._index[n] for n in joint_names]
        t = check_finite(np.asarray(times_s, dtype=float), "time_from_start")
        if np.any(np.diff(t) <= 0) or t[0] < 0:
            raise CommandRejected("bad_timing", "time_from_start must be >= 0 and strictly increasing")
        for p in positions:
            check_length(p, len(joint_names), "point positions")
        pos = check_finite(np.asarray(positions, dtype=float), "positions")
        vel = None
        if velocities is not None and any(len(v) for v in velocities):
            for v in velocities:
                check_length(v, len(joint_names), "point velocities")
            vel = check_finite(np.asarray(velocities, dtype=float), "velocities")
        lim = self.limits
        for p in pos:
            check_range(p, lim.lower[cols], lim.upper[cols], "position", joint_names)
        if vel is not None:
            vmax = lim.max_velocity[cols]
            for v in vel:
                check_range(v, -vmax, vmax, "velocity", joint_names)
        start = now_ns if start_ns == 0 else start_ns
        current = self.sample(max(start, now_ns))
        full_pos = np.tile(current, (len(t) + 1, 1))
        full_pos[1:, cols] = pos
        full_vel = None
        if vel is not None:
            full_vel = np.zeros_like(full_pos)
            full_vel[1:, cols] = vel
        # implied speed of each segment must be feasible
        times = np.concatenate([[start], start + (t * NS).astype(np.int64)])
        dt = np.diff(times) / NS
        seg = np.abs(np.diff(full_pos, axis=0))
        ok = dt > 0
        if np.any(seg[ok] > lim.max_velocity * dt[ok, None] * 1.5 + 1e-6):
            raise CommandRejected("too_fast", "trajectory needs more than 1.5x the joint velocity limits")
        if np.any(seg[~ok] > 1e-6):
            raise CommandRejected("too_fast", "first point at time 0 differs from the current state")
        self._hold = current
        self._times, self._pos, self._vel = times, full_pos, full_vel

    def sample(self, now_ns: int) -> np.ndarray:
        """Commanded positions at `now_ns`."""
        if self._times is None:
            return self._hold.copy()
        times, pos = self._times, self._pos
        if now_ns <= times[0]:
            return pos[0].copy()
        if now_ns >= times[-1]:
            return pos[-1].copy()
        k = int(np.searchsorted(times, now_ns, side="right")) - 1
        h = (times[k + 1] - times[k]) / NS
        s = (now_ns - times[k]) / NS / h
        if self._vel is None:
            return pos[k] + s * (pos[k + 1] - pos[k])
        v0, v1 = self._vel[k], self._vel[k + 1]
        h00, h10 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s
        h01, h11 = -2 * s**3 + 3 * s**2, s**3 - s**2
        return h00 * pos[k] + h10 * h * v0 + h01 * pos[k + 1] + h11 * h * v1

    def done(self, now_ns: int) -> bool:
        """True when no trajectory is running."""
        return self._times is None or now_ns >= self._times[-1]


class JointStreamer:
    """Float64MultiArray streaming (forward position or velocity controller) with a command timeout."""

    def __init__(self, limits: JointLimits, mode: str, timeout_s: float) -> None:
        if mode not in ("position", "velocity"):
            raise ValueError(f"streaming mode must be 'position' or 'velocity', got {mode!r}")
        self.limits, self.mode, self.timeout_s = limits, mode, timeout_s
        self._velocity = np.zeros(len(limits.names))
        self._last_ns = 0

    def accept(self, values: list[float], now_ns: int) -> np.ndarray:
        """Validate a command; return positions (position mode) or store velocities (velocity mode)."""
        n = len(self.limits.names)
        check_length(values, n, "command")
        arr = check_finite(np.asarray(values, dtype=float), "command")
        if self.mode == "position":
            check_range(arr, self.limits.lower, self.limits.upper, "position", self.limits.names)
        else:
            check_range(arr, -self.limits.max_velocity, self.limits.max_velocity, "velocity", self.limits.names)
            self._velocity = arr
            self._last_ns = now_ns
        return arr

    def integrate(self, target: np.ndarray, dt: float, now_ns: int) -> np.ndarray:
        """Advance a position target by the streamed velocity (zero after the timeout), clamped to limits."""
        if (now_ns - self._last_ns) / NS > self.timeout_s:
            self._velocity[:] = 0.0
        return np.clip(target + self._velocity * dt, self.limits.lower, self.limits.upper)


class RateLimitedCommand:
    """A vector command tracked with per-axis rate limits and a timeout to a safe value (a base controller)."""

    def __init__(self, names: list[str], lower: np.ndarray, upper: np.ndarray, max_rate_up: np.ndarray,
                 max_rate_down: np.ndarray, timeout_s: float, safe: np.ndarray) -> None:
        self.names = names
        self.lower, self.upper = np.asarray(lower, float), np.asarray(upper, float)
        self.max_rate_up, self.max_rate_down = np.asarray(max_rate_up, float), np.asarray(max_rate_down, float)
        self.timeout_s, self.safe = timeout_s, np.asarray(safe, float)
        self.target = self.safe.copy()
        self.current = self.safe.copy()
        self._last_ns: int | None = None

    def accept(self, values: list[float], now_ns: int) -> None:
        """Validate and store a new target."""
        check_length(values, len(self.names), "command")
        arr = check_finite(np.asarray(values, dtype=float), "command")
        check_range(arr, self.lower, self.upper, "command", self.names)
        self.target = arr
        self._last_ns = now_ns

    def reset(self, value: np.ndarray | None = None) -> None:
        """Stop: current and target back to `value` (default the safe value)."""
        self.current = self.safe.copy() if value is None else np.asarray(value, float).copy()
        self.target = self.current.copy()
        self._last_ns = None

    def step(self, dt: float, now_ns: int) -> np.ndarray:
        """Move `current` toward the target (or the safe value after a timeout) within the rate limits."""
        if self._last_ns is None or (now_ns - self._last_ns) / NS > self.timeout_s:
            self.target = self.safe.copy()
        delta = self.target - self.current
        # speeding up (|x| growing) uses the "up" limit, slowing down the "down" limit
        growing = np.abs(self.target) > np.abs(self.current)
        rate = np.where(growing, self.max_rate_up, self.max_rate_down)
        self.current = self.current + np.clip(delta, -rate * dt, rate * dt)
        return self.current.copy()

"""Arm execution: blends action chunks into one jerk-limited command stream and slows or stops for obstacles.

Every cycle the reference (the latest chunk, sampled at the reference time) gives a desired joint velocity:
its slope a little ahead plus a proportional pull towards its position. ruckig plans a time-optimal jerk-limited
change from the *commanded* state (position, velocity, acceleration of the previous cycle) to that velocity, and
the first step of the plan is the command. A new chunk only changes the desired velocity, so position, velocity
and acceleration stay continuous at chunk boundaries and the acceleration/jerk limits hold by construction
(ruckig's guarantee). Velocity limits hold because the desired velocity is clamped and ruckig's velocity profile
to it is monotone; position limits hold because the desired velocity is capped by what the joint can still brake
from before the limit, with a conservative jerk-limited stopping check as the last resort. Obstacles scale the
speed through a control-barrier-function condition on the clearance (see `_obstacle_scale`).

(Tracking a moving target *state* with ruckig's position interface was tried first: time-optimal profiles to a
state that keeps moving lag and oscillate, up to 0.17 rad on a slow sine with 7 joints; velocity tracking stays
within 4 mrad.)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from ruckig import ControlInterface, InputParameter, OutputParameter, Result, Ruckig, Synchronization

from physical_ai.control.arm_collision import CapsuleArm, ObstacleSpheres
from physical_ai.control.chunks import ChunkCheck, ChunkPolicy, Reference, check_chunk, check_points
from physical_ai.control.flags import Flag
from physical_ai.control.limits import JointLimits

# Plain ints in the 1 kHz path (IntFlag arithmetic runs Python-level enum code).
_EXTRAPOLATING = int(Flag.EXTRAPOLATING)
_OBSTACLE_STOP = int(Flag.OBSTACLE_STOP)
_OBSTACLE_SLOWDOWN = int(Flag.OBSTACLE_SLOWDOWN)
_LIMIT_POSITION = int(Flag.LIMIT_POSITION)
_LIMIT_VELOCITY = int(Flag.LIMIT_VELOCITY)
_LIMIT_ACCELERATION = int(Flag.LIMIT_ACCELERATION)
_LIMIT_JERK = int(Flag.LIMIT_JERK)
_TRACKING_ERROR = int(Flag.TRACKING_ERROR)
MAX_STEP_PERIODS = 50  # one cycle advances the command by at most this many periods of elapsed time
# A long cycle is integrated in sub-steps of at most this length, each checked against the position limits: the
# braking check assumes the state it sees is at most one sub-step old (one 10-50 ms step overshot by 12-19 mrad).
MAX_SUBSTEP_S = 0.005


class _JointRow(NamedTuple):
    """One joint's limits as Python floats [rad, rad/s, rad/s², rad/s³]; lo/hi are the margin-inset limits."""

    lower: float
    upper: float
    lo: float
    hi: float
    vmax: float
    amax: float
    jmax: float
    stop_acc: float
    v_recover: float
    a_over_j: float
    reach: float  # farthest any admissible state (|v| <= vmax, |a| <= amax) travels in a sub-step and a full stop

    @classmethod
    def of(cls, lower: float, upper: float, lo: float, hi: float, vmax: float, amax: float, jmax: float,
           stop_acc: float, v_recover: float) -> _JointRow:
        """The row with its derived terms; `reach` bounds `_must_brake`'s lead for every h <= MAX_SUBSTEP_S."""
        h = MAX_SUBSTEP_S * (1.0 + 1e-6)
        speed = vmax + amax * amax / (2.0 * jmax)
        reach = vmax * h + 0.5 * amax * h * h + jmax * h ** 3 / 6.0 + speed * 2.0 * amax / jmax \
            + speed * speed / (2.0 * amax)
        return cls(lower, upper, lo, hi, vmax, amax, jmax, stop_acc, v_recover, amax / jmax, reach)


def _must_brake(r: _JointRow, q: float, v: float, a: float, desired: float, h: float) -> bool:
    """Must this joint brake now to be sure of stopping before its hard limit?

    True where the worst next step (full jerk towards a limit for h, when the desired velocity lies that way) could
    leave a state that a jerk-limited stop at full deceleration no longer halts before the limit (conservative on
    every term). A joint asked to move away from a limit it stands at is not held there.
    """
    if r.lower + r.reach < q < r.upper - r.reach and abs(v) <= r.vmax and abs(a) <= r.amax:
        return False  # no admissible state this far inside can reach a limit (the common case, checked cheaply)
    am, jm = r.amax, r.jmax
    # Towards the upper limit, then towards the lower one with the signs flipped.
    for sign, bound in ((1.0, r.upper), (-1.0, -r.lower)):
        vs, acc = sign * v, sign * a
        jerk = jm if sign * desired > vs else 0.0
        a1 = min(acc + jerk * h, am)
        v1 = min(vs + acc * h + 0.5 * jerk * h * h, r.vmax)
        ap = a1 if a1 > 0.0 else 0.0
        speed = (v1 if v1 > 0.0 else 0.0) + ap * ap / (2.0 * jm)
        lead = sign * q + vs * h + 0.5 * acc * h * h + jerk * (h ** 3 / 6.0) \
            + speed * (ap + am) / jm + speed * speed / (2.0 * am)
        if lead > bound:
            return True
    return False


@dataclasses.dataclass(frozen=True)
class ArmConfig:
    """Tuning of the arm corrector (SI units).

    Attributes:
        period_s: nominal control period [s]; each cycle advances by the time elapsed since the last (at most
            MAX_STEP_PERIODS periods).
        position_margin: targets are kept this far inside the position limits [rad or m].
        extrapolation_s: how long a late chunk's last velocity is continued before a smooth stop [s].
        lookahead_s: the velocity feed-forward is the reference slope this far ahead [s].
        tracking_gain: proportional pull towards the reference position [1/s] (above ~8 it oscillates with the
            default jerk limits).
        stop_deceleration_scale: fraction of each joint's acceleration limit used for controlled stops (0, 1].
        clearance_m: clearance to keep between arm capsules and obstacle spheres [m].
        slow_distance_m: beyond clearance + this, obstacles do not slow the arm [m].
        cbf_gamma: barrier decay rate γ in dh/dt >= -γ h [1/s].
        max_age_s / max_future_s: accepted chunk stamp window relative to now [s].
        gripper_range: (min, max) gripper opening [m]; gripper_max_speed [m/s].
        plausible_margin: a chunk with a joint target further than this outside the position limits is rejected
            as implausible, not clamped [rad].
        plausible_speed_scale: a chunk stepping a joint faster than this many times its velocity limit is rejected
            as implausible.
        reorder_window_s: chunks starting up to this long before the newest one are merged by stamp [s].
        recovery_speed_scale: a joint found beyond a position limit returns at most this fraction of its velocity
            limit (0, 1].
        tracking_error_rad / tracking_error_time_s: a measured joint further than this from the command [rad] for
            longer than this [s] is a tracking fault: a controlled stop, then the command restarts from the
            measured position.
    """

    period_s: float = 0.001
    position_margin: float = 0.02
    extrapolation_s: float = 0.1
    lookahead_s: float = 0.03
    tracking_gain: float = 5.0
    stop_deceleration_scale: float = 0.5
    clearance_m: float = 0.10
    slow_distance_m: float = 0.30
    cbf_gamma: float = 5.0
    max_age_s: float = 0.5
    max_future_s: float = 0.5
    gripper_range: tuple[float, float] = (0.0, 0.08)
    gripper_max_speed: float = 0.1
    plausible_margin: float = 0.5
    plausible_speed_scale: float = 3.0
    reorder_window_s: float = 0.1
    recovery_speed_scale: float = 0.2
    tracking_error_rad: float = 0.3
    tracking_error_time_s: float = 0.3


@dataclasses.dataclass
class ArmCommand:
    """One cycle's output and why it differs from what the policy asked."""

    position: np.ndarray
    velocity: np.ndarray
    acceleration: np.ndarray
    gripper: float
    flags: int
    reasons: list[str]
    speed_scale: float
    min_clearance_m: float
    time_to_collision_s: float


class ArmCorrector:
    """Turns chunks/trajectories plus obstacles into a limit-respecting joint command stream."""

    def __init__(self, limits: JointLimits, config: ArmConfig, collision: CapsuleArm | None = None) -> None:
        self.limits = limits
        self.config = config
        self.collision = collision
        n = limits.dof
        margin = np.minimum(config.position_margin, 0.25 * (limits.upper - limits.lower))
        self._policy = ChunkPolicy(
            (*limits.names, "gripper"), np.append(limits.lower, config.gripper_range[0]),
            np.append(limits.upper, config.gripper_range[1]), config.max_age_s, config.max_future_s,
            optional=("gripper",), plausible_margin=config.plausible_margin,
            max_rate=np.append(limits.max_velocity * config.plausible_speed_scale, np.inf),
            reorder_window_s=config.reorder_window_s)
        self._otg = Ruckig(n, config.period_s)
        self._inp = InputParameter(n)
        self._out = OutputParameter(n)
        # Joints reach their desired velocities independently: synchronising them would slow all to the slowest.
        self._inp.control_interface = ControlInterface.Velocity
        self._inp.synchronization = Synchronization.No
        self._inp.max_jerk = limits.max_jerk.tolist()
        self._inp.max_acceleration = limits.max_acceleration.tolist()
        self._inp.max_velocity = limits.max_velocity.tolist()
        self._inp.target_acceleration = [0.0] * n
        # Per-joint limits as Python floats for the cycle's scalar loops: one _JointRow per joint; lo/hi are the
        # targets' bounds (position_margin inside the limits), stop_acc the controlled-stop deceleration.
        self._rows = [_JointRow.of(*r) for r in zip(*(x.tolist() for x in (
            limits.lower, limits.upper, limits.lower + margin, limits.upper - margin, limits.max_velocity,
            limits.max_acceleration, limits.max_jerk, limits.max_acceleration * config.stop_deceleration_scale,
            limits.max_velocity * config.recovery_speed_scale)), strict=True)]
        self._measured: np.ndarray | None = None
        self._measured_new = False  # a measurement arrived since the last tracking check
        self._track_since: float | None = None  # node time since when the tracking error is above its limit
        self._tracking_fault = False
        self._start_report = ""
        self._limit_notes: list[str] = []
        self._state: np.ndarray | None = None  # (3, n): commanded position, velocity, acceleration
        self._ref: Reference | None = None
        self._tau = 0.0
        self._last_now: float | None = None
        self._last_start: float | None = None
        self._gripper = float("nan")
        self._gripper_target = float("nan")
        self._obstacles = ObstacleSpheres.from_arrays(np.zeros((0, 3)), np.zeros(0), np.zeros((0, 3)))
        self._retreat: np.ndarray | None = None
        self._jac_buf = np.zeros((3, 3, n))
        self._vn = np.zeros((n, 2))

    # ---- inputs -----------------------------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        """True once the commanded state is initialised from a measured state."""
        return self._state is not None

    def set_measured(self, position: np.ndarray, gripper: float = float("nan"),
                     velocity: np.ndarray | None = None) -> bool:
        """Take a measured joint state: the first starts the command there, every one feeds the tracking check.

        `velocity` (first state only): the command starts moving at it (within the velocity limits) instead of at
        rest, for a corrector taking over an arm in motion (the world model's copy of the cell).

        A start pose outside the position limits is kept (never clipped: the first command would jump to the
        limit) and reported; the joints outside return at limited speed (`recovery_speed_scale`). A joint further
        than `plausible_margin` outside is no arm's state but a broken or mis-scaled reading (a reported 1e5 rad
        was commanded back as the position to hold, after a tracking error restarted the command from it): the
        state is refused, as a chunk that far out is.

        Returns:
            False when refused (wrong length, non-finite, implausible); the state is then left unchanged.
        """
        position = np.asarray(position, dtype=float)
        if position.shape != (self.limits.dof,) or not np.all(np.isfinite(position)):
            return False
        margin = self.config.plausible_margin
        if np.any(position < self.limits.lower - margin) or np.any(position > self.limits.upper + margin):
            return False
        self._measured, self._measured_new = position.copy(), True
        if self._state is None:
            self._state = np.zeros((3, self.limits.dof))
            self._state[0] = position
            if velocity is not None and np.all(np.isfinite(velocity)):
                self._state[1] = np.clip(velocity, -self.limits.max_velocity, self.limits.max_velocity)
            self._gripper = float(np.clip(gripper, *self.config.gripper_range)) if np.isfinite(gripper) else 0.0
            outside = self._outside_names(position)
            self._start_report = f"start pose beyond position limits ({outside})" if outside else ""
        return True

    def restart_clock(self) -> None:
        """Forget references timed on the old clock (ROS time jumped back, e.g. a simulator reset moved the arm).

        The commanded state restarts from the next measured joint state; the arm and the gripper hold until a new
        chunk arrives. The gripper's plan goes too: kept, the new episode's gripper followed the old chunk's (the
        fingers closed at the start of an episode after one that ended closed, and the policy, seeing them closed,
        never opened them; ROS eval, seeds 100009-100010).
        """
        self._state, self._ref, self._last_now, self._last_start, self._retreat = None, None, None, None, None
        self._gripper_ref, self._gripper_target = None, float("nan")
        self._measured, self._track_since, self._tracking_fault = None, None, False

    def submit_chunk(self, names: Sequence[str], values: np.ndarray, start_s: float, dt: float, horizon: int,
                     now_s: float) -> ChunkCheck:
        """Check a chunk; when accepted it replaces the reference from now on (blending is ruckig's job)."""
        return self.accept(self.check_chunk(names, values, start_s, dt, horizon, now_s), now_s)

    def check_chunk(self, names: Sequence[str], values: np.ndarray, start_s: float, dt: float, horizon: int,
                    now_s: float) -> ChunkCheck:
        """Only the checks of `submit_chunk` (no state change): a caller can run them outside the loop's lock."""
        return check_chunk(self._policy, names, values, start_s, dt, horizon, now_s, self._last_start)

    def submit_points(self, names: Sequence[str], positions: np.ndarray, times_s: np.ndarray,
                      now_s: float) -> ChunkCheck:
        """Check a trajectory (positions (H, len(names)) at absolute times_s (H,)); accepted like a chunk."""
        return self.accept(self.check_points(names, positions, times_s, now_s), now_s)

    def check_points(self, names: Sequence[str], positions: np.ndarray, times_s: np.ndarray,
                     now_s: float) -> ChunkCheck:
        """Only the checks of `submit_points` (no state change)."""
        return check_points(self._policy, names, positions, times_s, now_s, self._last_start)

    def accept(self, check: ChunkCheck, now_s: float) -> ChunkCheck:
        """Make a checked chunk the reference (cheap: meant to run under the loop's lock)."""
        ref = check.reference
        if ref is None:
            return check
        last = self._last_start
        if last is not None and ref.start < last - self.config.reorder_window_s:  # overtaken meanwhile, long ago
            return ChunkCheck(None, ["rejected: non-monotonic time (overtaken by a newer chunk)"])
        # Chunks reordered by latency jitter (or faster than the loop) are merged by stamp with the reference.
        merge = last is not None and ref.start < last
        n = self.limits.dof
        if check.present is not None and check.present[n]:
            gripper = Reference(ref.times, ref.values[:, n:])
            old = getattr(self, "_gripper_ref", None)
            self._gripper_ref = old.merged(gripper) if merge and old is not None else gripper
            self._gripper_target = float(self._gripper_ref.sample(now_s)[0][0])
        # else: a reference for the joints alone (a JointTrajectory) says nothing about the gripper, whose plan stays.
        # policy_inference publishes each chunk twice, as an ActionChunk and as a JointTrajectory of the arm joints;
        # dropping the gripper's plan on the second froze the gripper until the next chunk (it closed ~0.5 s late).
        joints = Reference(ref.times, ref.values[:, :n])
        self._ref = self._ref.merged(joints) if merge and self._ref is not None else joints
        self._last_start = ref.start if last is None else max(last, ref.start)
        self._tau = now_s
        return check

    def set_obstacles(self, centers: np.ndarray, radii: np.ndarray, velocities: np.ndarray) -> None:
        """Obstacle spheres in the model's world frame: centers (M, 3), radii (M,), velocities (M, 3)."""
        self._obstacles = ObstacleSpheres.from_arrays(centers, radii, velocities)

    @property
    def obstacles(self) -> ObstacleSpheres:
        """The obstacle set in use."""
        return self._obstacles

    @obstacles.setter
    def obstacles(self, obstacles: ObstacleSpheres) -> None:
        """Swap in an obstacle set built elsewhere (e.g. outside the loop's lock)."""
        self._obstacles = obstacles

    # ---- cycle --------------------------------------------------------------------------------------------------
    def step(self, now_s: float, stop_reasons: Sequence[str] = ()) -> ArmCommand:
        """Advance one period and return the command. `stop_reasons` (e.g. from watchdogs) force a controlled stop.

        Raises:
            RuntimeError: before `set_measured` initialised the state.
        """
        if self._state is None:
            raise RuntimeError("arm corrector not started: no measured joint state yet")
        flags, reasons = 0, list(stop_reasons)
        elapsed = 0.0 if self._last_now is None else max(0.0, now_s - self._last_now)
        # The command advances by the time that passed, not by one nominal period: under ROS the loop's cycles are
        # irregular against the (simulated) clock, and a fixed step made the arm and gripper run slower or faster
        # than their chunks (the gripper closed after the arm had lifted). Bounded so a stall never becomes a jump.
        step_s = self.config.period_s if self._last_now is None else \
            min(elapsed, MAX_STEP_PERIODS * self.config.period_s)
        self._last_now = now_s
        q, v = self._state[0], self._state[1]

        stop = bool(stop_reasons)
        if self._start_report:
            flags |= _LIMIT_POSITION
            reasons.append(self._start_report)
            self._start_report = ""
        tracking, tracking_stop = self._check_tracking(now_s)
        if tracking:
            flags |= _TRACKING_ERROR
            reasons.append(tracking)
            stop = stop or tracking_stop
            q = self._state[0]  # restarted from the measured position
        # 7 joints: the per-joint algebra of the cycle runs on Python floats (a numpy call costs more than its
        # arithmetic, and the cycle's budget is 0.3 ms).
        if self._ref is None:
            stop = True
            target_q, target_v = q.tolist(), [0.0] * len(q)
        else:
            ref_q, ref_v, late = self._reference_target(elapsed)
            target_q, target_v = ref_q.tolist(), ref_v.tolist()
            if late == 1:
                flags |= _EXTRAPOLATING
                reasons.append("chunk late: extrapolating")
            elif late == 2:
                flags |= _EXTRAPOLATING
                reasons.append("chunk exhausted: stopping")
                stop = True

        scale, clearance, ttc = 1.0, float("inf"), float("inf")
        self._retreat = None
        if self.collision is not None and self._obstacles.radii.shape[0]:
            gain = self.config.tracking_gain
            nominal = [min(max(b + gain * (a - x), -r.vmax), r.vmax)
                       for a, b, x, r in zip(target_q, target_v, q.tolist(), self._rows, strict=True)]
            scale, clearance, ttc = self._obstacle_scale(q, v, nominal)
            if self._retreat is not None and not stop_reasons:
                flags |= _OBSTACLE_STOP
                reasons.append(f"obstacle approaching within clearance ({clearance:.3f} m): moving away")
            elif scale <= 0.0:
                flags |= _OBSTACLE_STOP
                reasons.append(f"obstacle within clearance ({clearance:.3f} m): stopping")
                stop = True
            elif scale < 1.0:
                flags |= _OBSTACLE_SLOWDOWN
                reasons.append(f"obstacle at {clearance:.3f} m: speed x{scale:.2f}")
        self._tau -= (1.0 - (0.0 if stop else scale)) * elapsed  # reference time runs at the commanded speed

        # Desired velocity: feed-forward plus a pull towards the target held inside the position margin, capped by
        # the (scaled) velocity limit and by what the joint can still brake from before the limit.
        clamped_q = [min(max(x, r.lo), r.hi) for x, r in zip(target_q, self._rows, strict=True)]
        if clamped_q != target_q:
            flags |= _LIMIT_POSITION
            reasons.append("target beyond position limit: clamped")
        retreat = self._retreat is not None and not stop_reasons  # moving away beats holding still (watchdogs excepted)
        if retreat:
            scale, stop = 1.0, False
        n_sub = 1 if step_s <= MAX_SUBSTEP_S else math.ceil(step_s / MAX_SUBSTEP_S - 1e-9)
        acted = 0
        for _ in range(n_sub):
            acted |= self._substep(target_v, clamped_q, scale, stop, retreat, step_s / n_sub)
        flags |= acted
        if acted & _LIMIT_VELOCITY and scale >= 1.0:
            reasons.append("velocity above limit: capped")
        if acted & (_LIMIT_ACCELERATION | _LIMIT_JERK):
            reasons.append(self._ACC_JERK_REASONS[(acted >> 2) & 3])
        if self._limit_notes:
            flags |= _LIMIT_POSITION
            reasons.extend(self._limit_notes)
            self._limit_notes.clear()
        self._step_gripper(now_s, step_s)
        if self._retreat is not None:
            scale = 0.0
        return ArmCommand(self._state[0].copy(), self._state[1].copy(), self._state[2].copy(), self._gripper, flags,
                          reasons, 0.0 if stop else scale, clearance, ttc)

    def _check_tracking(self, now_s: float) -> tuple[str, bool]:
        """(reason, stop) from the measured joint positions against the command ('' while they agree).

        An error above `tracking_error_rad` for longer than `tracking_error_time_s` stops the command (controlled,
        at the stop deceleration); once it stands still it restarts from the measured position, so a blocked or
        bumped arm is never commanded to jump back to where it was meant to be.
        """
        measured, cfg = self._measured, self.config
        if measured is None:
            return "", False
        state = self._state
        if self._tracking_fault:
            if np.all(np.abs(state[1]) < 1e-9) and np.all(np.abs(state[2]) < 1e-6):
                state[0], state[1], state[2] = measured, 0.0, 0.0
                self._tracking_fault, self._track_since = False, None
                return "tracking error: stopped; command restarted from the measured position", False
            return "tracking error: stopping", True
        if not self._measured_new:  # each measurement is judged once (a stopped feed is the watchdog's)
            return "", False
        self._measured_new = False
        err = np.abs(state[0] - measured)
        worst = int(np.argmax(err))
        if err[worst] <= cfg.tracking_error_rad:
            self._track_since = None
            return "", False
        if self._track_since is None:
            self._track_since = now_s
        if now_s - self._track_since < cfg.tracking_error_time_s:
            return "", False
        self._tracking_fault = True
        return (f"tracking error: {self.limits.names[worst]} measured {err[worst]:.3f} rad from the command for "
                f"{now_s - self._track_since:.2f} s: stopping"), True

    _ACC_JERK_REASONS = ("", "acceleration at its limit", "jerk at its limit", "acceleration and jerk at their limits")

    def _substep(self, target_v: list[float], clamped_q: list[float], scale: float, stop: bool, retreat: bool,
                 h: float) -> int:
        """Advance the command by h seconds inside every limit; returns the limiter flags that acted.

        Per joint: the desired velocity is capped by the velocity limit and by what the joint can still brake from
        before the position margin, allowing for the h-long step. A joint whose worst-case next
        step could no longer be stopped before its hard limit brakes at full deceleration (`_must_brake`) while the
        others carry on; a joint already beyond a limit only moves back inside, at `recovery_speed_scale` of its
        velocity limit. Last resort (never reached in the property tests): the position is clipped at the limit.
        """
        if h <= 0.0:  # no time has passed (a coarse clock): the command holds
            return 0
        q, v, a = self._state.tolist()
        if stop:
            desired = [0.0] * len(q)
        elif retreat:
            desired = self._retreat.tolist()
        else:
            gain = self.config.tracking_gain
            desired = [tv + gain * (cq - x) for tv, cq, x in zip(target_v, clamped_q, q, strict=True)]
        acted = 0
        slowed, outside, braking, acc = [], [], [], []
        for j, (x, d, r) in enumerate(zip(q, desired, self._rows, strict=True)):
            if not stop:
                vm = r.vmax * scale
                if d > vm or d < -vm:
                    acted |= _LIMIT_VELOCITY
                    d = vm if d > vm else -vm
                sa = r.stop_acc  # cap: v h + v²/(2A) <= room to the margin, A the stop deceleration
                up = sa * (math.sqrt(h * h + 2.0 * max(r.hi - x, 0.0) / sa) - h)
                down = sa * (math.sqrt(h * h + 2.0 * max(x - r.lo, 0.0) / sa) - h)
                if d > up or d < -down:
                    slowed.append(j)
                    d = up if d > up else -down
            if x > r.upper or x < r.lower:  # found beyond a limit: only back inside, and slowly
                outside.append(j)
                if not stop:
                    d = min(max(d, -r.v_recover), 0.0) if x > r.upper else min(max(d, 0.0), r.v_recover)
                acc.append(r.stop_acc if stop else r.amax)
            elif _must_brake(r, x, v[j], a[j], d, h):
                braking.append(j)
                d = 0.0
                acc.append(r.amax)
            else:
                acc.append(r.stop_acc if stop else r.amax)
            desired[j] = d
        if slowed:
            self._note_limit("slowing before position limit", slowed)
        if outside:
            self._note_limit("beyond position limit: returning at limited speed", outside)
        if braking:
            self._note_limit("braking to stay inside position limit", braking)
        inp, out = self._inp, self._out
        self._otg.delta_time = h
        inp.current_position, inp.current_velocity, inp.current_acceleration = q, v, a
        inp.target_velocity, inp.max_acceleration = desired, acc
        result = self._otg.update(inp, out)
        if result not in (Result.Working, Result.Finished):
            raise RuntimeError(f"ruckig rejected a velocity target inside the limits: {result}")
        new_q, new_v, new_a = out.new_position, out.new_velocity, out.new_acceleration
        clipped = []
        for j, (x, r) in enumerate(zip(new_q, self._rows, strict=True)):
            # Hard bounds: inside stays inside; a joint outside never moves further out.
            top, bottom = max(r.upper, q[j]), min(r.lower, q[j])
            if x > top or x < bottom:
                clipped.append(j)
                new_q[j], new_v[j], new_a[j] = min(max(x, bottom), top), 0.0, 0.0
            if abs(new_a[j]) >= r.amax * (1.0 - 1e-6):
                acted |= _LIMIT_ACCELERATION
            if abs(new_a[j] - a[j]) >= r.jmax * h * (1.0 - 1e-6):
                acted |= _LIMIT_JERK
        if clipped:
            self._note_limit("position clipped at limit", clipped)
        self._state[0], self._state[1], self._state[2] = new_q, new_v, new_a
        return acted

    def _note_limit(self, what: str, joints: Sequence[int]) -> None:
        names = ", ".join(self.limits.names[j] for j in joints)
        note = f"{what} ({names})"
        if note not in self._limit_notes:
            self._limit_notes.append(note)

    def _outside_names(self, q: np.ndarray) -> str:
        lim = self.limits
        return ", ".join(f"{n} {x:+.3f} rad beyond" for n, x in zip(
            lim.names, np.maximum(q - lim.upper, 0.0) - np.maximum(lim.lower - q, 0.0), strict=True) if x != 0.0)

    def _reference_target(self, elapsed: float) -> tuple[np.ndarray, np.ndarray, int]:
        """Reference position/velocity at the reference time; late=1 while extrapolating, 2 once exhausted."""
        ref = self._ref
        assert ref is not None
        self._tau += elapsed
        if self._tau <= ref.end:
            q, v = ref.sample(self._tau)
            ahead = min(self._tau + self.config.lookahead_s, ref.end - 1e-9)
            if ahead > self._tau and int(np.searchsorted(ref.times, ahead, side="right")) != \
                    int(np.searchsorted(ref.times, self._tau, side="right")):
                v = ref.sample(ahead)[1]  # the feed-forward slope comes from the next segment
            return q, v, 0
        over = self._tau - ref.end
        slope = ref.end_slope()
        if over <= self.config.extrapolation_s:
            return ref.values[-1] + slope * over, slope, 1
        return ref.values[-1] + slope * self.config.extrapolation_s, np.zeros_like(slope), 2

    def _step_gripper(self, now_s: float, step_s: float) -> None:
        ref = getattr(self, "_gripper_ref", None)
        if ref is not None:
            self._gripper_target = float(ref.sample(now_s)[0][0])
        if math.isfinite(self._gripper_target):
            step = self.config.gripper_max_speed * step_s
            self._gripper += min(max(self._gripper_target - self._gripper, -step), step)

    def _obstacle_scale(self, q: np.ndarray, v: np.ndarray, nominal: np.ndarray) -> tuple[float, float, float]:
        """Speed scale in [0, 1] from a barrier h = clearance - required - braking distance, with dh/dt >= -γh.

        dh/dt = s * n·(J q̇_nominal) - closing speed of the obstacle along n. The arm may always move away from an
        obstacle (n·J q̇ >= 0); towards it, s is the largest value meeting the condition, 0 when h <= 0. Only the
        three nearest obstacles within reach of the slow-down band are evaluated.

        When stopping cannot keep the condition (the obstacle itself closes in on a stopped arm), `_retreat` is set to
        the minimum-norm joint velocity meeting it, q̇ = λ Jᵀn (the CBF-QP solution with a zero nominal), capped at
        half the velocity limits.
        """
        cfg, lim = self.config, self.limits
        assert self.collision is not None
        c = self.collision.clearance(q, self._obstacles, k=3)
        # k <= 3 and 7 joints: the algebra is done on Python floats (a numpy call costs more than its arithmetic).
        t_brake = max(abs(x) / r.stop_acc + r.a_over_j for x, r in zip(v.tolist(), self._rows, strict=True))
        dist, normals = c.distance.tolist(), c.normal.tolist()
        band = cfg.clearance_m + cfg.slow_distance_m
        closing_all, near = [], []
        velocities = self._obstacles.velocities[c.index].tolist()
        for i, ((a, b, e), (ux, uy, uz)) in enumerate(zip(normals, velocities, strict=True)):
            closing = a * ux + b * uy + e * uz
            closing_all.append(closing if closing > 0.0 else 0.0)
            if dist[i] <= band + 2.0 * closing_all[i] * t_brake:
                near.append(i)
        if not near:
            return 1.0, dist[0], math.inf
        jac = self._jac_buf[:len(near)]                                   # (k, 3, n)
        for j, i in enumerate(near):
            jac[j] = self.collision.point_jacobian(c.point[i], c.body[i])
        self._vn[:, 0], self._vn[:, 1] = v, nominal
        moved = (jac @ self._vn).tolist()   # (k, 3, 2): point velocity now, and nominal
        scale, ttc, worst, worst_need = 1.0, math.inf, -1, 0.0
        for j, i in enumerate(near):
            (vx, nx), (vy, ny), (vz, nz) = moved[j]
            a, b, e = normals[i]
            d, closing = dist[i], closing_all[i]
            h = d - cfg.clearance_m - (0.5 * math.sqrt(vx * vx + vy * vy + vz * vz) + closing) * t_brake
            rate = a * nx + b * ny + e * nz  # n·J q̇_nominal
            approach = closing - min(rate, 0.0)
            if approach > 1e-9:
                ttc = min(ttc, max(d - cfg.clearance_m, 0.0) / approach)
            if rate < 0.0:
                scale = min(scale, 0.0 if h <= 0.0 else max(0.0, (cfg.cbf_gamma * h - closing) / -rate))
            need = closing - cfg.cbf_gamma * h  # dh/dt the arm itself must supply
            if need > worst_need and h < 0.5 * cfg.slow_distance_m:
                worst, worst_need = j, need
        if worst >= 0:
            grad = jac[worst].T @ c.normal[near[worst]]
            g2 = float(grad @ grad)
            if g2 > 1e-9:
                retreat = grad * (worst_need / g2)
                self._retreat = retreat * min(1.0, float(np.min(0.5 * lim.max_velocity
                                                                / np.maximum(np.abs(retreat), 1e-12))))
        scale = min(scale, 1.0)
        return scale, dist[0], ttc


# trajectory_correction's arm parameters that tune ArmConfig (same names; gripper_min/max make gripper_range):
# the node declares them from this table, `arm_config` reads them, so the node and an in-process copy agree.
ARM_PARAMETERS: dict[str, tuple[str, tuple[float, float]]] = {
    "position_margin": ("Targets kept inside limits by [rad]", (0.0, 0.5)),
    "extrapolation_s": ("Late chunk extrapolated for [s]", (0.0, 2.0)),
    "lookahead_s": ("Velocity feed-forward lookahead [s]", (0.0, 0.5)),
    "tracking_gain": ("Pull towards the reference [1/s]", (0.0, 20.0)),
    "stop_deceleration_scale": ("Stop deceleration as a fraction of max_acceleration", (0.05, 1.0)),
    "clearance_m": ("Clearance kept to obstacles [m]", (0.0, 2.0)),
    "slow_distance_m": ("Obstacles beyond clearance + this are ignored [m]", (0.0, 5.0)),
    "cbf_gamma": ("Barrier decay rate [1/s]", (0.1, 100.0)),
    "gripper_min": ("Gripper opening min [m]", (0.0, 1.0)),
    "gripper_max": ("Gripper opening max [m]", (0.0, 1.0)),
    "gripper_max_speed": ("Gripper opening speed limit [m/s]", (0.0, 5.0)),
    "plausible_margin": ("A chunk with a target further than this outside the position limits is rejected as "
                         "implausible, not clamped; a joint state that far out is refused [rad]", (0.0, 10.0)),
    "plausible_speed_scale": ("A chunk stepping a joint faster than this times its velocity limit is rejected as "
                              "implausible", (1.0, 100.0)),
    "reorder_window_s": ("Chunks starting up to this long before the newest are merged by stamp; earlier ones are "
                         "rejected [s]", (0.0, 2.0)),
    "recovery_speed_scale": ("A joint beyond a position limit returns at most at this fraction of its velocity "
                             "limit", (0.01, 1.0)),
    "tracking_error_rad": ("A measured joint further than this from the command for tracking_error_time_s is a "
                           "tracking fault [rad]", (0.001, 10.0)),
    "tracking_error_time_s": ("How long a tracking error lasts before a controlled stop and a restart from the "
                              "measured state [s]", (0.0, 10.0)),
}


def arm_parameter_default(name: str) -> float:
    """The default of one of `ARM_PARAMETERS`: ArmConfig's value."""
    config = ArmConfig()
    if name.startswith("gripper_") and name != "gripper_max_speed":
        return float(config.gripper_range[name == "gripper_max"])
    return float(getattr(config, name))


def arm_config(params: Mapping[str, Any], period_s: float | None = None) -> ArmConfig:
    """The corrector's configuration from its `trajectory_correction` parameters (config/arm.yaml's section).

    Defaults fill what the parameters leave out; `period_s` defaults to 1 / `rate_hz`; the chunk stamp window is
    the node's max_chunk_age_s and max_chunk_future_s.
    """
    values = {name: float(params.get(name, arm_parameter_default(name))) for name in ARM_PARAMETERS}
    gripper = (values.pop("gripper_min"), values.pop("gripper_max"))
    if period_s is None:
        period_s = 1.0 / float(params.get("rate_hz", 1.0 / ArmConfig().period_s))
    return ArmConfig(period_s=period_s, gripper_range=gripper,
                     max_age_s=float(params.get("max_chunk_age_s", ArmConfig().max_age_s)),
                     max_future_s=float(params.get("max_chunk_future_s", ArmConfig().max_future_s)), **values)


def arm_corrector(params: Mapping[str, Any], period_s: float | None = None) -> ArmCorrector:
    """An arm corrector with trajectory_correction's parameters (config/arm.yaml's section), no collision model.

    `period_s`: its control period [s]; None: 1 / `rate_hz`.
    """
    g = params.get
    names = list(g("joint_names", [f"joint{i}" for i in range(1, 8)]))
    limits = JointLimits.from_lists(names, g("position_lower"), g("position_upper"), g("max_velocity"),
                                    g("max_acceleration"), g("max_jerk"))
    return ArmCorrector(limits, arm_config(params, period_s))

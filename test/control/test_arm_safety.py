"""Arm corrector safety over real timing (issue 16): any cycle length, garbage chunks, start poses beyond the
limits, tracking against the measured joints, reordered chunks, and a flag for every limiter that acts."""

from __future__ import annotations

import numpy as np
import pytest
from _arm_fixture import LIMITS, NAMES, make_arm, start_pose
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from physical_ai.control.arm import ArmConfig
from physical_ai.control.flags import Flag

TOL = 1e-6
MAX_STEP = 0.05  # the corrector advances at most 50 nominal periods per cycle


def cycle_lengths(rng: np.random.Generator, n: int, base: float, late_fraction: float) -> np.ndarray:
    """Cycle lengths [s]: `base`, with a random `late_fraction` of cycles 5-50 ms long."""
    dts = np.full(n, base)
    late = rng.random(n) < late_fraction
    dts[late] = rng.uniform(0.005, 0.05, late.sum())
    return dts


def drive(arm, dts: np.ndarray, now: float = 0.0, chunk_at=None):
    """Step the arm through cycles of the given lengths; chunk_at(k, now) may submit chunks. Returns commands and
    each cycle's elapsed time."""
    cmds = []
    for k, dt in enumerate(dts):
        if chunk_at is not None:
            chunk_at(k, now)
        cmds.append(arm.step(now))
        now += dt
    return cmds, now


def check_limits_over_elapsed(cmds, elapsed: np.ndarray) -> None:
    """Every limit over the real elapsed time of each cycle (not a nominal period)."""
    pos = np.array([c.position for c in cmds])
    vel = np.array([c.velocity for c in cmds])
    acc = np.array([c.acceleration for c in cmds])
    assert np.all(np.isfinite(pos)) and np.all(np.isfinite(vel)) and np.all(np.isfinite(acc))
    assert np.all(pos >= LIMITS.lower - TOL), (pos.min(axis=0) - LIMITS.lower).min()
    assert np.all(pos <= LIMITS.upper + TOL), (pos.max(axis=0) - LIMITS.upper).max()
    assert np.all(np.abs(vel) <= LIMITS.max_velocity + TOL)
    assert np.all(np.abs(acc) <= LIMITS.max_acceleration + TOL)
    step = np.minimum(elapsed, MAX_STEP)[:, None]
    assert np.all(np.abs(np.diff(acc, axis=0)) <= LIMITS.max_jerk * step * (1 + 1e-3) + TOL)
    assert np.all(np.abs(np.diff(vel, axis=0)) <= LIMITS.max_acceleration * step + TOL)


# No shrinking: each example runs seconds of cycles, and the failing example printed is already small.
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(seed=st.integers(0, 2**31 - 1), base=st.sampled_from([0.0005, 0.001, 0.005, 0.01, 0.02, 0.05]),
       late=st.sampled_from([0.0, 0.01, 0.1]),
       beyond=st.lists(st.floats(-0.45, 0.45), min_size=7, max_size=7))
def test_targets_beyond_the_limits_at_any_cycle_length_never_overshoot_or_freeze(seed, base, late, beyond):
    """Fast chunks towards targets beyond the position limits, cycles of 0.5-50 ms with random late ones: the
    command never leaves the limits, and a valid chunk afterwards still moves every joint (no freeze)."""
    rng = np.random.default_rng(seed)
    arm = make_arm(with_collision=False)
    arm.set_measured(start_pose())
    side = np.where(rng.random(7) < 0.5, LIMITS.lower, LIMITS.upper)
    target = side + np.asarray(beyond)  # at, inside or beyond the limits by up to 0.45 rad (within the margin)
    n = round(3.0 / base)
    dts = cycle_lengths(rng, n, base, late)

    def slam(k, now):
        if k == 0:
            check = arm.submit_chunk(NAMES, np.linspace(start_pose(), target, 3).ravel(), now, 0.8, 3, now)
            assert check.reference is not None, check.reasons

    cmds, now = drive(arm, dts, chunk_at=slam)
    check_limits_over_elapsed(cmds, dts[:-1])
    # Back to the middle: every joint must move again.
    goal = 0.5 * (LIMITS.lower + LIMITS.upper) + 0.1
    held = cmds[-1].position
    back = np.vstack([np.linspace(held, goal, 4), goal])
    assert arm.submit_chunk(NAMES, back.ravel(), now, 1.0, 5, now).reference is not None
    dts2 = cycle_lengths(rng, round(4.5 / base), base, late)
    more, _ = drive(arm, dts2, now)
    check_limits_over_elapsed([cmds[-1], *more], np.append(dts[-1], dts2[:-1]))
    assert np.abs(more[-1].position - goal).max() < 0.05, "a joint stayed frozen after a limit was reached"


def test_long_cycles_reaching_a_limit_do_not_freeze_the_arm():
    """The issue's case: 20 ms cycles, a chunk asking beyond the upper limit of joint 1; it stops at the limit and
    a later chunk back inside moves it (before, it overshot and every later cycle said 'stop')."""
    arm = make_arm(with_collision=False)
    arm.set_measured(start_pose())
    target = start_pose().copy()
    target[0] = LIMITS.upper[0] + 0.3
    now = 0.0
    arm.submit_chunk(NAMES, np.array([start_pose(), target]).ravel(), now, 0.2, 2, now)
    for _ in range(300):
        cmd = arm.step(now)
        assert cmd.position[0] <= LIMITS.upper[0] + TOL
        now += 0.02
    back = start_pose()
    arm.submit_chunk(NAMES, np.array([cmd.position, back]).ravel(), now, 1.0, 2, now)
    for _ in range(300):
        cmd = arm.step(now)
        now += 0.02
    assert abs(cmd.position[0] - back[0]) < 0.02


def test_start_pose_beyond_a_limit_is_reported_and_recovered_at_limited_speed():
    arm = make_arm(with_collision=False)
    q0 = start_pose().copy()
    q0[3] = LIMITS.lower[3] - 0.3  # joint4 0.3 rad below its lower limit
    arm.set_measured(q0)
    goal = start_pose() + np.array([0.3, 0.0, 0.2, 0.0, 0.0, 0.0, 0.0])
    arm.submit_chunk(NAMES, np.array([q0, goal, goal, goal, goal]).ravel(), 0.0, 1.0, 5, 0.0)
    cmds, _ = drive(arm, np.full(4000, 0.001))
    first = cmds[0]
    assert np.abs(first.position - q0).max() < 1e-3, "the first command jumped"
    assert first.flags & Flag.LIMIT_POSITION
    assert any("start pose beyond position limits" in r and "joint4" in r for r in first.reasons), first.reasons
    vel = np.array([c.velocity for c in cmds])
    inside = np.flatnonzero(np.array([c.position[3] for c in cmds]) >= LIMITS.lower[3])
    assert inside.size and inside[0] > 0
    # returning at limited speed (20 % of the limit by default) and never moving further out
    assert np.abs(vel[:inside[0], 3]).max() <= 0.2 * LIMITS.max_velocity[3] + TOL
    assert np.all(np.diff([c.position[3] for c in cmds[:inside[0]]]) >= -TOL)
    assert any("beyond position limit: returning" in r for c in cmds[:inside[0]] for r in c.reasons)
    # the rest of the arm was not held back meanwhile
    assert abs(cmds[inside[0]].position[0] - q0[0]) > 0.05
    assert np.abs(cmds[-1].position - goal).max() < 0.03


def test_a_measured_state_no_arm_can_be_in_is_refused():
    """A reading further than plausible_margin beyond a limit (the fuzz bench's 1e5 rad) is no arm's state: a
    tracking error restarted the command from it and the corrector commanded 1e5 rad. 0.3 rad beyond is kept."""
    arm = make_arm(with_collision=False)
    far = start_pose().copy()
    far[1] = 1e5
    assert arm.set_measured(far) is False
    assert not arm.started
    near = start_pose().copy()
    near[3] = LIMITS.lower[3] - 0.3
    assert arm.set_measured(near) is True
    assert arm.started
    far = near.copy()
    far[2] = LIMITS.upper[2] + ArmConfig().plausible_margin + 0.01
    assert arm.set_measured(far) is False
    cmd = arm.step(0.0)
    assert np.all(np.abs(cmd.position - near) < 1e-9), "the command moved to a refused state"


@pytest.mark.parametrize(("name", "values", "reason"), [
    ("1e300 everywhere", np.full((5, 7), 1e300), "implausible"),
    ("degrees", np.degrees(np.tile(start_pose() + 0.2, (5, 1))), "implausible"),
    # joint2 (-1.0) and joint4 (2.5) swapped: joint4 cannot go below -0.2
    ("mislabelled columns", np.tile((start_pose() + np.array([0, -1.3, 0, 1.3, 0, 0, 0]))[[0, 3, 2, 1, 4, 5, 6]],
                                    (5, 1)), "implausible"),
    ("steps far faster than the velocity limit", np.array([start_pose() + 0.4 * (k % 2) for k in range(5)]),
     "implausible"),
])
def test_garbage_chunks_are_rejected_with_a_reason_and_the_arm_keeps_its_plan(name, values, reason):
    arm = make_arm(with_collision=False)
    arm.set_measured(start_pose())
    good = np.vstack([np.linspace(start_pose(), start_pose() + 0.2, 14), np.tile(start_pose() + 0.2, (6, 1))])
    assert arm.submit_chunk(NAMES, good.ravel(), 0.0, 0.05, 20, 0.0).reference is not None
    _, now = drive(arm, np.full(200, 0.001))
    check = arm.submit_chunk(NAMES, values.ravel(), now, 0.02, 5, now)
    assert check.reference is None, f"{name} accepted: {check.reasons}"
    assert any(reason in r for r in check.reasons), check.reasons
    more, _ = drive(arm, np.full(1000, 0.001), now)
    assert np.abs(more[-1].position - (start_pose() + 0.2)).max() < 0.02  # the good chunk went on


def test_chunks_reordered_by_jitter_are_merged_by_stamp():
    """Chunks every 4 ms (faster than a 250 Hz policy) whose start stamps jitter by +-4 ms, so that they often go
    backwards: all accepted, the motion stays smooth and on time."""
    rng = np.random.default_rng(1)
    arm = make_arm(with_collision=False)
    arm.set_measured(start_pose())
    rejected, cmds, now = 0, [], 0.0

    def ref(t):
        return start_pose() + 0.3 * np.sin(1.5 * t[:, None] + np.arange(7))

    arm.set_measured(ref(np.array([0.0]))[0])
    for k in range(3000):
        if k % 4 == 0:
            start = now + rng.uniform(-0.004, 0.004)
            t = start + 0.02 * np.arange(20)
            rejected += arm.submit_chunk(NAMES, ref(t).ravel(), start, 0.02, 20, now).reference is None
        cmds.append(arm.step(now))
        now += 0.001
    assert rejected == 0
    pos = np.array([c.position for c in cmds])
    expected = ref(np.arange(3000) * 0.001)
    assert np.abs(pos[1000:] - expected[1000:]).max() < 0.03
    check_limits_over_elapsed(cmds, np.full(len(cmds) - 1, 0.001))


def test_tracking_error_raises_a_flag_stops_and_restarts_from_the_measured_position():
    """joint2 is blocked (its measurement stays put) while the command moves on: after tracking_error_time_s the
    flag and a controlled stop; once stopped, the command continues from where the arm really is."""
    arm = make_arm(with_collision=False)
    q0 = start_pose()
    arm.set_measured(q0)
    goal = q0 + 0.8
    arm.submit_chunk(NAMES, np.array([q0, goal]).ravel(), 0.0, 1.0, 2, 0.0)
    now, cmds = 0.0, []
    for _ in range(2500):
        cmd = arm.step(now)
        cmds.append(cmd)
        measured = cmd.position.copy()
        measured[1] = q0[1]  # blocked
        arm.set_measured(measured)
        now += 0.001
    flagged = [k for k, c in enumerate(cmds) if c.flags & Flag.TRACKING_ERROR]
    assert flagged, "no tracking error flag"
    k0 = flagged[0]
    assert any("tracking error" in r and "joint2" in r for r in cmds[k0].reasons), cmds[k0].reasons
    # before: error over 0.3 rad for at least 0.3 s; the stop that follows keeps the limits
    err = np.array([abs(c.position[1] - q0[1]) for c in cmds])
    assert np.all(err[k0 - 300:k0] > 0.29)
    check_limits_over_elapsed(cmds, np.full(len(cmds) - 1, 0.001))
    restarted = [k for k in flagged if any("restarted from the measured" in r for r in cmds[k].reasons)]
    assert restarted and abs(cmds[restarted[0]].position[1] - q0[1]) < 1e-4
    assert np.all(np.abs(cmds[restarted[0] - 1].velocity) < 1e-9)  # stopped before restarting


def test_every_limiter_that_acts_is_flagged():
    """A fast step target: velocity, acceleration and jerk limits act and say so; near a limit, position too."""
    arm = make_arm(with_collision=False)
    arm.set_measured(start_pose())
    target = start_pose().copy()
    target[0] = LIMITS.upper[0] + 0.2
    arm.submit_chunk(NAMES, np.tile(target, (8, 1)).ravel(), 0.0, 0.5, 8, 0.0)
    cmds, _ = drive(arm, np.full(4000, 0.001))
    flags = 0
    reasons = set()
    for c in cmds:
        flags |= c.flags
        reasons.update(c.reasons)
    for flag in (Flag.LIMIT_POSITION, Flag.LIMIT_VELOCITY, Flag.LIMIT_ACCELERATION, Flag.LIMIT_JERK):
        assert flags & flag, flag
    text = " ".join(reasons)
    for words in ("clamped", "velocity above limit", "acceleration", "jerk", "slowing before position limit"):
        assert words in text, (words, reasons)

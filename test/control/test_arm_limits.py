"""Property-based: no input sequence can make the arm's output leave its position/velocity/acceleration/jerk limits."""

from __future__ import annotations

import numpy as np
from _arm_fixture import LIMITS, NAMES, make_arm, start_pose
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

PERIOD = 0.001
TOL = 1e-6

finite = st.floats(-10.0, 10.0, allow_nan=False)
weird = st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e9, -1e9])
value = st.one_of(finite, finite, finite, weird)


@st.composite
def chunk(draw):
    horizon = draw(st.integers(1, 12))
    names = list(NAMES)
    kind = draw(st.sampled_from(["ok", "ok", "ok", "shuffled", "unknown", "short", "gripper"]))
    if kind == "shuffled":
        names = draw(st.permutations(NAMES))
    elif kind == "unknown":
        names = [*NAMES, "elbow_extra"]
    elif kind == "short":
        names = NAMES[:-1]
    elif kind == "gripper":
        names = [*NAMES, "gripper"]
    n_values = horizon * len(names) + draw(st.sampled_from([0, 0, 0, 0, -1, 3]))
    values = draw(st.lists(value, min_size=max(n_values, 0), max_size=max(n_values, 0)))
    start_offset = draw(st.one_of(st.floats(-0.1, 0.05), st.sampled_from([-5.0, 5.0, float("nan")])))
    dt = draw(st.one_of(st.floats(0.005, 0.2), st.sampled_from([0.0, -0.01, float("inf")])))
    gap_cycles = draw(st.integers(1, 150))
    return names, values, start_offset, dt, horizon, gap_cycles


obstacle = st.tuples(st.floats(-1, 1), st.floats(-1, 1), st.floats(0, 1.5), st.floats(0.0, 0.2),
                     st.floats(-2, 2))


def check_limits(cmds: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
    pos = np.array([c[0] for c in cmds])
    vel = np.array([c[1] for c in cmds])
    acc = np.array([c[2] for c in cmds])
    assert np.all(np.isfinite(pos)) and np.all(np.isfinite(vel)) and np.all(np.isfinite(acc))
    assert np.all(pos >= LIMITS.lower - TOL) and np.all(pos <= LIMITS.upper + TOL)
    assert np.all(np.abs(vel) <= LIMITS.max_velocity + TOL)
    assert np.all(np.abs(acc) <= LIMITS.max_acceleration + TOL)
    jerk = np.abs(np.diff(acc, axis=0)) / PERIOD
    assert np.all(jerk <= LIMITS.max_jerk * (1 + 1e-3) + 1e-3)
    # Position/velocity consistency: no jumps beyond what the acceleration limit allows in one period.
    dv = np.abs(np.diff(vel, axis=0))
    assert np.all(dv <= LIMITS.max_acceleration * PERIOD + TOL)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=st.lists(chunk(), min_size=1, max_size=6), obstacles=st.lists(obstacle, max_size=6),
       stop_at=st.integers(0, 400))
def test_no_input_sequence_violates_limits(chunks, obstacles, stop_at):
    arm = make_arm()
    arm.set_measured(start_pose())
    obs = np.array([o[:3] for o in obstacles]).reshape(-1, 3)
    vel = np.array([[o[4], 0.0, 0.0] for o in obstacles]).reshape(-1, 3)
    arm.set_obstacles(obs, np.array([o[3] for o in obstacles]), vel)
    now, cycle, cmds = 10.0, 0, []
    for names, values, start_offset, dt, horizon, gap in chunks:
        arm.submit_chunk(names, np.array(values), now + start_offset, dt, horizon, now)
        for _ in range(gap):
            stop = ("stale input",) if cycle == stop_at else ()
            c = arm.step(now, stop)
            cmds.append((c.position, c.velocity, c.acceleration))
            now += PERIOD
            cycle += 1
    check_limits(cmds)


@settings(max_examples=25, deadline=None)
@given(targets=st.lists(st.lists(st.floats(-4.0, 4.0), min_size=7, max_size=7), min_size=2, max_size=5))
def test_targets_at_and_beyond_position_limits_stay_inside(targets):
    """Fast chunks that slam into the position limits: braking must keep every joint inside."""
    arm = make_arm(with_collision=False)
    arm.set_measured(start_pose())
    now, cmds = 0.0, []
    for target in targets:
        values = np.array([start_pose(), target], dtype=float).ravel()
        arm.submit_chunk(NAMES, values, now, 0.05, 2, now)
        for _ in range(300):
            c = arm.step(now)
            cmds.append((c.position, c.velocity, c.acceleration))
            now += PERIOD
    check_limits(cmds)

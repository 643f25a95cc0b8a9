"""Arm corrector behaviour: blending across chunks, late chunks, bad input, obstacles."""

from __future__ import annotations

import numpy as np
import pytest
from _arm_fixture import LIMITS, NAMES, make_arm, start_pose

from physical_ai.control.arm_collision import ObstacleSpheres
from physical_ai.control.flags import Flag

PERIOD = 0.001


def sine_chunk(t0: float, horizon: int = 26, dt: float = 0.02, phase: float = 0.0) -> np.ndarray:
    t = t0 + dt * np.arange(horizon)
    return start_pose() + 0.4 * np.sin(1.5 * t[:, None] + np.arange(7) + phase)


def run(arm, seconds: float, t0: float, chunk_every: int | None = 100, phase_noise: float = 0.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    now, out = t0, []
    for k in range(int(seconds / PERIOD)):
        if chunk_every and k % chunk_every == 0:
            check = arm.submit_chunk(NAMES, sine_chunk(now, phase=rng.normal(0, phase_noise)).ravel(), now, 0.02, 26,
                                     now)
            assert check.reference is not None, check.reasons
        out.append(arm.step(now))
        now += PERIOD
    return out, now


def test_chunks_blend_without_stopping_or_velocity_jumps():
    arm = make_arm(with_collision=False)
    arm.set_measured(start_pose() + 0.4 * np.sin(np.arange(7)))
    out, _ = run(arm, 2.0, 0.0, phase_noise=0.05)
    vel = np.array([c.velocity for c in out])
    jumps = np.abs(np.diff(vel, axis=0)) - LIMITS.max_acceleration * PERIOD
    assert jumps.max() <= 1e-9  # no velocity discontinuity anywhere, chunk boundaries included
    speed = np.linalg.norm(vel[500:], axis=1)
    assert speed.min() > 0.05  # never stops at a boundary while chunks keep coming
    pos = np.array([c.position for c in out])
    ref = start_pose() + 0.4 * np.sin(1.5 * np.arange(len(out))[:, None] * PERIOD + np.arange(7))
    assert np.abs(pos[1000:] - ref[1000:]).max() < 0.15  # tracks the (noisy) reference


def test_late_chunk_extrapolates_then_stops_smoothly():
    arm = make_arm(with_collision=False)
    arm.set_measured(start_pose() + 0.4 * np.sin(np.arange(7)))
    arm.submit_chunk(NAMES, sine_chunk(0.0).ravel(), 0.0, 0.02, 26, 0.0)
    out = [arm.step(k * PERIOD) for k in range(1500)]
    flags = [c.flags for c in out]
    assert any(f & Flag.EXTRAPOLATING for f in flags[500:600])
    assert any("stopping" in " ".join(c.reasons) for c in out[700:])
    assert np.linalg.norm(out[-1].velocity) < 1e-6
    acc = np.array([c.acceleration for c in out])
    assert np.all(np.abs(acc) <= LIMITS.max_acceleration + 1e-9)


def test_reordered_names_are_mapped_by_name():
    a, b = make_arm(with_collision=False), make_arm(with_collision=False)
    for arm in (a, b):
        arm.set_measured(start_pose())
    values = sine_chunk(0.0)
    perm = [3, 0, 6, 1, 5, 2, 4]
    a.submit_chunk(NAMES, values.ravel(), 0.0, 0.02, 26, 0.0)
    check = b.submit_chunk([NAMES[i] for i in perm], values[:, perm].ravel(), 0.0, 0.02, 26, 0.0)
    assert check.reference is not None
    for k in range(200):
        ca, cb = a.step(k * PERIOD), b.step(k * PERIOD)
    np.testing.assert_allclose(ca.position, cb.position)


@pytest.mark.parametrize(("mutate", "reason"), [
    (lambda v, s: (NAMES, np.where(np.arange(v.size) == 3, np.nan, v), s, 0.02, 26), "NaN"),
    (lambda v, s: (NAMES, v[:-1], s, 0.02, 26), "wrong length"),
    (lambda v, s: (NAMES[:-1], v[: 26 * 6], s, 0.02, 26), "missing"),
    (lambda v, s: ([*NAMES[:-1], "joint1"], v, s, 0.02, 26), "duplicate"),
    (lambda v, s: (NAMES, v, s - 5.0, 0.02, 26), "stale"),
    (lambda v, s: (NAMES, v, s + 5.0, 0.02, 26), "future"),
    (lambda v, s: (NAMES, v, s, -0.02, 26), "dt"),
    (lambda v, s: (NAMES, v, s - 0.2, 0.02, 26), "non-monotonic"),
])
def test_bad_chunks_are_rejected_with_reason(mutate, reason):
    arm = make_arm(with_collision=False)
    arm.set_measured(start_pose())
    now = 1.0
    assert arm.submit_chunk(NAMES, sine_chunk(now).ravel(), now, 0.02, 26, now).reference is not None
    before = [arm.step(now + k * PERIOD).position for k in range(50)][-1]
    check = arm.submit_chunk(*mutate(sine_chunk(now).ravel(), now), now + 0.05)
    assert check.reference is None
    assert any(reason in r for r in check.reasons), check.reasons
    assert np.all(np.isfinite(before))


def test_out_of_limit_targets_are_clamped():
    """Targets a little beyond the limits (within the plausibility margin) are clamped; far beyond is rejected."""
    arm = make_arm(with_collision=False)
    arm.set_measured(start_pose())
    values = np.tile(LIMITS.upper + 0.3, (5, 1))
    check = arm.submit_chunk(NAMES, values.ravel(), 0.0, 0.05, 5, 0.0)
    assert check.clamped and any("clamped" in r for r in check.reasons)
    pos = np.array([arm.step(k * PERIOD).position for k in range(4000)])
    assert np.all(pos <= LIMITS.upper) and np.all(pos >= LIMITS.lower)


def test_obstacle_on_the_path_stops_the_arm_and_moving_away_is_allowed():
    arm = make_arm()
    arm.set_measured(start_pose())
    arm.step(0.0)
    tip = arm.collision.segments(start_pose())[1][6]
    # A target that moves the tip down/forward, and an obstacle 5 cm beyond the clearance in front of the tip.
    target = start_pose() + np.array([0, 0.6, 0, 0.4, 0, 0, 0])
    arm.submit_chunk(NAMES, np.array([start_pose(), target]).ravel(), 0.0, 1.0, 2, 0.0)
    tip_after = arm.collision.segments(target)[1][6]
    direction = (tip_after - tip) / np.linalg.norm(tip_after - tip)
    arm.set_obstacles((tip + direction * 0.2)[None], np.array([0.05]), np.zeros((1, 3)))
    out = [arm.step(k * PERIOD) for k in range(1, 3000)]
    assert any(c.flags & (Flag.OBSTACLE_STOP | Flag.OBSTACLE_SLOWDOWN) for c in out)
    assert min(c.min_clearance_m for c in out) > 0.0  # never touched
    assert min(c.min_clearance_m for c in out[-100:]) >= arm.config.clearance_m * 0.5
    assert np.linalg.norm(out[-1].velocity) < 1e-3


def test_capsule_model_jacobian_matches_finite_differences():
    arm = make_arm()
    cap = arm.collision
    q = start_pose()
    _, b = cap.segments(q)
    tip = b[6].copy()
    jac = cap.point_jacobian(tip, cap.body[6]).copy()
    numeric = np.zeros((3, 7))
    for i in range(7):
        dq = np.zeros(7)
        dq[i] = 1e-6
        numeric[:, i] = (cap.segments(q + dq)[1][6] - tip) / 1e-6
    np.testing.assert_allclose(jac, numeric, atol=1e-5)
    # Sphere-cover clearance against a brute-force distance to densely sampled capsule axes: never larger (it is
    # conservative), and smaller by at most the spheres' growth over the capsule radius.
    rng = np.random.default_rng(0)
    centers = tip + rng.uniform(-0.4, 0.4, (40, 3))
    radii = rng.uniform(0.0, 0.1, 40)
    c = cap.clearance(q, ObstacleSpheres.from_arrays(centers, radii, np.zeros((40, 3))))
    a, b = cap.segments(q)
    t = np.linspace(0, 1, 2001)[:, None, None]
    samples = a[None] + t * (b - a)[None]  # (T, G, 3)
    for dist, i in zip(c.distance, c.index, strict=True):
        brute = (np.linalg.norm(samples - centers[i], axis=2) - cap.radius[None]).min() - radii[i]
        assert dist <= brute + 1e-6
        assert dist >= brute - 0.13 * cap.radius.max()
    assert np.all(np.diff(c.distance) >= 0)


def test_arm_moves_away_from_an_obstacle_closing_in_on_it():
    """A hand moving at 0.3 m/s towards a holding arm: the barrier's retreat keeps them apart (holding would not)."""
    arm = make_arm()
    arm.set_measured(start_pose())
    arm.submit_chunk(NAMES, np.tile(start_pose(), (2, 1)).ravel(), 0.0, 1.0, 2, 0.0)
    tip = arm.collision.segments(start_pose())[1][6]
    direction = np.array([-1.0, 0.0, 0.0])  # the hand comes from +x towards the tip
    start = tip - direction * 0.35
    velocity = 0.3 * direction
    clearances, flags = [], 0
    for k in range(1500):
        now = k * PERIOD
        centre = start + velocity * now
        arm.set_obstacles(centre[None], np.array([0.05]), velocity[None])
        cmd = arm.step(now)
        flags |= cmd.flags
        clearances.append(cmd.min_clearance_m)
    assert flags & Flag.OBSTACLE_STOP
    assert min(clearances) > 0.0, "the hand reached the arm"
    # Holding still would have been hit: the hand passes through where the tip was.
    assert np.linalg.norm(start + velocity * 1.5 - tip) < 0.15


@pytest.mark.parametrize("cycle_s", [0.003, 0.005])  # a slow loop; a clock that moves in 5 ms simulator steps
def test_slow_or_coarse_loop_follows_the_chunk_in_time(cycle_s: float):
    """The command advances by the clock, not by cycles: joints and gripper keep the chunk's timing at any loop rate.

    Under ROS the loop's cycles do not line up with the (simulated) clock; with one nominal period per cycle the
    gripper closed far later than its chunk said and the arm lifted before the fingers had closed.
    """
    def drive(step_s: float) -> tuple[float, np.ndarray]:
        arm = make_arm(with_collision=False)
        q0 = start_pose()
        arm.set_measured(q0, 0.08)
        t = np.arange(30) * 0.05
        chunk = np.column_stack([q0 + 0.3 * np.minimum(t, 1.0)[:, None] * np.ones(7), np.maximum(0.08 - 0.1 * t, 0)])
        arm.submit_chunk([*NAMES, "gripper"], chunk.ravel(), 0.0, 0.05, 30, 0.0)
        now, closed_at, cmd = 0.0, None, None
        for k in range(int(1.4 / step_s) + 1):
            now = k * step_s
            cmd = arm.step(now)
            if closed_at is None and cmd.gripper < 0.005:
                closed_at = now
        return closed_at, cmd.position

    ref_closed, ref_pos = drive(PERIOD)
    closed, pos = drive(cycle_s)
    assert ref_closed is not None and closed is not None
    assert abs(closed - ref_closed) <= cycle_s + 1e-9
    assert np.abs(pos - ref_pos).max() < 0.01


def test_a_joint_trajectory_after_its_chunk_keeps_the_gripper_plan():
    """policy_inference sends each chunk also as a JointTrajectory of the arm joints (no gripper): the gripper must
    keep following the chunk, not freeze where it was when the trajectory arrived."""
    def drive(with_trajectory: bool) -> float:
        arm = make_arm(with_collision=False)
        q0 = start_pose()
        arm.set_measured(q0, 0.08)
        t = np.arange(20) * 0.05
        arm.submit_chunk([*NAMES, "gripper"], np.column_stack([np.tile(q0, (20, 1)), 0.08 - 0.08 * t]).ravel(), 0.0,
                         0.05, 20, 0.0)
        if with_trajectory:
            assert arm.submit_points(NAMES, np.tile(q0, (20, 1)), t, 0.0).reference is not None
        cmd = None
        for k in range(1200):  # the chunk ends at 0.95 s at 0.004 m
            cmd = arm.step(k * PERIOD)
        return cmd.gripper

    closed_with, closed_without = drive(True), drive(False)
    assert closed_without < 0.01
    assert abs(closed_with - closed_without) < 1e-9


def test_restart_clock_forgets_the_gripper_plan():
    """After a simulator reset the gripper holds the opening it is measured at until a new chunk: it must not follow
    the previous episode's chunk (which ended closed) and close the fingers before the policy has spoken."""
    arm = make_arm(with_collision=False)
    q0 = start_pose()
    arm.set_measured(q0, 0.08)
    # the last chunk of an episode that ended with the fingers closed
    arm.submit_chunk([*NAMES, "gripper"], np.column_stack([np.tile(q0, (20, 1)), np.zeros(20)]).ravel(), 30.0,
                     0.05, 20, 30.0)
    for k in range(1000):
        cmd = arm.step(30.0 + k * PERIOD)
    assert cmd.gripper < 0.01
    arm.restart_clock()                 # the clock jumped back to 0; the reset simulator opened the gripper
    arm.set_measured(q0, 0.08)
    openings = [arm.step(k * PERIOD).gripper for k in range(1, 500)]
    assert min(openings) == pytest.approx(0.08)
    # a new chunk moves it again
    arm.submit_chunk([*NAMES, "gripper"], np.column_stack([np.tile(q0, (20, 1)), np.full(20, 0.04)]).ravel(), 0.5,
                     0.05, 20, 0.5)
    assert [arm.step(0.5 + k * PERIOD).gripper for k in range(1, 600)][-1] == pytest.approx(0.04)


def test_a_corrector_taking_over_a_moving_arm_continues_its_motion_without_a_velocity_jump():
    """Started with the measured velocity (the world model's copy takes over an arm in motion), the first commands
    carry on at that velocity toward the chunk; started at rest, the command first stands still."""
    q = start_pose()
    v = np.array([0.5, -0.4, 0.3, 0.0, 0.6, 0.0, -0.2])
    chunk = q + v * 0.02 * np.arange(1, 27)[:, None]  # the motion the arm is making, continued
    first = {}
    for moving in (False, True):
        arm = make_arm(with_collision=False)
        arm.set_measured(q, velocity=v if moving else None)
        assert arm.submit_chunk(NAMES, chunk.ravel(), 0.0, 0.02, 26, 0.0).reference is not None
        first[moving] = arm.step(PERIOD)
    assert np.allclose(first[True].velocity, v, atol=LIMITS.max_acceleration.max() * 2 * PERIOD)
    assert np.abs(first[False].velocity).max() <= LIMITS.max_acceleration.max() * 2 * PERIOD
    # beyond the limits it starts at the limit
    arm = make_arm(with_collision=False)
    arm.set_measured(q, velocity=np.full(7, 10.0))
    assert arm.submit_chunk(NAMES, chunk.ravel(), 0.0, 0.02, 26, 0.0).reference is not None
    assert np.all(np.abs(arm.step(PERIOD).velocity) <= LIMITS.max_velocity + 1e-9)

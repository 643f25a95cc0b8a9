"""Vehicle corrector (lane keeping, stopping behind obstacles, limits), watchdogs and the deadline loop."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from physical_ai.control.flags import Flag
from physical_ai.control.loop_timer import LoopTimer
from physical_ai.control.vehicle import VehicleConfig, VehicleCorrector
from physical_ai.control.watchdog import Watchdog
from physical_ai.sim import lane

CFG = VehicleConfig(period_s=0.01)


def lane_path() -> np.ndarray:
    x, y, _ = lane.centerline(np.arange(0.0, lane.LENGTH, 0.5))
    return np.column_stack([x, y])


def drive(veh: VehicleCorrector, seconds: float, obstacle_s: float | None = None, pose0=None):
    """Kinematic bicycle in the loop; the obstacle is a stopped car's rear bumper on the lane at arc length s."""
    x, y, h = lane.centerline(0.0)
    pose = np.array([float(x), float(y) + 0.2, float(h)]) if pose0 is None else pose0
    speed, out = 0.0, []
    if obstacle_s is not None:
        ox, oy, _ = lane.centerline(obstacle_s)
    for k in range(int(seconds / CFG.period_s)):
        veh.set_pose(*pose, speed)
        if obstacle_s is not None:
            c, s = np.cos(pose[2]), np.sin(pose[2])
            d = np.array([float(ox), float(oy)]) - pose[:2]
            veh.set_obstacles(np.array([[c * d[0] + s * d[1], -s * d[0] + c * d[1]]]), np.zeros(1), np.zeros((1, 2)))
        cmd = veh.step(k * CFG.period_s)
        speed = cmd.speed
        pose = pose + CFG.period_s * np.array([speed * np.cos(pose[2]), speed * np.sin(pose[2]),
                                               speed * np.tan(cmd.steering_angle) / CFG.wheelbase])
        out.append((pose.copy(), cmd))
    return out


def test_tracks_the_lane_within_limits():
    veh = VehicleCorrector(CFG)
    veh.set_path(lane_path())
    out = drive(veh, 14.0)
    lateral = [abs(lane.project(*p[:2])[1]) for p, _ in out[300:]]  # after converging from a 0.2 m offset
    assert max(lateral) < 0.2
    steer = np.array([c.steering_angle for _, c in out])
    speed = np.array([c.speed for _, c in out])
    assert np.all(np.abs(steer) <= CFG.max_steer + 1e-9)
    assert np.all(np.abs(np.diff(steer)) <= CFG.max_steer_rate * CFG.period_s + 1e-9)
    curvature = np.abs(np.tan(steer)) / CFG.wheelbase
    assert np.all(speed ** 2 * curvature <= CFG.max_lateral_acc + 1e-6)
    assert speed.max() > CFG.cruise_speed - 0.1


def test_stops_behind_a_stopped_car_with_the_margin():
    veh = VehicleCorrector(CFG)
    veh.set_path(lane_path())
    out = drive(veh, 20.0, obstacle_s=45.0)
    gaps = []
    for pose, _ in out:
        s, _ = lane.project(*pose[:2])
        gaps.append(45.0 - (s + CFG.front_overhang))
    assert min(gaps) >= 2.0
    assert out[-1][1].speed == 0.0
    assert any(c.flags & (Flag.OBSTACLE_SLOWDOWN | Flag.OBSTACLE_STOP) for _, c in out)
    assert min(gaps) <= CFG.min_gap_m + 1.5, "stopped far earlier than needed"


@settings(max_examples=40, deadline=None)
@given(chunks=st.lists(st.tuples(st.one_of(st.floats(-5, 5), st.just(float("nan"))),
                                 st.one_of(st.floats(-50, 50), st.just(float("inf"))), st.integers(1, 80)),
                       min_size=1, max_size=6))
def test_any_policy_input_stays_inside_vehicle_limits(chunks):
    veh = VehicleCorrector(CFG)
    veh.set_pose(0.0, 0.0, 0.0, 0.0)
    now, out = 0.0, []
    for steer, speed, n in chunks:
        veh.submit_chunk(["speed", "steering_angle"], np.array([speed, steer]), now, 0.1, 1, now)
        for _ in range(n):
            c = veh.step(now)
            out.append((c.steering_angle, c.speed))
            now += CFG.period_s
    out = np.array(out)
    assert np.all(np.isfinite(out))
    assert np.all(np.abs(out[:, 0]) <= CFG.max_steer + 1e-9) and np.all(out[:, 1] >= 0)
    assert np.all(out[:, 1] <= CFG.max_speed + 1e-9)
    d = np.abs(np.diff(np.vstack([[0.0, 0.0], out]), axis=0))
    assert np.all(d[:, 0] <= CFG.max_steer_rate * CFG.period_s + 1e-9)
    assert np.all(d[:, 1] <= max(CFG.max_acc, CFG.max_decel) * CFG.period_s + 1e-9)


def test_watchdog_reports_stale_and_missing_inputs():
    wd = Watchdog({"action": 0.5, "state": 0.2, "off": 0.0}, {"action": Flag.STALE_ACTION, "state": Flag.STALE_STATE})
    flags, reasons = wd.check(1.0)
    assert flags == Flag.STALE_ACTION | Flag.STALE_STATE and all("never received" in r for r in reasons)
    wd.feed("action", 1.0)
    wd.feed("state", 1.0)
    assert wd.check(1.1) == (0, [])
    flags, reasons = wd.check(1.3)
    assert flags == Flag.STALE_STATE and "stale state" in reasons[0]


def test_loop_timer_keeps_its_rate_and_counts_misses():
    ticks: list[float] = []
    loop = LoopTimer(0.002, lambda: ticks.append(time.monotonic()))
    loop.run(max_cycles=200)
    assert loop.cycles == 200 and loop.error is None
    assert abs((ticks[-1] - ticks[0]) / 199 - 0.002) < 0.0005  # absolute deadlines: no drift

    def slow() -> None:
        time.sleep(0.003)

    late = LoopTimer(0.002, slow, spin_s=0.0)
    late.run(max_cycles=20)
    assert late.misses == 20 and late.miss_pct == 100.0 and late.skipped > 0
    assert late.cycle_ms.percentile(50) >= 3.0 and late.cpu_ms.percentile(50) < 1.0  # sleeping is not compute

    def boom() -> None:
        raise RuntimeError("cycle failed")

    broken = LoopTimer(0.001, boom)
    broken.run(max_cycles=5)
    assert isinstance(broken.error, RuntimeError)


def test_loop_timer_wake_runs_a_cycle_at_once_and_keeps_the_phase():
    period = 0.05
    ticks: list[tuple[float, float]] = []  # (time, dt_s) per cycle
    loop = LoopTimer(period, lambda: ticks.append((time.monotonic(), loop.dt_s)))
    loop.start()
    try:
        time.sleep(2.2 * period)  # mid-way between two deadlines
        woke_at = time.monotonic()
        loop.wake()
        time.sleep(3 * period)
    finally:
        loop.stop()
    assert loop.error is None and loop.woken == 1
    # the woken cycle is the only one standing for less than a period (a periodic cycle made late by a busy machine
    # may run between the wake-up and it, and stands for a whole period)
    k = next(i for i, (t, dt) in enumerate(ticks) if t >= woke_at and dt < period - 1e-9)
    assert ticks[k][0] - woke_at < 0.5 * period  # at once, not at the next deadline
    # the woken cycle and the next periodic one together stand for one period; the periodic phase is kept
    assert 0.0 < ticks[k][1] < period and ticks[k][1] + ticks[k + 1][1] == pytest.approx(period)
    periodic = [t for i, (t, _) in enumerate(ticks) if i != k]
    phase = (np.array(periodic) - periodic[0]) / period
    assert np.allclose(phase, np.round(phase), atol=0.3)

"""Trajectory-correction benchmarks: loop timing, collision check cost, chunk-boundary smoothness, AMR reaction.

Each figure is printed beside a baseline measured in the same run:
- arm loop at 1 kHz (7 DoF, 50 obstacles): compute p99 and deadline misses of the deadline loop, with background
  load processes standing in for perception and policy; baseline: a naive sleep(period) loop under the same load.
- 24k-point collision check (binning + footprint sweep with obstacle prediction); baseline: the same sweep on raw
  points without binning.
- chunk boundaries: the largest velocity change per cycle beyond what the acceleration limit allows (0 = no jump),
  ruckig blending vs naive switching to each new chunk.
- AMR reaction: processing time from the LiDAR frame in which a crossing worker first enters the path to the first
  corrected command (p99 over many crossings).
Scenario figures (sim in the loop) are printed by bench/control_scenarios_bench.py when the simulator is present.

Usage: python bench/control_bench.py [--seconds 10] [--load 1] [--smoke]
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from physical_ai.control.amr import AmrConfig, AmrCorrector  # noqa: E402
from physical_ai.control.arm import ArmConfig, ArmCorrector  # noqa: E402
from physical_ai.control.arm_collision import CapsuleArm, ObstacleSpheres  # noqa: E402
from physical_ai.control.footprint import Footprint, arc_poses, bin_points, rect_distance, sweep  # noqa: E402
from physical_ai.control.limits import JointLimits  # noqa: E402
from physical_ai.control.loop_timer import LoopTimer  # noqa: E402

NAMES = [f"joint{i}" for i in range(1, 8)]
LIMITS = JointLimits.from_lists(
    NAMES, [-2.9, -1.76, -2.9, -0.2, -2.9, -2.6, -2.9], [2.9, 1.76, 2.9, 2.9, 2.9, 2.6, 2.9],
    [1.5, 1.5, 1.5, 1.5, 2.0, 2.0, 2.0], [5.0] * 4 + [8.0] * 3, [50.0] * 4 + [80.0] * 3)
HOME = np.array([0.0, 0.3, 0.0, 1.2, 0.0, 0.8, 0.0])
GIL_SWITCH_S = 1e-4


def bench(name: str, value: float, unit: str) -> None:
    print(f"BENCH {name} {value:.6g} {unit}", flush=True)


def _load_worker(stop) -> None:
    """Perception/policy stand-in: numpy work in a loop (a 24k-point cloud transform and a small MLP)."""
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(24000, 3))
    w = rng.normal(size=(256, 256))
    x = rng.normal(size=(64, 256))
    while not stop.is_set():
        pts = pts @ np.eye(3) + 0.0
        x = np.tanh(x @ w) * 0.5
        time.sleep(0.002)


def sine_chunk(t0: float, phase: float, horizon: int = 26, dt: float = 0.02) -> np.ndarray:
    t = t0 + dt * np.arange(horizon)
    return HOME + 0.4 * np.sin(1.2 * t[:, None] + np.arange(7) + phase)


def make_arm() -> ArmCorrector:
    collision = CapsuleArm.from_file(ROOT / "models" / "arm_cell" / "arm_cell.xml", NAMES, "col_")
    arm = ArmCorrector(LIMITS, ArmConfig(), collision)
    arm.set_measured(sine_chunk(0.0, 0.0)[0])
    return arm


def obstacles_50(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """50 spheres around the cell; a few within the slow-down range so the barrier is evaluated every cycle."""
    centres = np.column_stack([rng.uniform(-1.0, 1.0, 50), rng.uniform(-1.0, 1.0, 50), rng.uniform(0.4, 1.6, 50)])
    centres[:3] = [[0.55, 0.25, 1.0], [0.5, -0.3, 0.9], [0.3, 0.0, 1.45]]
    return centres, rng.uniform(0.03, 0.1, 50), rng.normal(0, 0.3, (50, 3))


def arm_loop(seconds: float, rt_priority: int) -> None:
    """The 1 kHz arm loop with 7 joints and 50 obstacles, threaded as in the node.

    Chunks (10 Hz) and obstacles (30 Hz) arrive on another thread, are checked/converted there and handed to the
    corrector under a lock; the loop thread only steps it. Compute = the loop thread's CPU time per cycle.
    With `rt_priority`, the loop thread runs SCHED_FIFO at that priority and the feeder 10 below (as under
    `chrt -f` for the whole node process); it is run once without real-time scheduling first, for comparison.
    """
    rng = np.random.default_rng(1)
    arm = make_arm()
    centres, radii, vel = obstacles_50(rng)
    arm.set_obstacles(centres, radii, vel)
    lock = threading.Lock()
    t0 = time.monotonic()

    def feeder(done: threading.Event, priority: int) -> None:  # the executor thread's work
        if priority:
            try:
                os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
            except OSError:
                pass
        k = 0
        while not done.wait(1.0 / 30.0):
            now = time.monotonic() - t0
            obstacles = ObstacleSpheres.from_arrays(centres + vel * 0.01 * np.sin(now), radii, vel)
            check = arm.check_chunk(NAMES, sine_chunk(now, rng.normal(0, 0.02)).ravel(), now, 0.02, 26, now) \
                if k % 3 == 0 else None
            with lock:  # only the hand-over holds the lock, as in the node
                if check is not None:
                    arm.accept(check, now)
                arm.obstacles = obstacles
            k += 1

    def cycle() -> None:
        with lock:
            arm.step(time.monotonic() - t0)

    # A thread holding the GIL keeps it up to the switch interval (5 ms by default) before the loop thread gets it;
    # the node sets the same (see nodes/trajectory_correction.py).
    sys.setswitchinterval(GIL_SWITCH_S)

    def run(n: int, priority: int) -> LoopTimer:
        done = threading.Event()
        feed = threading.Thread(target=feeder, args=(done, max(priority - 10, 1) if priority else 0), daemon=True)
        feed.start()
        loop = LoopTimer(0.001, cycle, window=n, rt_priority=priority)
        thread = threading.Thread(target=loop.run, kwargs={"max_cycles": n})  # its own thread, as in the node
        thread.start()
        thread.join()
        done.set()
        feed.join()
        return loop

    n = int(seconds * 1000)
    if rt_priority:
        plain = run(n // 2, 0)
        bench("control.arm_loop_1khz.no_rt_deadline_miss_pct", plain.miss_pct, "%")
        bench("control.arm_loop_1khz.no_rt_p99_cycle_ms", plain.cpu_ms.percentile(99), "ms")
    loop = run(n, rt_priority)
    if rt_priority:
        print(f"# loop thread scheduling: {'SCHED_FIFO ' + str(rt_priority) if loop.realtime else loop.rt_error}")
    bench("control.arm_loop_1khz.sched_fifo", float(loop.realtime), "bool")
    # Compute per cycle = the loop thread's CPU time; wall time adds preemption and GIL waits, which is what
    # deadline misses measure.
    bench("control.arm_loop_1khz.p99_cycle_ms", loop.cpu_ms.percentile(99), "ms")
    bench("control.arm_loop_1khz.p50_cycle_ms", loop.cpu_ms.percentile(50), "ms")
    bench("control.arm_loop_1khz.p99_cycle_wall_ms", loop.cycle_ms.percentile(99), "ms")
    bench("control.arm_loop_1khz.deadline_miss_pct", loop.miss_pct, "%")

    # Baseline: the same work in a naive sleep(period) loop; a "miss" is a cycle starting > 1 period late.
    misses, cycles, t_next = 0, 0, time.monotonic()
    t_end = t_next + seconds / 2
    while time.monotonic() < t_end:
        start = time.monotonic()
        if start - t_next > 0.001:
            misses += 1
        t_next = start + 0.001
        arm.step(start - t0)
        time.sleep(0.001)
        cycles += 1
    bench("control.arm_loop_1khz.naive_sleep_deadline_miss_pct", 100.0 * misses / max(cycles, 1), "%")
    bench("control.arm_loop_1khz.naive_sleep_rate_hz", cycles / (seconds / 2), "Hz")


def cloud_24k(rng: np.random.Generator) -> np.ndarray:
    """A factory-like 24k-point cloud in base_link: floor (removed by the height band), shelves, a worker."""
    floor = np.column_stack([rng.uniform(-15, 15, 12000), rng.uniform(-15, 15, 12000), rng.normal(0, 0.01, 12000)])
    shelf_x = rng.uniform(-15, 15, 9000)
    shelves = np.column_stack([shelf_x, np.where(rng.random(9000) < 0.5, -1.6, 1.6) + rng.normal(0, 0.05, 9000),
                               rng.uniform(0.05, 2.0, 9000)])
    worker = np.column_stack([rng.normal(3.0, 0.12, 3000), rng.normal(0.8, 0.12, 3000), rng.uniform(0.05, 1.7, 3000)])
    return np.concatenate([floor, shelves, worker])


def collision_check(reps: int = 400) -> None:
    rng = np.random.default_rng(2)
    cloud = cloud_24k(rng)
    fp = Footprint()
    times = np.linspace(0.0, 2.0, 21)
    obstacles = (rng.uniform(-5, 5, (10, 2)), np.full(10, 0.3), rng.normal(0, 1.0, (10, 2)))
    reach = 1.0 * 2.0 + fp.radius + 0.3 + 0.5
    v, w = np.array([1.0]), np.array([0.1])

    def ours() -> None:
        band = cloud[(cloud[:, 2] > 0.05) & (cloud[:, 2] < 1.8), :2]
        cells, pad = bin_points(band, reach, 0.1)
        sweep(fp, v, w, times, cells, pad, obstacles, 0.3)

    def naive() -> None:  # every point at every sample time, no binning or culling
        band = cloud[(cloud[:, 2] > 0.05) & (cloud[:, 2] < 1.8), :2]
        x, y, th = arc_poses(v, w, times)
        c, s = np.cos(th)[0, :, None], np.sin(th)[0, :, None]
        dx, dy = band[None, :, 0] - x[0, :, None], band[None, :, 1] - y[0, :, None]
        rect_distance(c * dx + s * dy, -s * dx + c * dy, fp.length / 2, fp.width / 2).min()

    for name, fn, n in (("collision_check_24k", ours, reps), ("collision_check_24k.naive", naive, reps // 4)):
        t = []
        for _ in range(n):
            start = time.perf_counter()
            fn()
            t.append(time.perf_counter() - start)
        t = np.array(t) * 1e3
        bench(f"control.{name}.ms", float(np.median(t)), "ms")
        bench(f"control.{name}.p99_ms", float(np.percentile(t, 99)), "ms")


def chunk_boundary(seconds: float = 4.0) -> None:
    """Chunks re-planned every 100 ms with a small random phase change (a policy's view shifts between chunks)."""
    rng = np.random.default_rng(3)
    arm = ArmCorrector(LIMITS, ArmConfig(), None)
    arm.set_measured(sine_chunk(0.0, 0.0)[0])
    period = 0.001
    vel, naive_vel = [], []
    ref = None
    for k in range(int(seconds / period)):
        now = k * period
        if k % 100 == 0:
            values = sine_chunk(now, rng.normal(0, 0.05))
            arm.submit_chunk(NAMES, values.ravel(), now, 0.02, 26, now)
            ref = values
        vel.append(arm.step(now).velocity)
        # Naive switching: command the newest chunk's interpolated trajectory as it is.
        i = min(int((now - (k // 100) * 0.1) / 0.02), 24)
        naive_vel.append((ref[i + 1] - ref[i]) / 0.02)
    amax = LIMITS.max_acceleration * period
    jump = np.max(np.maximum(np.abs(np.diff(np.array(vel), axis=0)) - amax, 0.0))
    naive = np.max(np.maximum(np.abs(np.diff(np.array(naive_vel), axis=0)) - amax, 0.0))
    bench("control.chunk_boundary.max_velocity_jump", float(jump), "rad/s")
    bench("control.chunk_boundary.naive_max_velocity_jump", float(naive), "rad/s")


def amr_reaction(trials: int = 200) -> None:
    """An AMR driving at 1 m/s towards a worker who crosses its path at 1.4 m/s.

    "Enters the path" is the first frame in which the worker's current position (no prediction) lies in the
    corridor the footprint sweeps over the look-ahead (the corrector's motion model: ramp to the nominal speed,
    hold, brake to rest): where a collision monitor without prediction would react. Per crossing, the first
    frame whose command is corrected is found; its processing time (height band, binning, sweep with
    prediction, speed choice) is the reaction. `reaction_lead_s` is how
    long before the worker entered the path the correction came (>= 0: not late).
    """
    rng = np.random.default_rng(4)
    base = cloud_24k(rng)
    base = base[np.abs(base[:, 0] - 3.0) > 1.0][:20000]  # no standing worker in this scene
    cfg = AmrConfig(period_s=0.01)
    times, leads = [], []
    for _ in range(trials):
        amr = AmrCorrector(cfg)
        amr.set_pose(0.0, 0.0, 0.0)
        amr._out[:] = (1.0, 0.0)  # already cruising
        wy = rng.uniform(2.5, 4.5)
        # Timed so that the worker reaches the lane when the base is 0.5-2.5 m short of their line.
        ahead, now = (wy - 0.5) / 1.4 + rng.uniform(0.5, 2.5), 0.0
        corrected_at = entered_at = None
        frame_ms = 0.0
        for _ in range(600):
            worker_xy = np.array([[ahead, wy]])
            worker = np.column_stack([rng.normal(ahead, 0.12, 4000), rng.normal(wy, 0.12, 4000),
                                      rng.uniform(0.05, 1.7, 4000)])
            cloud = np.concatenate([base, worker])
            start = time.perf_counter()  # the frame arrives
            amr.set_points(cloud[(cloud[:, 2] > 0.05) & (cloud[:, 2] < 1.8), :2])
            amr.set_obstacles(worker_xy, np.array([0.25]), np.array([[0.0, -1.4]]))
            amr.submit_cmd_vel(1.0, 0.0, now)
            cmd = amr.step(now)
            elapsed = time.perf_counter() - start
            if corrected_at is None and (cmd.flags or cmd.linear < 1.0 - 1e-9):
                corrected_at = now
                frame_ms = elapsed * 1e3
            if entered_at is None:  # the worker, standing where they are, inside the corridor the base will sweep
                t_hit, _ = sweep(cfg.footprint, np.array([1.0]), np.zeros(1),
                                 np.linspace(0, cfg.horizon_s, cfg.samples), np.zeros((0, 2)), 0.0,
                                 (worker_xy, np.array([0.25]), np.zeros((1, 2))), cfg.clearance_m,
                                 (cmd.linear, 0.0, cfg.max_linear_acc, cfg.max_angular_acc))
                if np.isfinite(t_hit[0]):
                    entered_at = now
            if entered_at is not None and corrected_at is not None:
                leads.append(entered_at - corrected_at)
                times.append(frame_ms)
                break
            if ahead < -1.0:  # the worker is behind the base: never in its path
                break
            ahead -= cmd.linear * 0.01  # the base drives towards the crossing
            wy -= 1.4 * 0.01
            now += 0.01
    t = np.array(times)
    leads = np.array(leads)
    bench("control.amr.reaction_ms", float(np.percentile(t, 99)), "ms")
    bench("control.amr.reaction_p50_ms", float(np.median(t)), "ms")
    bench("control.amr.reaction_lead_s", float(np.median(leads)), "s")
    bench("control.amr.late_reactions", float(np.sum(leads < 0)), "count")
    bench("control.amr.crossings_in_path", float(len(leads)), "count")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="1 kHz loop duration [s]")
    parser.add_argument("--load", type=int, default=1, help="background load processes during the loop")
    parser.add_argument("--rt-priority", type=int, default=80,
                        help="SCHED_FIFO priority of the loop thread (0 = normal scheduling); needs CAP_SYS_NICE")
    parser.add_argument("--smoke", action="store_true", help="every measurement once, briefly; figures not meaningful")
    args = parser.parse_args()
    if args.smoke:
        args.seconds = 0.5
    stop = mp.Event()
    workers = [mp.Process(target=_load_worker, args=(stop,), daemon=True) for _ in range(args.load)]
    for p in workers:
        p.start()
    try:
        arm_loop(args.seconds, args.rt_priority)
    finally:
        stop.set()
        for p in workers:
            p.join(2.0)
    collision_check(5 if args.smoke else 400)
    chunk_boundary(0.5 if args.smoke else 4.0)
    amr_reaction(3 if args.smoke else 200)
    gc.unfreeze()  # the loop froze its startup objects; free them (and ruckig's native objects) before exit
    gc.collect()
    return 0


if __name__ == "__main__":
    sys.exit(main())

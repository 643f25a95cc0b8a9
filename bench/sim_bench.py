"""Simulator benchmarks: ROS-free core pinned to one CPU core.

Real-time factor with all sensors at nominal rates, LiDAR and RGB-D cost per frame, and scripted-expert success
over 20 seeded episodes.

Baselines measured in the same run: physics-only RTF; per-ray mj_ray loop vs one mj_multiRay call; the documented
two-pass mujoco.Renderer (colour, then depth) vs our one-pass read-back; the AMR expert without its yield rule.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("LP_NUM_THREADS", "1")  # software GL: one rendering thread, like one core
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

import mujoco
import numpy as np

from physical_ai.sim.experts import AmrStationExpert, run_episode
from physical_ai.sim.runner import SensorGeometry, SimRunner
from physical_ai.sim.scenarios import make_scenario
from physical_ai.sim.sensors import Lidar, RgbdCamera, SensorNoise

EPISODES = 20


def bench(name: str, value: float, unit: str) -> None:
    """Print one figure in the project's format."""
    print(f"BENCH {name} {value:.4g} {unit}", flush=True)


def realtime_factor(scenario: str, sim_s: float = 6.0, reps: int = 3) -> None:
    """RTF with every stream at its nominal rate (camera 15 Hz, LiDAR 10 Hz, joint states 100 Hz ...)."""
    geometry = SensorGeometry(max_depth=40.0 if scenario == "vehicle" else 10.0)
    rtfs, physics = [], []
    for rep in range(reps):
        runner = SimRunner(make_scenario(scenario, rep), geometry=geometry, seed=rep)
        runner.advance(0.2)  # renderer start-up
        t = time.perf_counter()
        runner.advance(sim_s)
        rtfs.append(sim_s / (time.perf_counter() - t))
        runner.close()
        sc = make_scenario(scenario, rep)
        n = round(sim_s / sc.timestep)
        t = time.perf_counter()
        sc.step(n)
        physics.append(sim_s / (time.perf_counter() - t))
    streams = ", ".join(f"{k} {v.rate_hz:g} Hz" for k, v in runner.streams.items())
    print(f"# {scenario}: {streams}")
    bench(f"sim.{scenario}.realtime_factor", float(np.median(rtfs)), "x")
    bench(f"sim.{scenario}.realtime_factor.baseline_physics_only", float(np.median(physics)), "x")


def lidar(reps: int = 40) -> None:
    """16 x 1800 rays in the factory: one mj_multiRay vs a Python loop of mj_ray."""
    sc = make_scenario("amr", 0)
    lid = Lidar(sc.model, "lidar_link", 16, 1800)
    rng = np.random.default_rng(0)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        lid.scan(sc.data, SensorNoise(sigma=0.01), rng)
        times.append((time.perf_counter() - t) * 1e3)
    bench("sim.lidar_16x1800.ms", float(np.median(times)), "ms")
    bench("sim.lidar_16x1800.ms.p99", float(np.percentile(times, 99)), "ms")
    origin = sc.data.xpos[lid.body_id].copy()
    R = sc.data.xmat[lid.body_id].reshape(3, 3)
    dirs = lid.dirs @ R.T
    gid = np.zeros(1, np.int32)
    loop = []
    for _ in range(3):
        t = time.perf_counter()
        for d in dirs:
            mujoco.mj_ray(sc.model, sc.data, origin, d, lid.geomgroup, 1, -1, gid)
        loop.append((time.perf_counter() - t) * 1e3)
    bench("sim.lidar_16x1800.ms.baseline_mj_ray_loop", float(np.median(loop)), "ms")


def rgbd(reps: int = 30) -> None:
    """640 x 480 colour + depth in the factory: one render pass read back twice vs two Renderer.render() calls."""
    sc = make_scenario("amr", 0)
    cam = RgbdCamera(sc.model, sc.camera, 640, 480)
    try:
        for fn, name in ((cam.render, "sim.rgbd_640x480.ms"),
                         (cam.render_two_pass, "sim.rgbd_640x480.ms.baseline_two_pass_renderer")):
            fn(sc.data)
            times = []
            for _ in range(reps):
                t = time.perf_counter()
                fn(sc.data)
                times.append((time.perf_counter() - t) * 1e3)
            bench(name, float(np.median(times)), "ms")
    finally:
        cam.close()


def experts(episodes: int = EPISODES) -> None:
    """Scripted experts over `episodes` seeded episodes each."""
    for scenario in ("amr", "arm", "vehicle"):
        t = time.perf_counter()
        results = [run_episode(scenario, seed) for seed in range(episodes)]
        wins = sum(ok for ok, _ in results)
        mean_t = np.mean([sc.data.time for _, sc in results])
        print(f"# {scenario}: {wins}/{episodes} in {time.perf_counter() - t:.1f} s wall, mean episode "
              f"{mean_t:.1f} s sim")
        bench(f"sim.{scenario}.expert_success", wins / episodes, "fraction")
        if scenario == "amr":
            clear = [sc.ground_truth().min_person_clearance_m for _, sc in results]
            bench("sim.amr.expert_min_person_clearance_m", float(np.min(clear)), "m")
            base = [run_episode("amr", seed, expert=AmrStationExpert(yield_to_workers=False))
                    for seed in range(episodes)]
            bench("sim.amr.expert_success.baseline_no_yield", sum(ok for ok, _ in base) / episodes, "fraction")


def main() -> None:
    """Run every simulator benchmark (`--smoke`: each once, briefly; the figures mean nothing)."""
    smoke = "--smoke" in sys.argv[1:]
    for scenario in ("arm", "amr", "vehicle"):
        realtime_factor(scenario, *((0.5, 1) if smoke else ()))
    lidar(2 if smoke else 40)
    rgbd(2 if smoke else 30)
    experts(1 if smoke else EPISODES)


if __name__ == "__main__":
    main()

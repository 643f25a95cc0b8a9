"""The fleet over ROS 2: three AMRs on one simulated factory floor, each with its own namespaced stack and policy.

BENCH fleet.amr.success              the lowest per-robot success rate over the seeds (issue 19: >= 0.95 per robot)
BENCH fleet.amr.collisions           contacts of any robot with anything, summed over robots and seeds (target 0)
BENCH fleet.amr.success.<robot>      each robot's success rate
BENCH fleet.amr.robot_contacts       robot-robot contacts (counted once per robot in the contact)
BENCH fleet.amr.person_contacts      robot-person contacts
BENCH fleet.amr.min_robot_clearance_m  smallest hull-to-hull distance between two robots over the run
BENCH fleet.amr.min_person_clearance_m smallest footprint-to-worker distance over the run
BENCH fleet.amr.reaction_p50_ms      LiDAR frame with a worker entering a robot's path -> first corrected cmd_vel
                                     (median over every robot's events; alongside the events' count)
BENCH fleet.amr.wall_s_per_episode   wall time per episode (the simulator runs at config/fleet.yaml's half real time)

The fleet is `physical_ai.bringup.fleet` as `physai demo fleet` runs it (simulator, 3 x perception, policy,
corrector; 10 processes), seeds 200000.. (never training seeds). `make bench` runs PHYSAI_BENCH_FLEET_SEEDS=2
seeds (shortened); the issue's 20-seed figure: `PHYSAI_BENCH_FLEET_SEEDS=20 python bench/fleet_bench.py` (or in
parts, each from `PHYSAI_BENCH_FLEET_FIRST_SEED`).
`--policy-server` serves the three robots' policies from one `physai serve` process instead. `--inprocess`: the same
seeds in one process through the perception, policy and correction cores (`physical_ai.training.fleet_eval`, faster
than real time and independent of the machine's load; prints the success, contact and clearance lines only).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FIRST_SEED = int(os.environ.get("PHYSAI_BENCH_FLEET_FIRST_SEED", "200000"))  # split long runs into jobs
SEEDS = int(os.environ.get("PHYSAI_BENCH_FLEET_SEEDS", "2"))


def bench(name: str, value: float, unit: str) -> None:
    """Print one BENCH line."""
    print(f"BENCH {name} {value:.4g} {unit}", flush=True)


def progress_line(run, gt) -> str:
    """Sim time and each robot's progress (every 10 s of wall time)."""
    robots = []
    for name, monitor in run.monitors.items():
        own = monitor.state()["gt"]
        if own is not None:
            robots.append(f"{name} {own.progress * 100:3.0f}%{' done' if own.task_success else ''}")
    return f"t={gt.header.stamp.sec:3d} s  {'  '.join(robots)}  contacts={gt.collisions}"


def inprocess() -> int:
    """The fleet in-process over the seeds (`physical_ai.training.fleet_eval`)."""
    from physical_ai.training.fleet_eval import evaluate_fleet

    print(f"load average before: {os.getloadavg()[0]:.2f}; in-process; {SEEDS} seed(s) from {FIRST_SEED}", flush=True)
    episodes = evaluate_fleet(ROOT / "models" / "amr_nav", range(FIRST_SEED, FIRST_SEED + SEEDS),
                              on_episode=lambda rows: print(*rows, sep="\n", flush=True))
    rows = [r for episode in episodes for r in episode]
    robots = sorted({r.robot for r in rows})
    success = {robot: float(np.mean([r.success for r in rows if r.robot == robot])) for robot in robots}
    bench("fleet.amr.inprocess.success", min(success.values()), "fraction")
    bench("fleet.amr.inprocess.collisions", sum(sum(r.contacts.values()) for r in rows), "count")
    for robot in robots:
        bench(f"fleet.amr.inprocess.success.{robot}", success[robot], "fraction")
    bench("fleet.amr.inprocess.min_robot_clearance_m", min(r.min_robot_clearance_m for r in rows), "m")
    bench("fleet.amr.inprocess.min_person_clearance_m", min(r.min_person_clearance_m for r in rows), "m")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


def main(argv: list[str]) -> int:
    """Run the fleet over the seeds and print BENCH lines; a JSON report next to the node logs."""
    if "--inprocess" in argv:
        return inprocess()
    from physical_ai.bringup.fleet import FleetRun, fleet_commands, fleet_params, summarise
    from physical_ai.bringup.processes import stop_on_sigterm
    from physical_ai.training.ros_eval import private_domain_id

    policy_server = str(ROOT / "models" / "amr_nav") if "--policy-server" in argv else None
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env = dict(os.environ, ROS_DOMAIN_ID=str(private_domain_id()))
    params = fleet_params()
    log_dir = Path(tempfile.mkdtemp(prefix="fleet_bench_"))
    loads = [os.getloadavg()[0]]
    print(f"load average before: {loads[0]:.2f}; {os.cpu_count()} cores; {SEEDS} seed(s) from {FIRST_SEED}; "
          f"{'one policy server' if policy_server else 'one policy per robot'}; logs in {log_dir}", flush=True)
    results, walls = [], []
    # SIGTERM (timeout, a CI runner) stops the fleet's processes as Ctrl-C does: they run in sessions of their own
    with stop_on_sigterm(), FleetRun(fleet_commands(params, seed=FIRST_SEED,
                                                    policy_server=policy_server), params, log_dir=log_dir,
                                     env=env) as run:
        t_ready = time.monotonic()
        run.wait_ready()
        if "--smoke" in argv:  # make test: the fleet's bring-up proves the bench runs (an episode takes minutes)
            bench("fleet.amr.smoke_ready_s", time.monotonic() - t_ready, "s")
            return 0
        for k in range(SEEDS):
            t0 = time.monotonic()
            episode = run.episode(FIRST_SEED + k, progress=lambda gt, run=run: print(progress_line(run, gt),
                                                                                       flush=True),
                                  progress_period_s=10.0)
            walls.append(time.monotonic() - t0)
            loads.append(os.getloadavg()[0])
            results.append(episode)
            for r in episode:
                print(f"seed {r.seed} {r.robot}: {'success' if r.success else 'FAIL'} t={r.time_s} s "
                      f"progress={r.progress} contacts={r.contacts} min clearance person={r.min_person_clearance_m} "
                      f"robot={r.min_robot_clearance_m} m, saw {r.robots_seen}, reactions {r.reaction_ms} ms",
                      flush=True)
    summary = summarise(results)
    summary["load_average"] = loads
    (log_dir / "fleet_bench.json").write_text(json.dumps(summary, indent=2) + "\n")
    reactions = [ms for episode in results for r in episode for ms in r.reaction_ms]
    bench("fleet.amr.success", summary["success_min_over_robots"], "fraction")
    bench("fleet.amr.collisions", summary["collisions"], "count")
    for robot, s in summary["robots"].items():
        bench(f"fleet.amr.success.{robot}", s["success"], "fraction")
    bench("fleet.amr.robot_contacts", summary["robot_robot_contacts"], "count")
    bench("fleet.amr.person_contacts", summary["robot_person_contacts"], "count")
    bench("fleet.amr.min_robot_clearance_m", min(s["min_robot_clearance_m"] for s in summary["robots"].values()), "m")
    bench("fleet.amr.min_person_clearance_m",
          min(s["min_person_clearance_m"] for s in summary["robots"].values()), "m")
    if reactions:
        bench("fleet.amr.reaction_p50_ms", float(np.median(reactions)), f"ms ({len(reactions)} events)")
    bench("fleet.amr.wall_s_per_episode", float(np.median(walls)), "s")
    print(f"load average during the episodes: {' '.join(f'{x:.2f}' for x in loads)}; report {log_dir}/fleet_bench.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

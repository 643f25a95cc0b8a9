"""End-to-end benchmark of the whole AMR stack: reaction latency to a crossing worker, and CPU per node.

The AMR bring-up of `physai run amr --sim mujoco` (simulator, perception, policy, corrector; each its own
process, config/amr.yaml, sim time at real-time rate) runs seeded episodes of the factory-floor scenario,
started one after another with `/sim/reset`. In every episode a worker crosses ahead of the AMR: each worker
starts walking when the AMR comes within `--worker-trigger-m` of its aisle (mujoco_sim `worker_trigger_m`, a
triggered target as in Euro NCAP's pedestrian tests). Two passes, each with its own bring-up: normal scheduling
everywhere, then the `.loaded` pass (below); the scheduling used is printed.
A monitor (the `physai demo` run monitor) measures on the wire: every time is a DDS timestamp on the system clock
(a publisher's write, or the middleware's reception at the monitor), never when its Python executor ran a
callback; a sim-time stamp is taken at the wall time its sim time was due (the simulator's /clock publications).

BENCH e2e.amr.reaction_p99_ms   per episode, from the stamp of the first LiDAR frame in which a worker is inside
                                the moving (>= 0.2 m/s) AMR's swept path (ground truth; the path the corrector
                                checks its present command along, footprint + clearance, `in_swept_path`: a worker
                                farther ahead needs no correction yet) to the first corrected command on the
                                wire: the write of the first /correction/status (published right after the cycle's
                                cmd_vel; the corrector reports such a cycle at once) that flags an obstacle
                                slowdown/stop/steer AND used that frame or a newer obstacle input
                                (`obstacles_stamp`: a cycle that was already slowing for a predicted crossing does
                                not count); p99 over 20 seeded episodes with such an event (p50 printed too;
                                seeds run on, up to 40, until 20 have one). Episodes
                                where the worker's tracked motion clears the path in time need no correction and
                                are counted apart, as are episodes with no worker in the path while moving.
BENCH e2e.amr.reaction_seeds    seeded episodes it took to get those events
BENCH e2e.amr.*.loaded          the same pass again with a competing load: `--busy` (2) busy processes at normal
                                priority for the whole pass (localisation and a planner); the corrector and the
                                simulator under SCHED_FIFO where this process may use it (the plain pass uses normal
                                scheduling everywhere, as `physai run` and `make demo` do)
BENCH e2e.amr.lidar_transport_p99_ms  baseline in the same run: LiDAR stamp to the frame's reception by the
                                middleware at the monitor (the sensor's modelled 10 ms latency + the simulator's
                                delivery + transport), the floor under any reaction; the simulator's share
                                (stamp -> its write) is printed beside it
BENCH e2e.cpu_pct               CPU of all stack processes together, % of one core (this machine has os.cpu_count())
BENCH e2e.cpu_pct.<node>        the same per node; mujoco_sim stands in for the robot and its sensor drivers
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EVENTS = 20
MAX_EPISODES = 40
FIRST_SEED = 500
EPISODE_SIM_S = 30.0
WORKER_TRIGGER_M = 4.5
BUSY = 2
PASSES = ("normal", "loaded")


def bench(name: str, value: float, unit: str) -> None:
    """Print one BENCH line."""
    print(f"BENCH {name} {value:.4g} {unit}", flush=True)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process [s] from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _sim_time(gt) -> float:
    return gt.header.stamp.sec + gt.header.stamp.nanosec * 1e-9


def _busy(stop) -> None:
    """A competing process at normal priority: spins until told to stop."""
    x = 0
    while not stop.is_set():
        for _ in range(10_000):
            x += 1


def main() -> int:
    """Run the passes and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=EVENTS,
                        help="seeded episodes with a reaction event to time, per pass (default %(default)s)")
    parser.add_argument("--max-episodes", type=int, default=MAX_EPISODES,
                        help="give up after this many episodes per pass (default %(default)s)")
    parser.add_argument("--worker-trigger-m", type=float, default=WORKER_TRIGGER_M,
                        help="a worker starts walking when the AMR is this close before its aisle [m]")
    parser.add_argument("--only", choices=PASSES, default=None, help="run one pass (default: both)")
    parser.add_argument("--busy", type=int, default=BUSY,
                        help="competing busy processes in the loaded pass (default %(default)s; 0 compares the "
                             "deployed scheduling alone with older runs)")
    parser.add_argument("--smoke", action="store_true",
                        help="bring the stack up and run one short episode per pass (make test); figures mean nothing")
    args = parser.parse_args()
    if args.smoke:
        args.events, args.max_episodes = 1, 1
    rc = 0
    for name in PASSES:
        if args.only in (None, name):
            rc |= run_pass(args, loaded=name == "loaded")
    print(f"(% of one core; this machine has {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f})")
    return rc


def run_pass(args: argparse.Namespace, loaded: bool) -> int:
    """One pass: bring the stack up, run seeded episodes until `args.events` reactions, print its BENCH lines."""
    import multiprocessing as mp

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import Int64

    from physical_ai.bringup.processes import Supervisor
    from physical_ai.bringup.stack import can_use_sched_fifo, node_params, params_file, stack_commands, with_realtime
    from physical_ai.control.amr import amr_config
    from physical_ai_nodes._base import use_shipped_fastdds_profile
    from physical_ai_nodes._run_monitor import RunMonitor

    episode_sim_s = 4.0 if args.smoke else EPISODE_SIM_S
    suffix = ".loaded" if loaded else ""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
    os.environ.setdefault("MUJOCO_GL", "egl")
    use_shipped_fastdds_profile()
    params = params_file("amr")
    commands = stack_commands("mujoco", params, use_sim_time=True,
                              overrides={"mujoco_sim": {"seed": str(FIRST_SEED - 1),
                                                        "worker_trigger_m": str(args.worker_trigger_m)}})
    # Normal pass: every process under normal scheduling, as `physai run` / `make demo` start them. Loaded pass: the
    # robot-side processes as deployed (README, "Real-time priority"): the corrector under SCHED_FIFO with its loop
    # thread above it, and the simulator, which stands in for the robot's LiDAR (and other) drivers, where this
    # process may use it; perception and the policy keep normal scheduling; two busy processes at normal priority
    # stand in for localisation and a planner for the whole pass.
    realtime = loaded and can_use_sched_fifo()
    busy = args.busy if loaded else 0
    if realtime:
        commands = with_realtime(commands)
    print(f"== pass{suffix or ' normal'}: corrector and simulator (drivers) scheduling: "
          f"{'SCHED_FIFO 70 (corrector loop 80)' if realtime else 'normal'}"
          f"{' (SCHED_FIFO not permitted)' if loaded and not realtime else ''}; monitor's DDS reception threads: "
          f"{'SCHED_FIFO 60' if realtime else 'normal'}; competing busy processes: {busy}", flush=True)
    stop = mp.Event()
    load = [mp.Process(target=_busy, args=(stop,), daemon=True) for _ in range(busy)]
    log_dir = Path(tempfile.mkdtemp(prefix="physai_e2e_"))
    supervisor = Supervisor(commands, log_dir=log_dir, env=dict(os.environ), on_event=lambda text: None)
    if realtime:  # the middleware threads created with the monitor's participant inherit this (a listener that
        # is not starved stamps receptions when they happen); the executor thread started below runs normally
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(60))
    rclpy.init()
    monitor = RunMonitor("amr", amr_config(node_params(params, "trajectory_correction")))
    if realtime:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    reset_pub = monitor.create_publisher(Int64, "/sim/reset", 1)
    executor = SingleThreadedExecutor()
    executor.add_node(monitor)
    threading.Thread(target=executor.spin, daemon=True).start()
    reactions: list[float] = []
    transport: list[float] = []
    write: list[float] = []
    missed = 0
    episodes = 0
    cpu0: dict[str, float] = {}
    try:
        for p in load:
            p.start()
        supervisor.start()
        deadline = time.monotonic() + 90.0
        while monitor.state()["gt"] is None:
            if supervisor.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the AMR stack did not come up; logs in {log_dir}")
            time.sleep(0.2)
        pids = {spec.name: supervisor.pid(spec.name) for spec, _ in commands}
        # Episode -1 warms the stack up (first inferences, first TF lookups, DDS discovery of late topics); it is
        # neither timed nor counted.
        for i in range(0 if args.smoke else -1, args.max_episodes):
            if len(reactions) >= args.events:
                break
            if i == 0:
                cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items() if pid}
                wall0 = time.monotonic()
            if i > -1:
                reset_pub.publish(Int64(data=FIRST_SEED + i))
                while _sim_time(monitor.state()["gt"]) > 1.0:  # until the simulator has restarted
                    time.sleep(0.02)
                monitor.new_episode()
                while monitor.state()["gt"] is None:
                    time.sleep(0.02)
            found: list[float] = []
            not_needed = 0
            while True:
                gt = monitor.state()["gt"]
                sim_t = _sim_time(gt)
                found = monitor.reaction_latencies_ms()
                not_needed = monitor.reactions_not_needed
                if found or gt.episode_done or sim_t > episode_sim_s:
                    break
                if supervisor.poll() is not None:
                    raise RuntimeError(f"a node died in episode {i}; logs in {log_dir}")
                time.sleep(0.1)
            if i < 0:
                print(f"warm-up episode (seed {FIRST_SEED - 1}) done", flush=True)
                continue
            episodes += 1
            transport += monitor.lidar_transport_ms()
            write += monitor.lidar_write_ms()
            if found:
                reactions.append(found[0])
            else:
                missed += 1
            outcome = (f"{found[0]:.1f} ms" if found else "no correction needed (worker clears the path)"
                       if not_needed else "a worker entered the path only while the AMR was slower than 0.2 m/s"
                       if monitor.path_entries_slow else "no worker in the path")
            print(f"episode {i} seed {FIRST_SEED + i}: reaction {outcome}", flush=True)
        wall = time.monotonic() - wall0
        cpu = {name: (cpu_seconds(pid) - cpu0[name]) / wall * 100.0 for name, pid in pids.items() if name in cpu0}
    finally:
        supervisor.stop()
        executor.shutdown()
        monitor.destroy_node()
        rclpy.try_shutdown()
        stop.set()
        for p in load:
            p.join(5.0)
    if not reactions and not args.smoke:
        print(f"no reaction event in {episodes} episodes; logs in {log_dir}")
        return 1
    r = np.array(reactions or [np.nan])
    transport = transport or [np.nan]
    write = write or [np.nan]
    print(f"pass{suffix or ' normal'}: {len(reactions)} corrected reactions in {episodes} episodes (seeds "
          f"{FIRST_SEED}-{FIRST_SEED + episodes - 1}; {missed} without one; target {args.events}); p50 "
          f"{np.median(r):.1f} ms, max {r.max():.1f} ms; {len(transport)} LiDAR frames, stamp -> simulator's write "
          f"p50 {np.median(write):.1f} / p99 {np.percentile(write, 99):.1f} ms")
    bench(f"e2e.amr.reaction_p99_ms{suffix}", float(np.percentile(r, 99)), "ms")
    bench(f"e2e.amr.reaction_p50_ms{suffix}", float(np.median(r)), "ms")
    bench(f"e2e.amr.reaction_events{suffix}", float(len(reactions)), "count")
    bench(f"e2e.amr.reaction_seeds{suffix}", float(episodes), "count")
    bench(f"e2e.amr.lidar_transport_p99_ms{suffix}", float(np.percentile(transport, 99)), "ms")
    bench(f"e2e.amr.lidar_transport_p50_ms{suffix}", float(np.median(transport)), "ms")
    bench(f"e2e.cpu_pct{suffix}", float(sum(cpu.values())), "%")
    for name, value in cpu.items():
        bench(f"e2e.cpu_pct{suffix}.{name}", value, "%")
    return 0


if __name__ == "__main__":
    sys.exit(main())

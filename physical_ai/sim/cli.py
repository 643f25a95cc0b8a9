"""`physai sim <scenario>`: run a MuJoCo scenario as the ROS 2 simulator node, or play its scripted expert.

physai sim amr                      # simulator node with config/amr.yaml (Ctrl-C to stop)
physai sim arm --seed 3 --rtf 0     # as fast as possible
physai sim vehicle --expert --episodes 20   # ROS-free: scripted expert success over seeded episodes
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from physical_ai.sim.scenarios import ALIASES, ARM_VARIANTS, SCENARIOS, canonical_name

ROOT = Path(__file__).resolve().parents[2]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `physai sim`."""
    parser.add_argument("scenario", choices=sorted([*SCENARIOS, *ALIASES]), help="scenario to run")
    parser.add_argument("--seed", type=int, default=None, help="randomisation seed (default: from the config)")
    parser.add_argument("--rtf", type=float, default=None, help="real-time factor; 0 = as fast as possible")
    parser.add_argument("--params-file", default=None, help="parameter YAML (default: config/<robot>.yaml)")
    parser.add_argument("--namespace", default="", help="ROS namespace for the simulator's topics")
    parser.add_argument("--hand-time", type=float, default=None, help="arm: hand obstacle enters at this time [s]")
    parser.add_argument("--variant", choices=ARM_VARIANTS, default=None,
                        help="arm: task variant (hard: heavy, slippery parts per seed)")
    parser.add_argument("--expert", action="store_true", help="play the scripted expert without ROS and report")
    parser.add_argument("--episodes", type=int, default=1, help="with --expert: number of seeded episodes")


def node_argv(args: argparse.Namespace) -> list[str]:
    """Command line of the simulator node process for these arguments."""
    robot = canonical_name(args.scenario)
    params = Path(args.params_file) if args.params_file else ROOT / "config" / f"{robot}.yaml"
    if not params.is_file():
        raise SystemExit(f"physai sim: parameter file not found: {params}")
    argv = [sys.executable, "-m", "physical_ai_nodes.mujoco_sim", "--ros-args", "-r", "__node:=mujoco_sim",
            "--params-file", str(params), "-p", f"scenario:={robot}", "-p", "use_sim_time:=true"]
    if args.seed is not None:
        argv += ["-p", f"seed:={args.seed}"]
    if args.rtf is not None:
        argv += ["-p", f"real_time_factor:={float(args.rtf)}"]
    if args.hand_time is not None:
        argv += ["-p", f"hand_time_s:={float(args.hand_time)}"]
    if args.variant is not None:
        argv += ["-p", f"arm_variant:={args.variant}"]
    if args.namespace:
        argv += ["-r", f"__ns:=/{args.namespace.strip('/')}"]
    return argv


def _run_expert(args: argparse.Namespace) -> int:
    from physical_ai.sim.experts import run_episode

    robot = canonical_name(args.scenario)
    first = args.seed or 0
    options = {k: v for k, v in (("hand_time_s", args.hand_time), ("variant", args.variant)) if v is not None}
    wins = 0
    for seed in range(first, first + args.episodes):
        ok, sc = run_episode(robot, seed, options=options)
        gt = sc.ground_truth()
        wins += ok
        print(f"seed {seed}: success={ok} t={sc.data.time:.1f}s collisions={gt.collisions} "
              f"min_person_clearance={gt.min_person_clearance_m:.2f}m {gt.extra.get('target_part', '')}")
    print(f"{robot}: expert success {wins}/{args.episodes}")
    return 0 if wins == args.episodes else 1


def run(args: argparse.Namespace) -> int:
    """Run the node (until Ctrl-C) or the expert episodes."""
    if args.expert:
        return _run_expert(args)
    env = dict(os.environ)
    env.setdefault("MUJOCO_GL", "egl")
    env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(ROOT / "config" / "fastdds.xml"))
    proc = subprocess.Popen(node_argv(args), env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

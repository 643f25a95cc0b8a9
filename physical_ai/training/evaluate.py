"""`physai eval <scenario> --policy models/<name>`: closed-loop evaluation over N seeded episodes.

    physai eval amr --policy models/amr_nav --episodes 50
    physai eval amr --policy models/amr_nav --episodes 50 --world-model physics

Modes:
- `inprocess` (default): simulator core + perception core + policy + chunk execution in one process, faster than
  real time. The policy runs every `--replan` steps on what the robot senses (envs.py); the executed chunk prefix is
  the policy's, clipped to the command limits (clipping counted as a limit violation).
- `ros`: the same episodes through the ROS 2 nodes (simulator -> perception -> policy -> correction), started with
  the bring-up Supervisor and scored from /sim/ground_truth; needs those nodes installed (see `ros_eval.py`).

Writes `<output>/eval_<scenario>.json` (per-episode rows and a summary with a Wilson 95 % interval) and plots, and
prints a last line `EVAL <scenario> success=<fraction> episodes=<n> collisions=<n> limit_violations=<n>`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from physical_ai.policy.spec import ConfigError, PolicyConfig, load_config
from physical_ai.sim.scenarios import ARM_VARIANTS
from physical_ai.training.envs import Env, make_env, spec_names

EVAL_SEED_OFFSET = 100_000  # evaluation seeds never overlap collection seeds (0, 1, 2, ...)


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95 % by default)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def check_policy_fits(config: PolicyConfig, env: Env) -> None:
    """Raise `ConfigError` naming the first difference between a policy's spec and the scenario's."""
    want, have = spec_names(env.spec), spec_names(config)
    for key in ("embodiment", "action", "groups", "state", "obstacles", "parts"):
        if key == "state" and want[key] and have[key] and set(have[key]) <= set(want[key]):
            continue  # a policy trained on some of the state entries (physai train --state-features)
        if want[key] != have[key]:
            raise ConfigError(f"policy {config.name!r} does not fit scenario {env.scenario_name!r}: {key} is "
                              f"{have[key]!r} in the policy, the scenario provides {want[key]!r}")


@dataclass
class EpisodeResult:
    """One evaluation episode."""

    seed: int
    success: bool
    collisions: int
    limit_violations: int
    failure: bool
    time_s: float
    progress: float
    vetoes: int = 0
    wm_predicted_failure: bool = False  # a world model predicted the chosen chunk's grasp or carry to fail
    wrist_turn: float = 0.0      # arm with a world model: the grasp variant chosen last [rad]
    policy_ms: float = 0.0
    clamped_requests: int = 0    # steps/chunks with out-of-limit targets, clamped before reaching the driver


def state_columns(env: Env, config: PolicyConfig) -> list[int] | None:
    """Columns of the env's state the policy takes, None when it takes all of them in order."""
    have, want = env.spec.observation.state, config.observation.state
    if have is None or want is None or list(have.names) == list(want.names):
        return None
    return [list(have.names).index(n) for n in want.names]


def run_episode(env: Env, policy: Any, seed: int, replan: int, time_limit_s: float,
                correction: bool = False) -> EpisodeResult:
    """One closed-loop episode in-process.

    A `WorldModelCheckedPolicy` (as policy_inference runs it with `world_model` set) picks among its candidates
    inside `infer`; it also gets the env's state as "world_state" for world models that read other state entries
    than the policy. With `correction`, chunks go through the trajectory-correction core (as under ROS) instead
    of being played step by step.
    """
    env.reset(seed)
    policy.reset()
    if correction:
        env.attach_corrector()
    columns = state_columns(env, policy.config)
    wm = getattr(policy, "world_model", None)
    wm_columns = ([list(env.spec.observation.state.names).index(n) for n in wm.state_names]
                  if wm is not None and wm.state_names else None)
    chunk: np.ndarray | None = None
    k = 0
    vetoes = 0
    predicted_failure = False
    latency: list[float] = []
    steps = round(time_limit_s / env.dt)
    for _ in range(steps):
        due = chunk is None or k >= replan or k >= len(chunk)
        if due or env.perceive_every_step:
            obs = env.observe()  # every step where perception tracks need every frame
        if due:
            inputs = obs if columns is None else {**obs, "state": obs["state"][columns]}
            if wm_columns is not None:
                inputs = {**inputs, "world_state": obs["state"][wm_columns]}
            result = policy.infer(inputs)
            latency.append(result.latency_ms)
            chunk, k = result.values, 0
            pred = getattr(policy, "last_prediction", None)
            if pred is not None:
                vetoes += pred.chosen_index < 0
                predicted_failure |= bool(pred.chosen_index < 0 or pred.failure_p[pred.chosen_index] > 0.5)
            if correction:
                env.submit_chunk(chunk)
        env.apply(chunk[k])
        k += 1
        if env.status().done:
            break
    st = env.status()
    return EpisodeResult(seed=seed, success=st.success, collisions=st.collisions,
                         limit_violations=env.limit_violations, failure=st.failure,
                         clamped_requests=env.clamped_requests,
                         time_s=round(st.time_s, 2), progress=round(st.progress, 3), vetoes=vetoes,
                         wm_predicted_failure=predicted_failure,
                         wrist_turn=round(float(getattr(policy, "wrist_turn", 0.0)), 3),
                         policy_ms=round(float(np.median(latency)), 2) if latency else 0.0)


def summarise(scenario: str, rows: list[EpisodeResult], extra: dict[str, Any]) -> dict[str, Any]:
    """Summary figures of a list of episodes."""
    n = len(rows)
    wins = sum(r.success for r in rows)
    lo, hi = wilson_interval(wins, n)
    times = [r.time_s for r in rows if r.success]
    return {"scenario": scenario, "episodes": n, "successes": wins, "success_rate": wins / n if n else 0.0,
            "success_ci95": [round(lo, 4), round(hi, 4)],
            "collisions": int(sum(r.collisions for r in rows)),
            "episodes_with_collision": int(sum(r.collisions > 0 for r in rows)),
            "limit_violations": int(sum(r.limit_violations for r in rows)),
            "failures": int(sum(r.failure for r in rows)),
            "time_to_complete_s": {"median": float(np.median(times)) if times else None,
                                   "p90": float(np.percentile(times, 90)) if times else None},
            "vetoes": int(sum(r.vetoes for r in rows)),
            "clamped_requests": int(sum(r.clamped_requests for r in rows)),
            "policy_latency_ms_median": float(np.median([r.policy_ms for r in rows])) if rows else None,
            **extra}


def plot_report(rows: list[EpisodeResult], summary: dict[str, Any], path: Path) -> None:
    """Outcome per seed and time-to-complete histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    colours = ["tab:green" if r.success else ("tab:red" if r.collisions else "tab:orange") for r in rows]
    a.bar(range(len(rows)), [r.progress for r in rows], color=colours)
    a.set_xlabel("episode")
    a.set_ylabel("progress (green: success, red: collision)")
    lo, hi = summary["success_ci95"]
    a.set_title(f"{summary['scenario']}: success {summary['success_rate']:.2f} [{lo:.2f}, {hi:.2f}]")
    times = [r.time_s for r in rows if r.success]
    b.hist(times, bins=15, color="tab:blue")
    b.set_xlabel("time to complete [s]")
    b.set_ylabel("episodes")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def evaluate(scenario: str, policy_dir: str | Path, episodes: int, seed: int = EVAL_SEED_OFFSET,
             replan: int | None = None, world_model: str = "none", wm_k: int = 8, threads: int = 2,
             time_limit_s: float | None = None, progress_bar: bool = True, correction: bool = False,
             wm_select: str = "check", variant: str = "normal") -> tuple[list[EpisodeResult], dict]:
    """Evaluate a checkpoint in-process; return (episodes, summary). `variant`: the arm task variant."""
    from tqdm import tqdm

    from physical_ai.policy.policy import TorchPolicy

    config = load_config(policy_dir)
    # the policy is evaluated with the sensing it was trained on (recorded in config.json by physai train)
    env = make_env(scenario, perception=str(config.extra.get("perception", "node")), variant=variant)
    check_policy_fits(config, env)
    if correction and not hasattr(env, "attach_corrector"):
        raise ValueError(f"--correction core: no in-process corrector wired for {env.embodiment!r} yet")
    policy = TorchPolicy(policy_dir, num_threads=threads)
    if world_model != "none":
        from physical_ai.world_model import make_world_model
        from physical_ai.world_model.checked_policy import WorldModelCheckedPolicy

        wm = make_world_model(world_model, policy_dir, env.embodiment, materials=variant)
        wm.rule = replace(wm.rule, keep_policy=wm_select == "check")
        policy = WorldModelCheckedPolicy(policy, wm, k=wm_k)
    replan = replan or max(1, config.chunk_length // 2)
    limit = time_limit_s or env_time_limit(env)
    rows = []
    start = time.monotonic()
    try:
        for i in tqdm(range(episodes), desc=f"eval {scenario}", unit="ep", disable=not progress_bar):
            rows.append(run_episode(env, policy, seed + i, replan, limit, correction))
    finally:
        env.close()
    summary = summarise(scenario, rows, {"policy": str(policy_dir), "mode": "inprocess", "replan_steps": replan,
                                         "correction": "core" if correction else "none",
                                         "world_model": world_model, "wm_select": wm_select, "first_seed": seed,
                                         "variant": variant,
                                         "wall_s": round(time.monotonic() - start, 1)})
    return rows, summary


def env_time_limit(env: Env) -> float:
    """The scenario's own time limit [s]."""
    from physical_ai.sim.scenarios import SCENARIOS

    return float(SCENARIOS[env.scenario_name].time_limit_s)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `physai eval`."""
    parser.add_argument("scenario", help="amr | arm | vehicle")
    parser.add_argument("--policy", required=True, help="checkpoint directory (config.json + model.safetensors)")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=EVAL_SEED_OFFSET, help="first seed (episodes: seed, seed+1...)")
    parser.add_argument("--mode", choices=("inprocess", "ros"), default="inprocess")
    parser.add_argument("--replan", type=int, default=None, help="policy steps executed per chunk (default H/2)")
    parser.add_argument("--world-model", choices=("none", "physics", "learned"), default="none",
                        help="check sampled candidate chunks with a world model before executing")
    parser.add_argument("--wm-k", type=int, default=8, help="candidates per world-model check")
    parser.add_argument("--wm-select", choices=("check", "best"), default="check",
                        help="check: keep the policy's chunk unless vetoed; best: highest predicted score")
    parser.add_argument("--record", default=None, metavar="MCAP",
                        help="ros: record every topic of the episodes to this MCAP file (`physai dataset build` input)")
    parser.add_argument("--command-noise", type=float, default=0.0,
                        help="ros, amr: the simulator perturbs the executed base command on half the episodes "
                             "(DART, as `physai collect`; mujoco_sim command_noise), for recordings to train from")
    parser.add_argument("--realtime", action="store_true",
                        help="ros: corrector and simulator under SCHED_FIFO, as deployed (needs root/CAP_SYS_NICE)")
    parser.add_argument("--real-time-factor", type=float, default=1.0,
                        help="ros: simulated seconds per wall second (below 1 leaves the nodes more CPU per "
                             "simulated second, as a machine with more cores would)")
    parser.add_argument("--correction", choices=("none", "core"), default="none",
                        help="inprocess: play chunks directly (none) or through the trajectory-correction core")
    parser.add_argument("--variant", choices=ARM_VARIANTS, default="normal",
                        help="inprocess, arm: task variant (hard: heavy, slippery parts per seed)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=None, help="report directory (default: <policy>/eval)")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    """Entry point of `physai eval`."""
    out = Path(args.output) if args.output else Path(args.policy) / "eval"
    try:
        if args.mode == "ros":
            from physical_ai.training.ros_eval import evaluate_ros

            rows, summary = evaluate_ros(args.scenario, args.policy, args.episodes, args.seed,
                                         realtime=args.realtime, record=args.record,
                                         command_noise=args.command_noise, real_time_factor=args.real_time_factor,
                                         world_model=args.world_model,
                                         wm_k=args.wm_k, variant=args.variant)
        else:
            rows, summary = evaluate(args.scenario, args.policy, args.episodes, args.seed, args.replan,
                                     args.world_model, args.wm_k, args.threads, progress_bar=not args.no_progress,
                                     correction=args.correction == "core", wm_select=args.wm_select,
                                     variant=args.variant)
    except (ConfigError, ValueError, RuntimeError) as exc:
        print(f"physai eval: {exc}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    suffix = ("" if args.variant == "normal" else f"_{args.variant}") + \
        ("" if args.world_model == "none" else f"_wm_{args.world_model}_{args.wm_select}") + \
        ("_corrected" if args.mode == "inprocess" and args.correction == "core" else "") + \
        ("_ros" if args.mode == "ros" else "")
    report = out / f"eval_{args.scenario}{suffix}.json"
    report.write_text(json.dumps({"summary": summary, "episodes": [asdict(r) for r in rows]}, indent=1) + "\n")
    plot_report(rows, summary, out / f"eval_{args.scenario}{suffix}.png")
    lo, hi = summary["success_ci95"]
    print(f"success {summary['success_rate']:.3f} (95% CI {lo:.3f}-{hi:.3f}), median time "
          f"{summary['time_to_complete_s']['median']} s, vetoes {summary['vetoes']}, report {report}")
    print(f"EVAL {args.scenario} success={summary['success_rate']:.3f} episodes={summary['episodes']} "
          f"collisions={summary['collisions']} limit_violations={summary['limit_violations']}")
    return 0

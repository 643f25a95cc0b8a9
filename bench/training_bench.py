"""Training-pipeline figures: collection speed vs real time, world-model check latency vs the policy's own.

    python bench/training_bench.py

BENCH training.collect.amr.realtime_factor   simulated seconds recorded per wall second (baseline: real time 1.0)
BENCH training.wm.physics.p50_ms / p99_ms     physics rollout of K=8 one-second candidates (AMR)
BENCH training.wm.learned.p50_ms / p99_ms     learned MLP on the same candidates
BENCH training.policy.amr.p50_ms              the shipped AMR policy's inference (baseline of the check's cost)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
AMR_MODEL = ROOT / "models" / "amr_nav"
K = 8
REPS = 60


def _pct(samples: list[float]) -> tuple[float, float]:
    arr = np.asarray(samples)
    return float(np.median(arr)), float(np.percentile(arr, 99))


def main() -> None:
    """Print BENCH lines (`--smoke`: a short pass for make test; the figures mean nothing)."""
    import torch

    from physical_ai.policy.policy import TorchPolicy
    from physical_ai.training.envs import make_env
    from physical_ai.training.evaluate import state_columns
    from physical_ai.training.world_model_glue import candidate_chunks, world_state
    from physical_ai.world_model.learned import LearnedWorldModel
    from physical_ai.world_model.physics import AmrPhysicsWorldModel

    torch.set_num_threads(1)
    env = make_env("amr")
    env.reset(100_000)
    start = time.perf_counter()
    sim0 = env.sc.data.time
    observations = []
    smoke = "--smoke" in sys.argv[1:]
    while env.sc.data.time - sim0 < (1.0 if smoke else 10.0):
        obs = env.observe()
        observations.append(obs)
        env.apply(env.expert_action())
    wall = time.perf_counter() - start
    print(f"BENCH training.collect.amr.realtime_factor {(env.sc.data.time - sim0) / wall:.1f} x")
    print("BENCH training.collect.amr.realtime_baseline 1.0 x")

    policy = TorchPolicy(AMR_MODEL, num_threads=1)
    columns = state_columns(env, policy.config)  # the shipped policy takes some of the env's state entries
    physics = AmrPhysicsWorldModel()
    learned_dir = AMR_MODEL / "world_model"
    learned = LearnedWorldModel.load(learned_dir) if (learned_dir / "world_model.json").is_file() else None
    rng = np.random.default_rng(0)
    t_policy, t_phys, t_learned = [], [], []
    for i in range(3 if smoke else REPS):
        obs = observations[(i * 7) % len(observations)]
        result = policy.infer(obs if columns is None else {**obs, "state": obs["state"][columns]})
        t_policy.append(result.latency_ms)
        cands = candidate_chunks(env, result.values, K, rng)
        state = world_state(env, obs)
        t_phys.append(physics.evaluate(state, cands).latency_ms)
        if learned is not None:
            t_learned.append(learned.evaluate(state, cands).latency_ms)
    p50, p99 = _pct(t_policy)
    print(f"BENCH training.policy.amr.p50_ms {p50:.2f} ms")
    p50, p99 = _pct(t_phys)
    print(f"BENCH training.wm.physics.p50_ms {p50:.2f} ms")
    print(f"BENCH training.wm.physics.p99_ms {p99:.2f} ms")
    if t_learned:
        p50l, p99l = _pct(t_learned)
        print(f"BENCH training.wm.learned.p50_ms {p50l:.3f} ms")
        print(f"BENCH training.wm.learned.p99_ms {p99l:.3f} ms")
        print(f"BENCH training.wm.physics_over_learned {p50 / p50l:.1f} x")


if __name__ == "__main__":
    main()

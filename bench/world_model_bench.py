"""Arm world model: the check's time against the chunk period, and its failure prediction on held-out seeds.

    python bench/world_model_bench.py [--seeds 12] [--first-seed 400000]

For each held-out seed of the hard arm variant the scripted expert brings the arm over the target part (the end
of its approach); the belief is what ArmEnv perceives there (parts fitted from the depth image frame by frame over
the approach, grounded target, joint state). The candidates are the arm's grasp variants (`wrist_variants`) of the
expert's next second. Each is predicted by the world model the node would run (physics, the hard catalogue's
materials) and labelled by the same grasp played on a fork of the true simulation (the seed's own materials and
part poses).

BENCH world_model.arm.check_ms (p50, p99)        one check of K candidates, one thread
BENCH world_model.arm.chunk_period_ms             baseline: the time between checks (replan H/2 steps)
BENCH world_model.arm.failure_precision / _recall physics, hard catalogue (what the config ships for the variant)
BENCH world_model.arm.normal_materials.failure_*  baseline: the same rollout assuming the normal catalogue
"""

from __future__ import annotations

import argparse
import os

import numpy as np


def _rates(pred: np.ndarray, actual: np.ndarray) -> tuple[float, float]:
    tp = float(np.sum(pred & actual))
    return tp / max(float(pred.sum()), 1.0), tp / max(float(actual.sum()), 1.0)


def main() -> None:
    """Print BENCH lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=12)
    parser.add_argument("--first-seed", type=int, default=400_000)
    parser.add_argument("--smoke", action="store_true", help="one seed (make test: it runs; figures mean nothing)")
    args = parser.parse_args()
    if args.smoke:
        args.seeds = 1

    from physical_ai.sim.experts import ArmIK
    from physical_ai.training.envs import make_env
    from physical_ai.world_model.api import WorldState
    from physical_ai.world_model.arm_physics import ArmPhysicsWorldModel, approaching, complete_grasp, stream_step
    from physical_ai.world_model.checked_policy import wrist_variants

    env = make_env("arm", variant="hard")
    hard, normal = ArmPhysicsWorldModel(materials="hard"), ArmPhysicsWorldModel(materials="normal")
    dt = env.dt
    names = env.spec.observation.state.names
    check_ms, predicted, baseline, actual = [], [], [], []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        env.reset(seed)
        while env.sc.data.time < env.expert.segments[0].duration:
            if env.perceive_every_step:  # the part memory follows every depth frame, as in the node and the eval:
                env.observe()            # seen only at the end, the target is under the gripper and never grounded
            env.apply(env.expert_action())
        obs = env.observe()
        state = WorldState("arm", np.asarray(obs["state"], float), names, parts=obs["parts"],
                           part_features=env.spec.observation.parts.features.names, dt=dt)
        t0 = env.sc.data.time
        chunk = np.array([np.append(c["joint_positions"], c["gripper"])
                          for c in (env.expert.act({"time": t0 + dt * (i + 1)}) for i in range(env.spec.chunk_length))])
        cands, _ = wrist_variants(chunk, state.value("joint7.position"), 0.0, dt)
        pred = hard.evaluate(state, cands)
        check_ms.append(pred.latency_ms)
        predicted.extend(pred.failure_p > 0.5)
        baseline.extend(normal.evaluate(state, cands).failure_p > 0.5)
        sc = env.sc
        ik = ArmIK(sc.model, sc.qadr, sc.dadr, sc.limits.lower, sc.limits.upper)
        for cand in cands:
            snap = env.snapshot()
            for action in cand:
                stream_step(sc, action[:7], action[7], dt)
            grasp = approaching(sc, sc.target_part)  # a chunk that ends elsewhere is no grasp: nothing to fail
            actual.append(grasp and not complete_grasp(sc, ik, sc.target_part, dt))
            env.restore(snap)
    env.close()
    predicted_a, baseline_a, actual_a = np.array(predicted), np.array(baseline), np.array(actual)
    p50, p99 = np.median(check_ms), np.percentile(check_ms, 99)
    print(f"BENCH world_model.arm.candidates {len(cands)} count")
    print(f"BENCH world_model.arm.check_ms {p50:.1f} ms (p99 {p99:.1f} ms, {len(check_ms)} checks, load "
          f"{os.getloadavg()[0]:.1f})")
    print(f"BENCH world_model.arm.chunk_period_ms {1e3 * dt * env.spec.chunk_length // 2:.0f} ms")
    print(f"BENCH world_model.arm.grasps {len(actual_a)} count ({int(actual_a.sum())} fail in the true simulation)")
    precision, recall = _rates(predicted_a, actual_a)
    print(f"BENCH world_model.arm.failure_precision {precision:.2f}")
    print(f"BENCH world_model.arm.failure_recall {recall:.2f}")
    precision, recall = _rates(baseline_a, actual_a)
    print(f"BENCH world_model.arm.normal_materials.failure_precision {precision:.2f}")
    print(f"BENCH world_model.arm.normal_materials.failure_recall {recall:.2f}")


if __name__ == "__main__":
    main()

"""Train the learned world model; measure both world models' agreement with what really happened.

What really happened = the candidate played on a fork of the true simulation (labels stored by `physai collect`).

    python -m physical_ai.training.train_world_model --dataset /tmp/amr_data --output models/amr_nav/world_model

Held-out episodes (the last `--holdout` fraction) are used for agreement; agreement = fraction of candidates whose
predicted collision (probability > 0.5) equals the real outcome, with recall/precision on the collisions.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from physical_ai.training.dataset import DatasetError, open_dataset
from physical_ai.training.world_model_glue import fit_learned, labelled_frames
from physical_ai.world_model.api import WorldModel, WorldState


def agreement(predicted: np.ndarray, actual: np.ndarray) -> dict[str, Any]:
    """Accuracy, recall and precision of binary predictions (probability > 0.5) against outcomes."""
    p, a = predicted > 0.5, actual > 0.5
    tp = int(np.sum(p & a))
    return {"n": len(a), "positives": int(a.sum()), "accuracy": float(np.mean(p == a)),
            "recall": tp / max(int(a.sum()), 1), "precision": tp / max(int(p.sum()), 1)}


def score_model(model: WorldModel, rows: dict[str, Any]) -> dict[str, Any]:
    """Agreement of a world model on labelled rows, plus its median latency per check."""
    col, fail, lat = [], [], []
    for (state, objects), cands in zip(rows["states"], rows["candidates"], strict=True):
        ws = WorldState(embodiment=rows["embodiment"], state=state, state_names=tuple(rows["state_names"]),
                        dt=rows["dt"], **({"obstacles": objects, "obstacle_features": tuple(rows["names"])}
                                          if rows["objects"] == "obstacles" else
                                          {"parts": objects, "part_features": tuple(rows["names"])}))
        t0 = time.perf_counter()
        c, f, _ = model.predict(ws, cands.astype(np.float64))
        lat.append((time.perf_counter() - t0) * 1e3)
        col.append(c)
        fail.append(f)
    out = {"collision": agreement(np.concatenate(col), rows["collision"]),
           "failure": agreement(np.concatenate(fail), rows["failure"]),
           "latency_ms_median": float(np.median(lat)), "candidates_per_check": int(rows["candidates"][0].shape[0])}
    return out


def main(argv: list[str] | None = None) -> int:
    """Train, save and report agreement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--output", required=True, help="directory for world_model.json/.safetensors")
    parser.add_argument("--holdout", type=float, default=0.2)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--physics", action="store_true", help="also score the physics-rollout model (AMR)")
    args = parser.parse_args(argv)
    try:
        ds = open_dataset(args.dataset)
    except DatasetError as exc:
        print(f"train_world_model: {exc}", file=sys.stderr)
        return 2
    n = len(ds)
    split = max(1, round(n * (1 - args.holdout)))
    model = fit_learned(ds, list(range(split)), steps=args.steps)
    model.save(args.output)
    test = labelled_frames(ds, list(range(split, n)) or [n - 1])
    report = {"dataset": args.dataset, "train_episodes": split, "test_episodes": n - split,
              "learned": score_model(model, test)}
    if args.physics:
        from physical_ai.world_model.physics import AmrPhysicsWorldModel

        # labels answer "does this chunk collide within its own horizon": score the rollout on the same question
        report["physics"] = score_model(AmrPhysicsWorldModel(tail_s=0.0), test)
    (Path(args.output) / "agreement.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Glue between envs/datasets and the world models: belief states, candidate sampling, loading, training data."""

from __future__ import annotations

from typing import Any

import numpy as np

from physical_ai.training.dataset import DatasetReader
from physical_ai.training.envs import Env
from physical_ai.world_model.api import WorldState, sample_candidates
from physical_ai.world_model.learned import LearnedWorldModel, features, train_learned


def candidate_noise(embodiment: str) -> np.ndarray:
    """Per-channel spread of candidates sampled around a policy chunk."""
    return np.array([0.3, 0.4]) if embodiment == "amr" else np.array([0.05] * 7 + [0.01])


def candidate_chunks(env: Env, chunk: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """The policy's chunk first, then perturbed samples, and (AMR) a brake-to-stop and a back-away chunk last."""
    lo, hi = env.action_limits()
    cands = sample_candidates(chunk, k, candidate_noise(env.embodiment), rng, lo, hi)
    if env.embodiment == "amr" and k > 2:
        cands[-2] = np.linspace(chunk[0], np.zeros(chunk.shape[1]), len(chunk))  # brake to a stop
        cands[-1] = np.linspace(chunk[0], [-0.3, 0.0], len(chunk))  # brake and back away
    return cands


def world_state(env: Env, obs: dict[str, Any]) -> WorldState:
    """Belief state from the policy's observation (no privileged data)."""
    spec = env.spec.observation
    kwargs: dict[str, Any] = {}
    if spec.obstacles is not None:
        kwargs.update(obstacles=obs["obstacles"], obstacle_features=spec.obstacles.features.names)
    if spec.parts is not None:
        kwargs.update(parts=obs["parts"], part_features=spec.parts.features.names)
    return WorldState(embodiment=env.embodiment, state=np.asarray(obs["state"], float), state_names=spec.state.names,
                      dt=env.dt, **kwargs)


def labelled_frames(dataset: DatasetReader, episodes: list[int]) -> dict[str, Any]:
    """World-model training rows: features per candidate, labels, and the belief states they came from."""
    spec = dataset.physai["spec"]
    objects = "obstacles" if "obstacles" in spec["observation"] else "parts"
    names = spec["observation"][objects]["features"]
    xs, col, fail, prog, states, cands = [], [], [], [], [], []
    for i in episodes:
        arr = dataset.load_episode(i)
        if "extra.wm_frame" not in arr:
            continue
        for j, frame in enumerate(arr["extra.wm_frame"]):
            mask = arr[f"observation.{objects}_mask"][frame] > 0.5
            obj = arr[f"observation.{objects}"][frame][mask]
            state = arr["observation.state"][frame]
            c = arr["extra.wm_candidates"][j]
            xs.append(features(state, obj, len(names), c))
            col.append(arr["extra.wm_collision"][j])
            fail.append(arr["extra.wm_failure"][j])
            prog.append(arr["extra.wm_progress"][j])
            states.append((state, obj))
            cands.append(c)
    return {"x": np.concatenate(xs), "collision": np.concatenate(col).astype(np.float64),
            "failure": np.concatenate(fail).astype(np.float64), "progress": np.concatenate(prog).astype(np.float64),
            "states": states, "candidates": cands, "objects": objects, "names": names,
            "state_names": spec["observation"]["state"]["names"], "embodiment": dataset.physai["embodiment"],
            "dt": float(spec["dt"])}


def fit_learned(dataset: DatasetReader, train_episodes: list[int], steps: int = 3000) -> LearnedWorldModel:
    """Train the learned world model on the labelled frames of `train_episodes`."""
    rows = labelled_frames(dataset, train_episodes)
    c0 = rows["candidates"][0]
    layout = {"embodiment": rows["embodiment"], "objects": rows["objects"], "n_feat": len(rows["names"]),
              "state_names": list(rows["state_names"]),
              "horizon": int(c0.shape[1]), "action_dim": int(c0.shape[2])}
    return train_learned(rows["x"], rows["collision"], rows["failure"], rows["progress"], layout, steps=steps)

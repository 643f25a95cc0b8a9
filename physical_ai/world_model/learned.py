"""Learned world model: a small MLP from (state, nearest obstacles/parts, candidate chunk) to the chunk's outcome.

Trained on the labels `physai collect` stores with each episode (`extra.wm_*`): K candidate chunks per labelled
frame, each played on a fork of the true simulation, with its collision, failure and progress. Saved as
`world_model.safetensors` + `world_model.json` (feature layout and normalisation), never a pickle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from physical_ai.world_model.api import Selection, WorldModel, WorldState

WEIGHTS = "world_model.safetensors"
CONFIG = "world_model.json"
NEAREST = 4  # obstacle/part tokens fed to the MLP, nearest first


def _tokens(values: np.ndarray, n_feat: int) -> np.ndarray:
    """(n, F) objects -> (NEAREST * (F + 1),) nearest-first features with a presence flag."""
    values = np.asarray(values, dtype=np.float64).reshape(-1, n_feat)
    out = np.zeros((NEAREST, n_feat + 1))
    if len(values):
        order = np.argsort(np.linalg.norm(values[:, :2], axis=1))[:NEAREST]
        out[: len(order), :n_feat] = values[order]
        out[: len(order), n_feat] = 1.0
    return out.reshape(-1)


def features(state: np.ndarray, objects: np.ndarray, n_feat: int, candidates: np.ndarray) -> np.ndarray:
    """(K, D) MLP inputs for K candidates sharing one state."""
    ctx = np.concatenate([np.asarray(state, np.float64).reshape(-1), _tokens(objects, n_feat)])
    k = len(candidates)
    return np.concatenate([np.repeat(ctx[None], k, 0), np.asarray(candidates, np.float64).reshape(k, -1)], axis=1)


@dataclass
class LearnedConfig:
    """Layout and normalisation of the MLP inputs."""

    embodiment: str
    objects: str               # "obstacles" or "parts"
    n_feat: int
    horizon: int
    action_dim: int
    hidden: int
    mean: list[float]
    std: list[float]
    progress_scale: float      # progress labels are divided by this (so outputs live in ~[0, 1])
    state_names: list[str] | None = None  # the state entries of its inputs (None: the policy's state as given)

    def to_json(self) -> dict[str, Any]:
        """As a JSON dict."""
        return dict(vars(self))


class LearnedWorldModel(WorldModel):
    """MLP outcome predictor (numpy inference: no torch needed at run time)."""

    name = "learned"

    def __init__(self, config: LearnedConfig, weights: dict[str, np.ndarray], rule: Selection | None = None) -> None:
        super().__init__(rule)
        self.config = config
        self.w = weights
        self.mean, self.std = np.asarray(config.mean), np.asarray(config.std)
        self.state_names = tuple(config.state_names) if config.state_names else None

    @classmethod
    def load(cls, directory: str | Path, rule: Selection | None = None) -> LearnedWorldModel:
        """Read `world_model.json` + `world_model.safetensors` from `directory`."""
        from safetensors.numpy import load_file

        path = Path(directory)
        if not (path / CONFIG).is_file():
            raise FileNotFoundError(f"{path / CONFIG}: not found (train one with physical_ai.world_model.train)")
        cfg = LearnedConfig(**json.loads((path / CONFIG).read_text()))
        return cls(cfg, load_file(str(path / WEIGHTS)), rule)

    def save(self, directory: str | Path) -> Path:
        """Write the model into `directory`."""
        from safetensors.numpy import save_file

        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        (path / CONFIG).write_text(json.dumps(self.config.to_json(), indent=1) + "\n")
        save_file({k: np.ascontiguousarray(v, np.float32) for k, v in self.w.items()}, str(path / WEIGHTS))
        return path

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(K, D) raw features -> (K, 3) [collision logit, failure logit, progress]."""
        h = (x - self.mean) / self.std
        for i in range(3):
            h = h @ self.w[f"l{i}.weight"].T + self.w[f"l{i}.bias"]
            if i < 2:
                h = np.maximum(h, 0.0)
        return h

    def predict(self, state: WorldState, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(collision_p, failure_p, progress) for each candidate."""
        c = self.config
        if candidates.shape[1:] != (c.horizon, c.action_dim):
            raise ValueError(f"candidates: expected (K, {c.horizon}, {c.action_dim}), got {candidates.shape}")
        objects = state.obstacles if c.objects == "obstacles" else state.parts
        out = self.forward(features(state.state, objects, c.n_feat, candidates))
        sig = 1.0 / (1.0 + np.exp(-np.clip(out[:, :2], -30, 30)))
        return sig[:, 0], sig[:, 1], np.clip(out[:, 2], 0.0, 1.0)


def train_learned(x: np.ndarray, collision: np.ndarray, failure: np.ndarray, progress: np.ndarray,
                  layout: dict[str, Any], hidden: int = 128, steps: int = 3000, seed: int = 0,
                  threads: int = 2) -> LearnedWorldModel:
    """Fit the MLP (BCE for collision/failure with positive re-weighting, MSE for progress)."""
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    mean = x.mean(0)
    std = np.where(x.std(0) < 1e-6, 1.0, x.std(0))
    scale = float(max(np.percentile(np.abs(progress), 99), 1e-6))
    xt = torch.tensor((x - mean) / std, dtype=torch.float32)
    yc = torch.tensor(collision, dtype=torch.float32)
    yf = torch.tensor(failure, dtype=torch.float32)
    yp = torch.tensor(np.clip(progress / scale, 0.0, 1.0), dtype=torch.float32)
    net = nn.Sequential(nn.Linear(x.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                        nn.Linear(hidden, 3))
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    pos_c = torch.tensor(min(20.0, (len(yc) - yc.sum().item()) / max(yc.sum().item(), 1.0)))
    pos_f = torch.tensor(min(20.0, (len(yf) - yf.sum().item()) / max(yf.sum().item(), 1.0)))
    bce_c = nn.BCEWithLogitsLoss(pos_weight=pos_c)
    bce_f = nn.BCEWithLogitsLoss(pos_weight=pos_f)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        idx = torch.from_numpy(rng.integers(0, len(xt), 256))
        out = net(xt[idx])
        loss = bce_c(out[:, 0], yc[idx]) + bce_f(out[:, 1], yf[idx]) + 5.0 * ((out[:, 2] - yp[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    weights = {}
    linear = [m for m in net if isinstance(m, nn.Linear)]
    for i, m in enumerate(linear):
        weights[f"l{i}.weight"] = m.weight.detach().numpy().astype(np.float64)
        weights[f"l{i}.bias"] = m.bias.detach().numpy().astype(np.float64)
    cfg = LearnedConfig(mean=mean.tolist(), std=std.tolist(), hidden=hidden, progress_scale=scale, **layout)
    return LearnedWorldModel(cfg, weights)

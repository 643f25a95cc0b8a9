"""Shared helpers for the policy tests: small random checkpoints built at test time, raw observations."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from physical_ai.policy.defaults import default_config
from physical_ai.policy.model import build_model, save_checkpoint
from physical_ai.policy.spec import PolicyConfig

SMALL_ARCH = {"type": "chunk_transformer", "d_model": 32, "n_heads": 2, "n_layers": 1, "ff_dim": 64,
              "image_channels": [8, 16], "image_grid": 2}


def make_checkpoint(path: Path, embodiment: str = "arm", small: bool = True, seed: int = 0) -> PolicyConfig:
    """Write a randomly initialised checkpoint for `embodiment` under `path` and return its config."""
    config = default_config(embodiment, name=f"{embodiment}_test", architecture=SMALL_ARCH if small else None)
    save_checkpoint(build_model(config, seed=seed), config, path)
    return config


def raw_observation(config: PolicyConfig, seed: int = 0) -> dict:
    """A plausible raw observation for `config` (image at a camera resolution, SI state)."""
    rng = np.random.default_rng(seed)
    spec = config.observation
    obs: dict = {}
    if spec.image is not None:
        obs["image"] = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    if spec.state is not None:
        obs["state"] = rng.normal(size=len(spec.state.names))
    for group in ("obstacles", "parts"):
        tokens = getattr(spec, group)
        if tokens is not None:
            obs[group] = rng.normal(size=(int(rng.integers(0, tokens.max_count + 3)), len(tokens.features.names)))
    if spec.instruction is not None:
        obs["instruction"] = "pick the red cube and place it in the bin"
    return obs

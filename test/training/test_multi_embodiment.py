"""One shared-trunk policy for two embodiments: `physai train` on datasets of an AMR and an arm, save, reload each
embodiment as an ordinary checkpoint directory, run it; mismatched embodiments and specs are clear errors."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from physical_ai.data.lerobot_format import DatasetError, DatasetWriter
from physical_ai.policy.defaults import default_config
from physical_ai.policy.model import count_parameters, load_checkpoint
from physical_ai.policy.multi_embodiment import MultiEmbodimentModel
from physical_ai.policy.policy import TorchPolicy
from physical_ai.policy.spec import ConfigError, PolicyConfig, check_compatible, load_config
from physical_ai.training import train as train_cli
from physical_ai.training.collect import features_for
from physical_ai.training.train_multi import group_by_embodiment, train_multi

ARCH = ["--d-model", "32", "--heads", "2", "--layers", "1", "--ff-dim", "64", "--image-channels", "8,16"]


def write_dataset(root: Path, embodiment: str, episodes: int = 2, length: int = 25, seed: int = 0) -> Path:
    """A tiny synthetic dataset with `embodiment`'s default spec (the arm's without the camera image)."""
    spec = default_config(embodiment)
    if embodiment == "arm":
        spec = replace(spec, observation=replace(spec.observation, image=None))
    rng = np.random.default_rng(seed)
    features = features_for(spec)
    writer = DatasetWriter(root, robot_type=embodiment, fps=1.0 / spec.dt, features=features,
                           extra={"scenario": embodiment, "embodiment": embodiment, "spec": spec.to_json(),
                                  "perception": "node"})
    for e in range(episodes):
        frames = {}
        for key, feat in features.items():
            frames[key] = (rng.random((length, *feat.shape)) > 0.5 if key.endswith("_mask")
                           else rng.normal(size=(length, *feat.shape)))
        writer.add_episode(frames, task=f"{embodiment} task {e}", meta={"success": True, "seed": e})
    return writer.finish()


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("multi_data")
    return {"amr": write_dataset(root / "amr", "amr"), "arm": write_dataset(root / "arm", "arm", seed=1)}


@pytest.fixture(scope="module")
def checkpoint(datasets: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("multi_model") / "multi"
    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    args = parser.parse_args(["--dataset", str(datasets["amr"]), str(datasets["arm"]), "--output", str(out),
                              "--steps", "6", "--batch-size", "8", "--threads", "1", "--no-progress",
                              "--state-features", "amr:odom.x,odom.y,odom.yaw", *ARCH])
    assert train_cli.run(args) == 0
    return out


def observation(config: PolicyConfig, rng: np.random.Generator) -> dict:
    spec = config.observation
    obs: dict = {"state": rng.normal(size=len(spec.state.names)), "instruction": "go"}
    for group in ("obstacles", "parts"):
        tokens = getattr(spec, group)
        if tokens is not None:
            obs[group] = rng.normal(size=(3, len(tokens.features.names)))
    return obs


def test_trains_saves_reloads_and_acts_per_embodiment(checkpoint: Path) -> None:
    assert sorted(p.name for p in checkpoint.iterdir() if p.is_dir()) == ["amr", "arm"]
    rng = np.random.default_rng(0)
    shapes = {}
    for embodiment in ("amr", "arm"):
        policy = TorchPolicy(checkpoint / embodiment, num_threads=1)
        result = policy.infer(observation(policy.config, rng))
        assert result.embodiment == embodiment
        assert np.isfinite(result.values).all()
        shapes[embodiment] = (result.values.shape, result.names)
    assert shapes["amr"] == ((10, 2), ("linear_x", "angular_z"))
    assert shapes["arm"] == ((20, 8), (*(f"joint{i}" for i in range(1, 8)), "gripper"))
    amr = load_config(checkpoint / "amr")
    assert amr.observation.state.names == ("odom.x", "odom.y", "odom.yaw")  # --state-features amr:...
    assert amr.extra["training"]["steps"] == 6


def test_one_embodiment_loads_the_shared_trunk_and_its_own_adapter(checkpoint: Path) -> None:
    configs = {e: load_config(checkpoint / e) for e in ("amr", "arm")}
    full = MultiEmbodimentModel(configs)
    from safetensors.torch import load_file

    full.load_state_dict(load_file(str(checkpoint / "model.safetensors")), strict=True)
    full.eval()
    _, amr_view = load_checkpoint(checkpoint / "amr")
    _, arm_view = load_checkpoint(checkpoint / "arm")
    for a, b in zip(amr_view.trunk.parameters(), arm_view.trunk.parameters(), strict=True):
        assert torch.equal(a, b)  # the same trained trunk in both
    from physical_ai.policy.model import example_inputs

    inputs = example_inputs(configs["arm"], batch=3)
    with torch.inference_mode():
        assert torch.allclose(full.act("arm", *inputs), arm_view(*inputs))
    assert count_parameters(full) == (count_parameters(amr_view) + count_parameters(arm_view)
                                      - count_parameters(full.trunk))


def test_mismatched_embodiment_or_spec_is_a_clear_error(checkpoint: Path, datasets: dict[str, Path],
                                                         tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pick one of \['amr', 'arm'\]"):
        load_config(checkpoint)  # the root is not one embodiment's checkpoint
    with pytest.raises(ConfigError, match="is for 'amr', this robot is 'arm'"):
        check_compatible(load_config(checkpoint / "amr"), "arm")
    # a spec edited after training: the amr adapter's state encoder no longer fits the weights
    raw = json.loads((checkpoint / "amr" / "config.json").read_text())
    raw["observation"]["state"] = {k: v[:2] for k, v in raw["observation"]["state"].items()}
    edited = tmp_path / "edited"
    (edited / "amr").mkdir(parents=True)
    (edited / "amr" / "config.json").write_text(json.dumps(raw))
    (edited / "model.safetensors").write_bytes((checkpoint / "model.safetensors").read_bytes())
    with pytest.raises(ConfigError, match=r"embodiment 'amr'.*adapters\.amr\.state_encoder"):
        load_checkpoint(edited / "amr")
    # an embodiment the shared weights hold no adapter for
    raw = json.loads((checkpoint / "amr" / "config.json").read_text())
    vehicle = {**default_config("vehicle").to_json(), "architecture": raw["architecture"]}
    (edited / "vehicle").mkdir()
    (edited / "vehicle" / "config.json").write_text(json.dumps(vehicle))
    with pytest.raises(ConfigError, match=r"missing tensors \['adapters\.vehicle"):
        load_checkpoint(edited / "vehicle")
    # training: ambiguous state features, mismatched trunks, and a single embodiment are refused
    groups = group_by_embodiment([datasets["amr"], datasets["arm"]])
    arch = {"type": "chunk_transformer", "d_model": 32, "n_heads": 2, "n_layers": 1, "ff_dim": 64,
            "image_channels": [8], "image_grid": 2}
    with pytest.raises(DatasetError, match="prefix each list with its embodiment"):
        train_multi(groups, tmp_path / "x", "x", arch, steps=1, state_features={"": ["odom.x"]}, progress_bar=False)
    with pytest.raises(DatasetError, match="two or more embodiments"):
        train_multi({"amr": groups["amr"]}, tmp_path / "x", "x", arch, steps=1, progress_bar=False)
    configs = {e: load_config(checkpoint / e) for e in ("amr", "arm")}
    configs["arm"] = replace(configs["arm"], architecture={**configs["arm"].architecture, "n_layers": 2})
    with pytest.raises(ConfigError, match=r"arm's architecture \['n_layers'\] differ"):
        MultiEmbodimentModel(configs)

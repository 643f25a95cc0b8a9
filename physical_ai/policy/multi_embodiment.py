"""One policy for several embodiments: a shared transformer trunk, per-embodiment input adapters and action heads.

Each embodiment keeps its own observation/action spec, chunk length, rate and normalisation statistics: its
adapter is a `ChunkTransformer` without blocks (state MLP, obstacle/part token MLPs, instruction embedding, type
embeddings, H query tokens, action head). The transformer blocks between tokens and queries are shared, so
what one embodiment learns about attending from queries to state and object tokens is available to the others.

Checkpoint layout (`save_multi_checkpoint`):

    <root>/model.safetensors          trunk.* and adapters.<embodiment>.* tensors
    <root>/<embodiment>/config.json   that embodiment's full spec; architecture.type "multi_embodiment",
                                      architecture.weights "../model.safetensors"

so `<root>/<embodiment>` is an ordinary checkpoint directory to `load_checkpoint`, `TorchPolicy`, the
policy_inference node (`checkpoint: models/multi_embodiment/amr`) and `physai eval`; loading one embodiment
reads only the trunk and that embodiment's adapter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from physical_ai.policy.model import ChunkTransformer, build_trunk, read_weights
from physical_ai.policy.spec import WEIGHTS_FILE, ConfigError, PolicyConfig, save_config

ARCH_TYPE = "multi_embodiment"
TRUNK_KEYS = ("d_model", "n_heads", "n_layers", "ff_dim")


class MultiEmbodimentModel(nn.Module):
    """Shared trunk + one adapter per embodiment; `act(embodiment, *inputs)` runs one embodiment's batch."""

    def __init__(self, configs: Mapping[str, PolicyConfig]) -> None:
        super().__init__()
        if not configs:
            raise ConfigError("multi-embodiment model: no embodiment configs given")
        first = next(iter(configs.values())).architecture
        for name, config in configs.items():
            if config.embodiment != name:
                raise ConfigError(f"multi-embodiment model: config {config.name!r} is for {config.embodiment!r}, "
                                  f"given as {name!r}")
            differ = [k for k in TRUNK_KEYS if config.architecture.get(k) != first.get(k)]
            if differ:
                raise ConfigError(f"multi-embodiment model: {name}'s architecture {differ} differ from the shared "
                                  f"trunk's {[first.get(k) for k in differ]}")
        self.trunk = build_trunk(first)
        self.adapters = nn.ModuleDict({name: ChunkTransformer(c, trunk=False) for name, c in configs.items()})

    def act(self, embodiment: str, *inputs: torch.Tensor) -> torch.Tensor:
        """One embodiment's inputs (its `input_names` order) -> (B, H, action_dim) actions in SI units."""
        if embodiment not in self.adapters:
            raise ConfigError(f"embodiment: {embodiment!r} not in this model ({list(self.adapters)})")
        adapter = self.adapters[embodiment]
        seq, key_bias = adapter.encode(*inputs)
        for block in self.trunk:
            seq = block(seq, key_bias)
        return adapter.decode(seq)

    def view(self, embodiment: str) -> EmbodimentView:
        """The model as seen by one embodiment (ChunkTransformer's interface)."""
        return EmbodimentView(self, embodiment)


class EmbodimentView(nn.Module):
    """One embodiment of a `MultiEmbodimentModel` with `ChunkTransformer`'s interface.

    It has `input_names`, `horizon` and `forward(*inputs)`; its parameters are the trunk's and that embodiment's
    adapter's.
    """

    def __init__(self, model: MultiEmbodimentModel, embodiment: str) -> None:
        super().__init__()
        if embodiment not in model.adapters:
            raise ConfigError(f"embodiment: {embodiment!r} not in this model ({list(model.adapters)})")
        self.trunk = model.trunk
        self.adapter = model.adapters[embodiment]
        self.embodiment = embodiment
        self.input_names = self.adapter.input_names
        self.horizon = self.adapter.horizon

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Inputs in `self.input_names` order; returns (B, H, action_dim) actions in SI units."""
        seq, key_bias = self.adapter.encode(*inputs)
        for block in self.trunk:
            seq = block(seq, key_bias)
        return self.adapter.decode(seq)


def multi_config(config: PolicyConfig, embodiments: list[str]) -> PolicyConfig:
    """`config` marked as one embodiment of a multi-embodiment checkpoint (weights one directory up)."""
    arch = {**config.architecture, "type": ARCH_TYPE, "weights": f"../{WEIGHTS_FILE}",
            "embodiments": list(embodiments)}
    return replace(config, architecture=arch)


def save_multi_checkpoint(model: MultiEmbodimentModel, configs: Mapping[str, PolicyConfig],
                          root: str | Path) -> Path:
    """Write `<root>/model.safetensors` and `<root>/<embodiment>/config.json` for every embodiment."""
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    names = list(configs)
    for name, config in configs.items():
        save_config(multi_config(config, names), path / name)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(path / WEIGHTS_FILE), metadata={"embodiments": ",".join(names)})
    return path


def load_embodiment(checkpoint_dir: str | Path, config: PolicyConfig) -> EmbodimentView:
    """One embodiment of a multi-embodiment checkpoint (`config` read from `checkpoint_dir`), in eval mode.

    Raises:
        ConfigError: the weights file is missing or unreadable, or its trunk/adapter tensors do not match the
            config (e.g. a spec edited after training, or an embodiment the weights were not trained for).
    """
    weights = Path(checkpoint_dir) / config.architecture["weights"]
    if not weights.is_file():
        raise ConfigError(f"{weights}: not found (shared weights of the multi-embodiment checkpoint "
                          f"{Path(checkpoint_dir).parent})")
    model = MultiEmbodimentModel({config.embodiment: config})
    prefixes = ("trunk.", f"adapters.{config.embodiment}.")
    try:
        state = read_weights(weights, model.state_dict(), prefixes)
    except ConfigError as exc:
        raise ConfigError(f"{checkpoint_dir}: embodiment {config.embodiment!r}: {exc}") from None
    model.load_state_dict(state, strict=True)
    return model.eval().view(config.embodiment)

"""The project's action-chunking policy: a conv image encoder and a small transformer, fast on one CPU core.

Every observation group becomes tokens (image: a grid of conv features; state: one token; obstacles and parts:
one token per object, padded and masked; instruction: one token, the mean of hashed-word embeddings). `H`
learned query tokens, one per future step, attend to all of them; each query's output is decoded to one action.
Normalisation statistics come from the config and live in non-persistent buffers, so the model takes raw SI
inputs, returns SI actions, and `model.safetensors` holds learned weights only.

Attention is written with plain matmuls (no fused kernels) so the ONNX export matches PyTorch op for op.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from physical_ai.policy.observation import model_input_names
from physical_ai.policy.spec import WEIGHTS_FILE, ConfigError, FeatureGroup, PolicyConfig, load_config, save_config

MASKED = -1e9  # additive attention bias for padded tokens (finite: no NaN if a row were all padding)


class Block(nn.Module):
    """Pre-norm transformer encoder block with an additive key bias (for padding)."""

    def __init__(self, d_model: int, n_heads: int, ff_dim: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, ff_dim), nn.GELU(), nn.Linear(ff_dim, d_model))

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        """x: (B, T, D); key_bias: (B, 1, 1, T) added to attention logits."""
        b, t, _ = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, t, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        logits = torch.matmul(q, k.transpose(-1, -2)) * self.scale + key_bias
        attn = torch.matmul(torch.softmax(logits, dim=-1), v)
        x = x + self.proj(attn.transpose(1, 2).reshape(b, t, self.n_heads * self.head_dim))
        return x + self.ff(self.norm2(x))


def _stats(group: FeatureGroup) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.tensor(group.mean, dtype=torch.float32), torch.tensor(group.std, dtype=torch.float32))


class ChunkTransformer(nn.Module):
    """Maps one observation to a chunk of `chunk_length` actions. Inputs in `model_input_names(config)` order."""

    def __init__(self, config: PolicyConfig, trunk: bool = True) -> None:
        """Build from `config`; `trunk=False` leaves out the transformer blocks.

        Without a trunk this is one embodiment's adapter (input encoders, queries, action head) in a
        `physical_ai.policy.multi_embodiment.MultiEmbodimentModel`, whose blocks are shared.
        """
        super().__init__()
        arch = config.architecture
        if arch.get("type") not in ("chunk_transformer", "multi_embodiment"):
            raise ConfigError(f"architecture.type: {arch.get('type')!r} cannot be built locally")
        d = int(arch["d_model"])
        self.input_names = model_input_names(config)
        self.horizon = config.chunk_length
        spec = config.observation
        self.type_embed = nn.ParameterDict()
        if spec.image is not None:
            channels = [3, *arch["image_channels"]]
            layers: list[nn.Module] = []
            size_h, size_w = spec.image.shape[1:]
            for i, (c_in, c_out) in enumerate(itertools.pairwise(channels)):
                kernel = 5 if i == 0 else 3
                layers += [nn.Conv2d(c_in, c_out, kernel, stride=2, padding=kernel // 2), nn.ReLU()]
                size_h, size_w = (size_h + 1) // 2, (size_w + 1) // 2
            grid = int(arch.get("image_grid", 4))
            if min(size_h, size_w) < grid:
                raise ConfigError(f"architecture.image_grid: {grid} larger than the {size_h}x{size_w} feature map")
            pool = (size_h // grid, size_w // grid)
            layers += [nn.AvgPool2d(pool, stride=pool), nn.Conv2d(channels[-1], d, 1)]
            self.image_encoder = nn.Sequential(*layers)
            self.image_pos = nn.Parameter(torch.randn(grid * grid, d) * 0.02)
            mean, std = torch.tensor(spec.image.mean), torch.tensor(spec.image.std)
            self.register_buffer("image_mean", mean.view(1, 3, 1, 1), persistent=False)
            self.register_buffer("image_std", std.view(1, 3, 1, 1), persistent=False)
        if spec.state is not None:
            self.state_encoder = nn.Sequential(nn.Linear(len(spec.state.names), d), nn.GELU(), nn.Linear(d, d))
            self._buffers_for("state", spec.state)
        self.token_encoders = nn.ModuleDict()
        for group in ("obstacles", "parts"):
            tokens = getattr(spec, group)
            if tokens is not None:
                n_feat = len(tokens.features.names)
                self.token_encoders[group] = nn.Sequential(nn.Linear(n_feat, d), nn.GELU(), nn.Linear(d, d))
                self._buffers_for(group, tokens.features)
        if spec.instruction is not None:
            self.word_embed = nn.Embedding(spec.instruction.vocab_size, d, padding_idx=0)
        for group in spec.groups():
            self.type_embed[group] = nn.Parameter(torch.randn(d) * 0.02)
        self.queries = nn.Parameter(torch.randn(self.horizon, d) * 0.02)
        if trunk:
            self.blocks = build_trunk(arch)
        self.head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, config.action_dim))
        self._buffers_for("action", config.action)

    def _buffers_for(self, name: str, group: FeatureGroup) -> None:
        mean, std = _stats(group)
        self.register_buffer(f"{name}_mean", mean, persistent=False)
        self.register_buffer(f"{name}_std", std, persistent=False)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Inputs in `self.input_names` order (batch first); returns (B, H, action_dim) actions in SI units."""
        seq, key_bias = self.encode(*inputs)
        for block in self.blocks:
            seq = block(seq, key_bias)
        return self.decode(seq)

    def encode(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs -> (token sequence (B, T, D) ending with the H queries, key bias (B, 1, 1, T))."""
        x = dict(zip(self.input_names, inputs, strict=True))
        batch = inputs[0].shape[0]
        tokens: list[torch.Tensor] = []
        biases: list[torch.Tensor] = []  # per token: 0, or MASKED for padded objects

        def add(t: torch.Tensor, bias: torch.Tensor | None = None) -> None:
            tokens.append(t)
            biases.append(bias if bias is not None else torch.zeros(batch, t.shape[1], device=t.device))

        if "image" in x:
            img = (x["image"] - self.image_mean) / self.image_std
            feat = self.image_encoder(img).flatten(2).transpose(1, 2)  # (B, grid*grid, D)
            add(feat + self.image_pos + self.type_embed["image"])
        if "state" in x:
            state = (x["state"] - self.state_mean) / self.state_std
            add((self.state_encoder(state) + self.type_embed["state"]).unsqueeze(1))
        for group, encoder in self.token_encoders.items():
            values = (x[group] - getattr(self, f"{group}_mean")) / getattr(self, f"{group}_std")
            add(encoder(values) + self.type_embed[group], (1.0 - x[f"{group}_mask"]) * MASKED)
        if "instruction" in x:
            ids = x["instruction"]
            mask = (ids > 0).to(torch.float32).unsqueeze(-1)
            mean_word = (self.word_embed(ids) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            add((mean_word + self.type_embed["instruction"]).unsqueeze(1))
        add(self.queries.unsqueeze(0).expand(batch, -1, -1))
        return torch.cat(tokens, dim=1), torch.cat(biases, dim=1)[:, None, None, :]

    def decode(self, seq: torch.Tensor) -> torch.Tensor:
        """The trunk's output sequence -> (B, H, action_dim) actions in SI units (from the query positions)."""
        out = self.head(seq[:, -self.horizon:])
        return out * self.action_std + self.action_mean


def build_trunk(architecture: dict) -> nn.ModuleList:
    """The transformer blocks of an architecture dict (d_model, n_heads, ff_dim, n_layers)."""
    d = int(architecture["d_model"])
    return nn.ModuleList(Block(d, int(architecture["n_heads"]), int(architecture["ff_dim"]))
                         for _ in range(int(architecture["n_layers"])))


def build_model(config: PolicyConfig, seed: int | None = None) -> ChunkTransformer:
    """A randomly initialised model for `config` (eval mode); `seed` makes the weights reproducible."""
    if seed is not None:
        torch.manual_seed(seed)
    return ChunkTransformer(config).eval()


def count_parameters(model: nn.Module) -> int:
    """Number of learned parameters."""
    return sum(p.numel() for p in model.parameters())


def save_checkpoint(model: nn.Module, config: PolicyConfig, checkpoint_dir: str | Path) -> Path:
    """Write `config.json` and `model.safetensors` into `checkpoint_dir`; return the directory."""
    path = Path(checkpoint_dir)
    save_config(config, path)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(path / WEIGHTS_FILE), metadata={"name": config.name, "embodiment": config.embodiment})
    return path


def load_checkpoint(checkpoint_dir: str | Path) -> tuple[PolicyConfig, nn.Module]:
    """Load a checkpoint (safetensors only, never pickle); raise `ConfigError` on any mismatch.

    The model is a `ChunkTransformer`, or for one embodiment of a multi-embodiment checkpoint
    (`<root>/<embodiment>/config.json`) a module with the same interface (`input_names`, forward).
    """
    path = Path(checkpoint_dir)
    config = load_config(path)
    if config.architecture.get("type") == "multi_embodiment":  # one embodiment of a shared-trunk model
        from physical_ai.policy.multi_embodiment import load_embodiment

        return config, load_embodiment(path, config)
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise ConfigError(f"{weights}: not found")
    model = ChunkTransformer(config)
    model.load_state_dict(read_weights(weights, model.state_dict()), strict=True)
    return config, model.eval()


def read_weights(weights: Path, expected: dict[str, torch.Tensor], prefixes: tuple[str, ...] = ()
                 ) -> dict[str, torch.Tensor]:
    """The tensors of `weights`, checked against `expected`'s names, shapes and finiteness.

    With `prefixes`, only the tensors whose names start with one of them are read (one embodiment of a
    multi-embodiment checkpoint). Raises `ConfigError` on any mismatch or an unreadable file.
    """
    try:
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises several types for corrupt files
        raise ConfigError(f"{weights}: unreadable safetensors file: {exc}") from exc
    if prefixes:
        state = {k: v for k, v in state.items() if k.startswith(prefixes)}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ConfigError(f"{weights}: does not match config.json architecture/spec: missing tensors {missing[:5]}, "
                          f"unexpected tensors {unexpected[:5]}")
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise ConfigError(f"{weights}: tensor {key} has shape {tuple(tensor.shape)}, config.json implies "
                              f"{tuple(expected[key].shape)}")
        if not torch.isfinite(tensor).all():
            raise ConfigError(f"{weights}: tensor {key} holds non-finite values")
    return state


def example_inputs(config: PolicyConfig, batch: int = 1, seed: int = 0) -> list[torch.Tensor]:
    """Plausible random inputs in `model_input_names(config)` order (for export, tests and benchmarks)."""
    rng = np.random.default_rng(seed)
    out: list[torch.Tensor] = []
    spec = config.observation
    for name in model_input_names(config):
        if name == "image":
            arr = rng.random((batch, *spec.image.shape), dtype=np.float32)
        elif name == "state":
            arr = rng.normal(size=(batch, len(spec.state.names))).astype(np.float32)
        elif name.endswith("_mask"):
            group = getattr(spec, name[:-5])
            arr = (np.arange(group.max_count) < max(1, group.max_count // 2)).astype(np.float32)[None].repeat(batch, 0)
        elif name in ("obstacles", "parts"):
            group = getattr(spec, name)
            arr = rng.normal(size=(batch, group.max_count, len(group.features.names))).astype(np.float32)
        else:
            arr = rng.integers(1, spec.instruction.vocab_size, (batch, spec.instruction.max_tokens), dtype=np.int64)
        out.append(torch.from_numpy(arr))
    return out

"""`physai train`: imitation learning of the project's action-chunking policy on collected demonstrations.

    physai train --dataset /tmp/amr_data --output models/amr_nav --steps 4000
    physai train --dataset /tmp/arm_a /tmp/arm_b --output models/arm_pick   (datasets collected in parallel)

The model is `physical_ai.policy.model.ChunkTransformer`; its observation/action spec comes from the dataset
(`meta/info.json` -> physai.spec), its normalisation statistics are computed here from the data and stored in
`config.json`. Loss: L1 on normalised actions over the chunk (as ACT), padded steps past an episode's end masked.
Checkpoints are `config.json` + `model.safetensors`; while training runs, `train_state/` next to them holds the
optimizer moments (safetensors, never a pickle) and progress, so `--resume` continues an interrupted run.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import signal
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from physical_ai.data.provenance import cite, update_model_card
from physical_ai.policy.spec import FeatureGroup, PolicyConfig, TokenGroup, parse_config
from physical_ai.training.dataset import DatasetError, DatasetReader, open_dataset

STATE_DIR = "train_state"
STD_FLOOR = 1e-3
CONSTANT_STD = 1.0  # a feature that never varies in the data is passed through unscaled


@dataclass
class TrainData:
    """All frames of a dataset as model inputs, plus each frame's target chunk."""

    inputs: dict[str, np.ndarray]   # name -> (N, ...) in model_input_names order
    actions: np.ndarray             # (N, H, A) target chunk per frame
    action_pad: np.ndarray          # (N, H) True where the chunk ran past the episode end
    episode_of_frame: np.ndarray    # (N,)


def load_training_data(dataset: DatasetReader, config: PolicyConfig) -> TrainData:
    """Load every episode (validated, errors name the episode) into model-input arrays."""
    from physical_ai.policy.observation import model_input_names, tokenize_instruction

    names = model_input_names(config)
    horizon = config.chunk_length
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    actions, pads, episodes = [], [], []
    spec = config.observation
    state_columns = None
    if spec.state is not None:  # the state entries the config keeps, as columns of the recorded state
        recorded = list(dataset.physai.get("spec", {}).get("observation", {}).get("state", {}).get("names", []))
        if recorded and list(spec.state.names) != recorded:
            state_columns = [recorded.index(n) for n in spec.state.names]
    for index, arrays in dataset.iter_episodes():
        length = len(arrays["action"])
        for name in names:
            if name == "instruction":
                ids = tokenize_instruction(dataset.task(index), spec.instruction.max_tokens,
                                           spec.instruction.vocab_size)
                parts[name].append(np.repeat(ids[None], length, 0))
            elif name == "image":
                parts[name].append(arrays["observation.image"])  # uint8 (T, H, W, 3); converted per batch
            else:
                key = f"observation.{name}"
                if key not in arrays:
                    raise DatasetError(f"episode {index}: {key} missing (the policy spec needs it)")
                values = arrays[key].astype(np.float32)
                parts[name].append(values[:, state_columns] if name == "state" and state_columns else values)
        step = np.arange(length)[:, None] + np.arange(horizon)[None, :]
        pads.append(step >= length)
        actions.append(arrays["action"][np.minimum(step, length - 1)].astype(np.float32))
        episodes.append(np.full(length, index))
    if not actions:
        raise DatasetError(f"{dataset.root}: no episodes")
    inputs = {n: np.concatenate(v) for n, v in parts.items()}
    return TrainData(inputs, np.concatenate(actions), np.concatenate(pads), np.concatenate(episodes))


def load_datasets(dataset_dirs: list[str | Path], config: PolicyConfig) -> tuple[TrainData, list[DatasetReader]]:
    """Frames of one or more datasets with the same recorded spec (e.g. collected in parallel), concatenated."""
    datasets = [open_dataset(d) for d in dataset_dirs]
    first = datasets[0].physai.get("spec")
    for d in datasets[1:]:
        if d.physai.get("spec") != first:
            raise DatasetError(f"{d.root}: its recorded observation/action spec differs from {datasets[0].root}'s")
    loaded = [load_training_data(d, config) for d in datasets]
    offsets = np.cumsum([0] + [len(d) for d in datasets[:-1]])
    data = TrainData({k: np.concatenate([t.inputs[k] for t in loaded]) for k in loaded[0].inputs},
                     np.concatenate([t.actions for t in loaded]), np.concatenate([t.action_pad for t in loaded]),
                     np.concatenate([t.episode_of_frame + o for t, o in zip(loaded, offsets, strict=True)]))
    return data, datasets


def _group_stats(values: np.ndarray, group: FeatureGroup, mask: np.ndarray | None = None) -> FeatureGroup:
    flat = values.reshape(-1, values.shape[-1]).astype(np.float64)
    if mask is not None:
        flat = flat[mask.reshape(-1) > 0.5]
    if len(flat) == 0:
        return group
    mean = flat.mean(0)
    std = flat.std(0)
    std = np.where(std < STD_FLOOR, CONSTANT_STD, std)
    return replace(group, mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std))


def fit_normalisation(config: PolicyConfig, data: TrainData) -> PolicyConfig:
    """Return `config` with observation and action statistics computed from the training frames."""
    obs = config.observation
    image = obs.image
    if image is not None:
        sample = data.inputs["image"][:: max(1, len(data.inputs["image"]) // 2000)].astype(np.float64) / 255.0
        flat = sample.reshape(-1, 3)
        image = replace(image, mean=tuple(float(v) for v in flat.mean(0)),
                        std=tuple(float(max(v, 0.02)) for v in flat.std(0)))
    state = _group_stats(data.inputs["state"], obs.state) if obs.state is not None else None
    tokens: dict[str, TokenGroup | None] = {}
    for key in ("obstacles", "parts"):
        group: TokenGroup | None = getattr(obs, key)
        if group is not None:
            feats = _group_stats(data.inputs[key], group.features, data.inputs[f"{key}_mask"])
            group = replace(group, features=feats)
        tokens[key] = group
    valid = ~data.action_pad
    action = _group_stats(data.actions[valid], config.action)
    observation = replace(obs, image=image, state=state, obstacles=tokens["obstacles"], parts=tokens["parts"])
    return replace(config, observation=observation, action=action)


# ---- optimizer state as safetensors (resume without pickles) ----------------------------------------------
def save_train_state(directory: Path, optimizer: Any, progress: dict[str, Any]) -> None:
    """Optimizer moments to `optimizer.safetensors`, counters and loss history to `progress.json`."""
    import torch
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    state = optimizer.state_dict()
    for pid, slot in state["state"].items():
        for key, value in slot.items():
            tensors[f"{pid}.{key}"] = torch.as_tensor(value).detach().clone().contiguous()
    tmp = directory / "optimizer.tmp.safetensors"
    save_file(tensors, str(tmp))
    tmp.replace(directory / "optimizer.safetensors")
    (directory / "progress.tmp.json").write_text(json.dumps(progress))
    (directory / "progress.tmp.json").replace(directory / "progress.json")


def load_train_state(directory: Path, optimizer: Any) -> dict[str, Any]:
    """Restore optimizer moments saved by `save_train_state`; return the progress dict."""
    from safetensors.torch import load_file

    progress_path = directory / "progress.json"
    if not progress_path.is_file():
        raise DatasetError(f"{directory}: no training state to resume (progress.json missing)")
    progress = json.loads(progress_path.read_text())
    tensors = load_file(str(directory / "optimizer.safetensors"))
    state = optimizer.state_dict()
    slots: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        pid, name = key.split(".", 1)
        slots.setdefault(int(pid), {})[name] = value
    state["state"] = slots
    optimizer.load_state_dict(state)
    return progress


def plot_losses(history: list[tuple[int, float]], path: Path, title: str) -> None:
    """Loss curve (log scale) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, losses = zip(*history, strict=True) if history else ((), ())
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, losses, lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("L1 loss (normalised actions)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def base_config(dataset: DatasetReader, name: str, architecture: dict[str, Any],
                state_features: list[str] | None = None) -> PolicyConfig:
    """The observation/action spec recorded with the dataset, with a new name and architecture.

    `state_features` keeps only these recorded state entries (by name, in this order): e.g. an AMR policy without
    its own velocity, which otherwise learns to copy it ("stopped, so stay stopped") instead of reading the scene.
    """
    raw = dataset.physai.get("spec")
    if not isinstance(raw, dict):
        raise DatasetError(f"{dataset.root}: no policy spec (meta/physai.json 'spec'; meta/info.json 'physai.spec' in "
                           ".npz datasets): not written by physai collect or physai dataset build")
    raw = dict(raw)
    raw["name"] = name
    raw["architecture"] = architecture
    config = parse_config(raw)
    if state_features:
        group = config.observation.state
        recorded = list(group.names) if group is not None else []
        missing = [f for f in state_features if f not in recorded]
        if missing:
            raise DatasetError(f"--state-features {missing} not in the dataset's state {recorded}")
        idx = [recorded.index(f) for f in state_features]
        group = replace(group, names=tuple(state_features), units=tuple(group.units[i] for i in idx),
                        mean=tuple(group.mean[i] for i in idx), std=tuple(group.std[i] for i in idx))
        config = replace(config, observation=replace(config.observation, state=group))
    return config


def _batch(data: TrainData, idx: np.ndarray, names: list[str], torch: Any) -> list[Any]:
    out = []
    for n in names:
        arr = data.inputs[n][idx]
        if n == "image":
            arr = arr.transpose(0, 3, 1, 2).astype(np.float32) * np.float32(1.0 / 255.0)
        out.append(torch.from_numpy(np.ascontiguousarray(arr)))
    return out


def train(dataset_dir: str | Path | list[str | Path], output: str | Path, name: str, architecture: dict[str, Any],
          steps: int,
          batch_size: int = 64, lr: float = 1e-3, seed: int = 0, threads: int = 2, resume: bool = False,
          checkpoint_every: int = 500, stop_after: int | None = None, progress_bar: bool = True,
          quiet: bool = False, state_features: list[str] | None = None) -> dict[str, Any]:
    """Train and write the checkpoint to `output`; return a summary (final loss, wall time, parameters).

    `dataset_dir` is one dataset directory or a list of them (same spec). `stop_after` stops (as an interruption
    would) after that many steps of this call, leaving a resumable state.
    """
    import torch
    from tqdm import tqdm

    from physical_ai.policy.model import ChunkTransformer, count_parameters, load_checkpoint, save_checkpoint
    from physical_ai.policy.observation import model_input_names

    torch.set_num_threads(threads)
    out = Path(output)
    state_dir = out / STATE_DIR
    dirs = [dataset_dir] if isinstance(dataset_dir, (str, Path)) else list(dataset_dir)
    if not dirs:
        raise DatasetError("no dataset directory given")
    dataset = open_dataset(dirs[0])
    config = base_config(dataset, name, architecture, state_features)
    data, datasets = load_datasets(dirs, config)
    if resume:
        if not (state_dir / "progress.json").is_file():
            raise DatasetError(f"{out}: nothing to resume ({STATE_DIR}/progress.json missing)")
        config, model = load_checkpoint(out)
        model.train()
    else:
        config = fit_normalisation(config, data)
        sensing = {k: dataset.physai[k] for k in ("scenario", "perception", "state_frame") if k in dataset.physai}
        config = replace(config, extra={**config.extra, **sensing,
                                        "training": {"dataset": " ".join(str(d) for d in dirs), "steps": steps,
                                                     "batch_size": batch_size, "lr": lr, "seed": seed,
                                                     "datasets": [cite(d) for d in dirs]}})
        torch.manual_seed(seed)
        model = ChunkTransformer(config).train()
    names = model_input_names(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    progress: dict[str, Any] = {"step": 0, "history": [], "wall_s": 0.0}
    if resume:
        progress = load_train_state(state_dir, optimizer)
    start_step = int(progress["step"])
    rng = np.random.default_rng(seed + start_step)
    act_mean = torch.tensor(config.action.mean, dtype=torch.float32)
    act_std = torch.tensor(config.action.std, dtype=torch.float32)
    actions = torch.from_numpy(data.actions)
    valid = torch.from_numpy(~data.action_pad).to(torch.float32).unsqueeze(-1)
    n = len(data.actions)
    warmup = max(1, min(200, steps // 20))

    def lr_at(step: int) -> float:
        if step < warmup:
            return lr * (step + 1) / warmup
        return lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, steps - warmup))))

    interrupted = {"flag": False}

    def on_signal(signum: int, _frame: Any) -> None:
        interrupted["flag"] = True

    previous = signal.signal(signal.SIGTERM, on_signal)
    t0 = time.monotonic()
    wall_before = float(progress["wall_s"])
    recent: list[float] = []
    step = start_step
    bar = tqdm(total=steps, initial=start_step, desc=f"train {name}", disable=not progress_bar, unit="step")

    def checkpoint() -> None:
        progress.update(step=step, wall_s=wall_before + time.monotonic() - t0)
        model.eval()
        save_checkpoint(model, config, out)
        model.train()
        save_train_state(state_dir, optimizer, progress)

    try:
        while step < steps:
            if interrupted["flag"] or (stop_after is not None and step - start_step >= stop_after):
                raise KeyboardInterrupt
            idx = rng.integers(0, n, batch_size)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            pred = model(*_batch(data, idx, names, torch))
            target = actions[idx]
            err = ((pred - target) / act_std).abs() * valid[idx]
            loss = err.sum() / (valid[idx].sum() * config.action_dim)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            recent.append(loss.item())
            if step % 25 == 0 or step == steps:
                progress["history"].append((step, float(np.mean(recent))))
                bar.set_postfix(loss=f"{np.mean(recent):.4f}")
                recent.clear()
            bar.update(1)
            if step % checkpoint_every == 0 and step < steps:
                checkpoint()
    except KeyboardInterrupt:
        checkpoint()
        bar.close()
        signal.signal(signal.SIGTERM, previous)
        if not quiet:
            print(f"interrupted at step {step}/{steps}; resume with --resume (state in {state_dir})", file=sys.stderr)
        return {"interrupted": True, "step": step}
    bar.close()
    signal.signal(signal.SIGTERM, previous)
    del act_mean
    progress.update(step=step, wall_s=wall_before + time.monotonic() - t0)
    history = [tuple(h) for h in progress["history"]]
    final_loss = history[-1][1] if history else float("nan")
    config = replace(config, extra={**config.extra, "training": {
        **config.extra.get("training", {}), "final_loss": final_loss, "wall_s": round(progress["wall_s"], 1),
        "frames": n, "episodes": sum(len(d) for d in datasets)}})
    model.eval()
    save_checkpoint(model, config, out)
    plot_losses(history, out / "loss.png", f"{name}: {count_parameters(model)} parameters")
    update_model_card(out, config.extra["training"].get("datasets") or [cite(d) for d in dirs])
    (out / "training_log.json").write_text(json.dumps({"history": history, "wall_s": progress["wall_s"],
                                                       "steps": step, "frames": n}) + "\n")
    shutil.rmtree(state_dir, ignore_errors=True)
    return {"interrupted": False, "step": step, "final_loss": final_loss, "wall_s": progress["wall_s"],
            "parameters": count_parameters(model), "frames": n}


def _architecture(args: argparse.Namespace) -> dict[str, Any]:
    return {"type": "chunk_transformer", "d_model": args.d_model, "n_heads": args.heads, "n_layers": args.layers,
            "ff_dim": args.ff_dim, "image_channels": [int(c) for c in args.image_channels.split(",")],
            "image_grid": args.image_grid}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `physai train`."""
    parser.add_argument("--dataset", required=True, nargs="+",
                        help="dataset directory written by `physai collect` (several: same spec, concatenated)")
    parser.add_argument("--output", required=True, help="checkpoint directory, e.g. models/amr_nav")
    parser.add_argument("--name", default=None, help="model name (default: the output directory's name)")
    parser.add_argument("--steps", type=int, default=4000, help="optimizer steps")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (warm-up, then cosine)")
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--ff-dim", type=int, default=128)
    parser.add_argument("--image-channels", default="16,32,32", help="conv channels of the image encoder")
    parser.add_argument("--image-grid", type=int, default=4)
    parser.add_argument("--state-features", default=None, nargs="+",
                        help="comma-separated state entries to keep, e.g. odom.x,odom.y,odom.yaw (default: all); "
                             "with datasets of several embodiments one list per embodiment, e.g. amr:odom.x,odom.y")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--checkpoint-every", type=int, default=500, help="steps between resumable checkpoints")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --output")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Entry point of `physai train`."""
    from physical_ai.training.train_multi import group_by_embodiment, parse_state_features, train_multi

    name = args.name or Path(args.output).name
    try:
        features = parse_state_features(args.state_features)
        groups = group_by_embodiment(args.dataset) if len(args.dataset) > 1 else {}
        if len(groups) > 1:  # datasets of several robots: one shared-trunk model with per-embodiment adapters
            if args.resume:
                raise DatasetError("--resume: not supported for multi-embodiment training (datasets of "
                                   f"{list(groups)})")
            summary = train_multi(groups, args.output, name, _architecture(args), args.steps, args.batch_size,
                                  args.lr, args.seed, args.threads, features, progress_bar=not args.no_progress)
            print(f"TRAIN {name} steps={summary['step']} final_loss={summary['final_loss']:.4f} "
                  f"wall_s={summary['wall_s']:.0f} parameters={summary['parameters']} "
                  f"embodiments={','.join(groups)}")
            return 0
        if len(features) > 1:
            raise DatasetError(f"--state-features: several lists {list(features)} for one embodiment")
        summary = train(args.dataset, args.output, name, _architecture(args), args.steps, args.batch_size, args.lr,
                        args.seed, args.threads, args.resume, args.checkpoint_every,
                        progress_bar=not args.no_progress,
                        state_features=next(iter(features.values()), None))
    except DatasetError as exc:
        print(f"physai train: {exc}", file=sys.stderr)
        return 2
    if summary["interrupted"]:
        return 130
    print(f"TRAIN {name} steps={summary['step']} final_loss={summary['final_loss']:.4f} "
          f"wall_s={summary['wall_s']:.0f} parameters={summary['parameters']} frames={summary['frames']}")
    return 0

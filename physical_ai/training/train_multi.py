"""Training of one multi-embodiment policy (`physical_ai.policy.multi_embodiment`) on datasets of several robots.

    physai train --dataset /tmp/amr_node_data /tmp/veh/vehicle_data /tmp/arm_data_g1 /tmp/arm_data_g2 \
        --output models/multi_embodiment --steps 7000 --state-features amr:odom.x,odom.y,odom.yaw

`physai train` comes here when its datasets record more than one embodiment. Datasets of the same embodiment are
concatenated (their specs must match); every embodiment keeps its own spec, chunk length and normalisation
statistics (fitted on its own frames). Balanced sampling: each optimizer step draws one batch of `batch_size`
frames from every embodiment and minimises the mean of the embodiments' L1 losses on normalised actions (as
`train.py`), so a small dataset weighs as much as a large one.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from physical_ai.policy.spec import PolicyConfig
from physical_ai.training.dataset import DatasetError, open_dataset
from physical_ai.training.train import TrainData, _batch, base_config, fit_normalisation, load_datasets


def dataset_embodiment(directory: str | Path) -> str:
    """The embodiment a dataset was recorded for (meta/info.json physai.spec.embodiment)."""
    dataset = open_dataset(directory)
    embodiment = dataset.physai.get("spec", {}).get("embodiment") or dataset.physai.get("embodiment")
    if not isinstance(embodiment, str) or not embodiment:
        raise DatasetError(f"{directory}/meta/info.json: physai.spec.embodiment missing (not collected by physai "
                           "collect?)")
    return embodiment


def group_by_embodiment(dirs: list[str | Path]) -> dict[str, list[str | Path]]:
    """Dataset directories grouped by embodiment, in order of first appearance."""
    groups: dict[str, list[str | Path]] = {}
    for d in dirs:
        groups.setdefault(dataset_embodiment(d), []).append(d)
    return groups


def parse_state_features(items: list[str] | None) -> dict[str, list[str]]:
    """`--state-features` values: "a,b" (every embodiment) or "amr:a,b" (one) -> {embodiment or "": names}."""
    out: dict[str, list[str]] = {}
    for item in items or []:
        key, _, names = item.rpartition(":")
        if key in out:
            raise DatasetError(f"--state-features: {key or 'all embodiments'} given twice")
        out[key] = [n for n in names.split(",") if n]
    return out


def _plot(histories: dict[str, list[tuple[int, float]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, history in histories.items():
        if history:
            steps, losses = zip(*history, strict=True)
            ax.plot(steps, losses, lw=1, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("L1 loss (normalised actions)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train_multi(groups: dict[str, list[str | Path]], output: str | Path, name: str, architecture: dict[str, Any],
                steps: int, batch_size: int = 64, lr: float = 1e-3, seed: int = 0, threads: int = 2,
                state_features: dict[str, list[str]] | None = None, progress_bar: bool = True) -> dict[str, Any]:
    """Train one shared-trunk model on every embodiment's datasets; write the checkpoint to `output`.

    Returns a summary: final loss (mean over embodiments) and per embodiment, wall time, parameters (all, and
    trunk + one adapter per embodiment), frames per embodiment.
    """
    import torch
    from tqdm import tqdm

    from physical_ai.policy.model import count_parameters
    from physical_ai.policy.multi_embodiment import MultiEmbodimentModel, save_multi_checkpoint
    from physical_ai.policy.observation import model_input_names

    if len(groups) < 2:
        raise DatasetError(f"a multi-embodiment model needs datasets of two or more embodiments, got {list(groups)}")
    features = state_features or {}
    unknown = set(features) - set(groups) - {""}
    if unknown:
        raise DatasetError(f"--state-features names embodiments {sorted(unknown)} with no dataset here "
                           f"(datasets: {list(groups)})")
    if "" in features:
        raise DatasetError("--state-features: with several embodiments, prefix each list with its embodiment, "
                           "e.g. amr:odom.x,odom.y,odom.yaw")
    torch.set_num_threads(threads)
    configs: dict[str, PolicyConfig] = {}
    data: dict[str, TrainData] = {}
    episodes: dict[str, int] = {}
    for embodiment, dirs in groups.items():
        config = base_config(open_dataset(dirs[0]), name, architecture, features.get(embodiment))
        data[embodiment], datasets = load_datasets(dirs, config)
        episodes[embodiment] = sum(len(d) for d in datasets)
        config = fit_normalisation(config, data[embodiment])
        sensing = {k: datasets[0].physai[k] for k in ("scenario", "perception", "state_frame")
                   if k in datasets[0].physai}
        configs[embodiment] = replace(config, extra={**config.extra, **sensing, "training": {
            "dataset": " ".join(str(d) for d in dirs), "steps": steps, "batch_size": batch_size, "lr": lr,
            "seed": seed, "sampling": "balanced: one batch per embodiment per step"}})
    torch.manual_seed(seed)
    model = MultiEmbodimentModel(configs).train()
    names = {e: model_input_names(c) for e, c in configs.items()}
    tensors = {e: (torch.from_numpy(d.actions), torch.from_numpy(~d.action_pad).to(torch.float32).unsqueeze(-1),
                   torch.tensor(configs[e].action.std, dtype=torch.float32)) for e, d in data.items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    rng = np.random.default_rng(seed)
    warmup = max(1, min(200, steps // 20))
    histories: dict[str, list[tuple[int, float]]] = {e: [] for e in configs}
    histories["mean"] = []
    recent: dict[str, list[float]] = {e: [] for e in histories}
    t0 = time.monotonic()
    bar = tqdm(total=steps, desc=f"train {name} ({'+'.join(configs)})", disable=not progress_bar, unit="step")
    for step in range(1, steps + 1):
        rate = lr * (step / warmup if step <= warmup else
                     0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, steps - warmup)))))
        for group in optimizer.param_groups:
            group["lr"] = rate
        losses = []
        for embodiment, d in data.items():
            actions, valid, act_std = tensors[embodiment]
            idx = rng.integers(0, len(d.actions), batch_size)
            pred = model.act(embodiment, *_batch(d, idx, names[embodiment], torch))
            err = ((pred - actions[idx]) / act_std).abs() * valid[idx]
            losses.append(err.sum() / (valid[idx].sum() * configs[embodiment].action_dim))
            recent[embodiment].append(losses[-1].item())
        loss = torch.stack(losses).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        recent["mean"].append(loss.item())
        if step % 25 == 0 or step == steps:
            for key, values in recent.items():
                histories[key].append((step, float(np.mean(values))))
                values.clear()
            bar.set_postfix(loss=f"{histories['mean'][-1][1]:.4f}")
        bar.update(1)
    bar.close()
    wall_s = time.monotonic() - t0
    final = {k: h[-1][1] for k, h in histories.items()}
    for embodiment, config in configs.items():
        configs[embodiment] = replace(config, extra={**config.extra, "training": {
            **config.extra["training"], "final_loss": final[embodiment], "wall_s": round(wall_s, 1),
            "frames": len(data[embodiment].actions), "episodes": episodes[embodiment]}})
    model.eval()
    out = Path(output)
    save_multi_checkpoint(model, configs, out)
    per_embodiment = {e: count_parameters(model.view(e)) for e in configs}
    _plot(histories, out / "loss.png", f"{name}: {count_parameters(model)} parameters")
    summary = {"step": steps, "final_loss": final["mean"], "final_loss_per_embodiment": final,
               "wall_s": round(wall_s, 1), "parameters": count_parameters(model),
               "parameters_trunk": count_parameters(model.trunk), "parameters_per_embodiment": per_embodiment,
               "frames": {e: len(d.actions) for e, d in data.items()}, "episodes": episodes}
    (out / "training_log.json").write_text(json.dumps({**summary, "history": histories}) + "\n")
    return summary

"""Reading the `.npz` datasets that `physai collect` wrote before it wrote LeRobot datasets (codebase "v2.1-npz").

Layout: `meta/info.json` (LeRobot v2.1 field names), `meta/episodes.jsonl`, `meta/tasks.jsonl`, `meta/stats.json`,
and `data/chunk-000/episode_000000.npz` (one array per feature, frames first; `extra.<name>` per-episode arrays).
Training still reads them, and `physai dataset convert` turns them into LeRobot datasets, so none is orphaned.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from physical_ai.data.lerobot_format import DatasetError, Feature

CODEBASE_VERSION = "v2.1-npz"
CHUNKS_SIZE = 1000
DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.npz"


def episode_path(root: Path, index: int) -> Path:
    """Path of episode `index`'s shard under `root`."""
    return root / DATA_PATH.format(episode_chunk=index // CHUNKS_SIZE, episode_index=index)


class NpzReader:
    """A legacy `.npz` dataset, read with validation; the same interface as `LeRobotReader`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        info_path = self.root / "meta" / "info.json"
        if not info_path.is_file():
            raise DatasetError(f"{self.root}: not a dataset (meta/info.json missing: collection did not finish?)")
        try:
            self.info: dict[str, Any] = json.loads(info_path.read_text())
            lines = (self.root / "meta" / "episodes.jsonl").read_text().splitlines()
            self.episodes: list[dict[str, Any]] = [json.loads(line) for line in lines if line.strip()]
            self.stats: dict[str, Any] = json.loads((self.root / "meta" / "stats.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DatasetError(f"{self.root}/meta: unreadable: {exc}") from exc
        if len(self.episodes) != self.info.get("total_episodes"):
            raise DatasetError(f"{self.root}: meta/episodes.jsonl lists {len(self.episodes)} episodes, info.json "
                               f"says {self.info.get('total_episodes')} (partial dataset)")
        self.features: dict[str, Feature] = {
            k: Feature(v["dtype"], tuple(v["shape"]), tuple(v["names"]) if v.get("names") else None)
            for k, v in self.info["features"].items()}

    @property
    def physai(self) -> dict[str, Any]:
        """Project-specific metadata (scenario, embodiment, observation spec names, ...)."""
        return self.info.get("physai", {})

    @property
    def fps(self) -> float:
        """Frames per second."""
        return float(self.info["fps"])

    def __len__(self) -> int:
        return len(self.episodes)

    def load_episode(self, index: int) -> dict[str, np.ndarray]:
        """All arrays of episode `index`, validated against info.json; `DatasetError` names the episode."""
        meta = self.episodes[index]
        path = episode_path(self.root, index)
        where = f"episode {index} ({path})"
        if not path.is_file():
            raise DatasetError(f"{where}: shard missing")
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
            raise DatasetError(f"{where}: corrupt or truncated shard: {exc}") from exc
        length = meta.get("length")
        for name, feat in self.features.items():
            if name not in arrays:
                raise DatasetError(f"{where}: feature {name!r} missing")
            arr = arrays[name]
            if arr.shape != (length, *feat.shape):
                raise DatasetError(f"{where}: {name} has shape {arr.shape}, expected {(length, *feat.shape)}")
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise DatasetError(f"{where}: {name} holds non-finite values")
        return arrays

    def iter_episodes(self) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """(index, arrays) for every episode, in order."""
        for i in range(len(self.episodes)):
            yield i, self.load_episode(i)

    def task(self, episode: int) -> str:
        """Instruction of an episode."""
        return str(self.episodes[episode]["tasks"][0])

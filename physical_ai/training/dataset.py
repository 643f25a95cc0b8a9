"""Demonstration datasets on disk in a LeRobot-compatible layout, with numpy `.npz` shards instead of parquet.

Layout (LeRobot v2.1 field names; the one difference is the shard format):

    <root>/meta/info.json        codebase_version, robot_type, fps, total_episodes, total_frames, total_tasks,
                                 chunks_size, data_path, features {name: {dtype, shape, names}}, splits, physai {...}
    <root>/meta/episodes.jsonl   one line per episode: episode_index, tasks, length, success, seed, collisions
    <root>/meta/tasks.jsonl      task_index, task (the instruction string)
    <root>/meta/stats.json       per feature: mean, std, min, max, count
    <root>/data/chunk-000/episode_000000.npz   one shard per episode, one array per feature, frames first

Why `.npz` and not parquet or MCAP: pyarrow is not installed here, and training wants frame-aligned arrays. One shard
per episode mirrors LeRobot's one parquet per episode with the same column names ("observation.state", "action",
"observation.images.<camera>", "timestamp", "frame_index", "episode_index", "index", "task_index", "next.done"), so
converting to a LeRobot dataset is a column copy; MCAP would store raw ROS messages that need decoding and time
alignment before every epoch. Images are stored as uint8 frames inside the shard (LeRobot stores MP4 video; we keep
raw frames at policy resolution, small enough at 96x96).

Every read is validated: a missing, truncated or inconsistent shard raises `DatasetError` naming the episode.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CODEBASE_VERSION = "v2.1-npz"
CHUNKS_SIZE = 1000
DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.npz"
# Per-frame bookkeeping columns every shard carries (besides the observation/action features).
INDEX_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index", "next.done")


class DatasetError(ValueError):
    """A dataset is missing, corrupt or inconsistent; the message names the episode or file."""


@dataclass(frozen=True)
class Feature:
    """One per-frame array: dtype and per-frame shape, with optional channel names."""

    dtype: str
    shape: tuple[int, ...]
    names: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        """LeRobot-style feature entry."""
        return {"dtype": self.dtype, "shape": list(self.shape), "names": list(self.names) if self.names else None}


def episode_path(root: Path, index: int) -> Path:
    """Path of episode `index`'s shard under `root`."""
    return root / DATA_PATH.format(episode_chunk=index // CHUNKS_SIZE, episode_index=index)


class DatasetWriter:
    """Writes episodes one by one, then `finish()` writes meta/ (info, episodes, tasks, stats)."""

    def __init__(self, root: str | Path, robot_type: str, fps: float, features: Mapping[str, Feature],
                 extra: Mapping[str, Any] | None = None) -> None:
        self.root = Path(root)
        if (self.root / "meta" / "info.json").exists():
            raise DatasetError(f"{self.root}: a dataset already exists here (choose a new --output)")
        self.robot_type, self.fps = robot_type, float(fps)
        self.features = dict(features)
        self.extra = dict(extra or {})
        self.episodes: list[dict[str, Any]] = []
        self.tasks: dict[str, int] = {}
        self._sums: dict[str, list[np.ndarray]] = {}
        self._frames = 0

    def add_episode(self, frames: Mapping[str, np.ndarray], task: str, meta: Mapping[str, Any],
                    extra_arrays: Mapping[str, np.ndarray] | None = None) -> int:
        """Write one episode; `frames` holds every feature with T frames first. Returns the episode index."""
        index = len(self.episodes)
        lengths = {k: len(v) for k, v in frames.items()}
        length = next(iter(lengths.values()))
        if set(lengths.values()) != {length} or length == 0:
            raise DatasetError(f"episode {index}: features of unequal or zero length {lengths}")
        missing = set(self.features) - set(frames)
        if missing:
            raise DatasetError(f"episode {index}: missing features {sorted(missing)}")
        task_index = self.tasks.setdefault(task, len(self.tasks))
        arrays: dict[str, np.ndarray] = {}
        for name, feat in self.features.items():
            arr = np.asarray(frames[name], dtype=feat.dtype)
            if arr.shape[1:] != feat.shape:
                raise DatasetError(f"episode {index}: {name} frames of shape {arr.shape[1:]}, expected {feat.shape}")
            arrays[name] = arr
            if feat.dtype.startswith("float") and name != "timestamp":
                self._sums.setdefault(name, []).append(_moments(arr))
        arrays["timestamp"] = np.arange(length, dtype=np.float32) / np.float32(self.fps)
        arrays["frame_index"] = np.arange(length, dtype=np.int64)
        arrays["episode_index"] = np.full(length, index, dtype=np.int64)
        arrays["index"] = np.arange(self._frames, self._frames + length, dtype=np.int64)
        arrays["task_index"] = np.full(length, task_index, dtype=np.int64)
        done = np.zeros(length, dtype=bool)
        done[-1] = True
        arrays["next.done"] = done
        for key, value in (extra_arrays or {}).items():
            arrays[f"extra.{key}"] = np.asarray(value)
        path = episode_path(self.root, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        tmp.replace(path)  # a crash mid-write leaves no half-written shard under the final name
        self.episodes.append({"episode_index": index, "tasks": [task], "length": length, **dict(meta)})
        self._frames += length
        return index

    def finish(self) -> Path:
        """Write meta/ and return the dataset root."""
        meta = self.root / "meta"
        meta.mkdir(parents=True, exist_ok=True)
        features = {k: v.to_json() for k, v in self.features.items()}
        features.update({"timestamp": Feature("float32", ()).to_json(), "frame_index": Feature("int64", ()).to_json(),
                         "episode_index": Feature("int64", ()).to_json(), "index": Feature("int64", ()).to_json(),
                         "task_index": Feature("int64", ()).to_json(), "next.done": Feature("bool", ()).to_json()})
        n = len(self.episodes)
        info = {"codebase_version": CODEBASE_VERSION, "robot_type": self.robot_type, "fps": self.fps,
                "total_episodes": n, "total_frames": self._frames, "total_tasks": len(self.tasks),
                "total_chunks": (n - 1) // CHUNKS_SIZE + 1 if n else 0, "chunks_size": CHUNKS_SIZE,
                "data_path": DATA_PATH, "video_path": None, "features": features, "splits": {"train": f"0:{n}"},
                "physai": self.extra}
        (meta / "episodes.jsonl").write_text("".join(json.dumps(e) + "\n" for e in self.episodes))
        (meta / "tasks.jsonl").write_text("".join(json.dumps({"task_index": i, "task": t}) + "\n"
                                                  for t, i in self.tasks.items()))
        stats = {name: _combine(parts) for name, parts in self._sums.items()}
        (meta / "stats.json").write_text(json.dumps(stats, indent=1) + "\n")
        # info.json last: its presence marks a complete dataset.
        (meta / "info.json").write_text(json.dumps(info, indent=2) + "\n")
        return self.root


def _moments(arr: np.ndarray) -> np.ndarray:
    """Per-channel count, sum, sum of squares, min, max over all but the last axis (images: channel last)."""
    flat = arr.reshape(-1, arr.shape[-1] if arr.ndim > 1 else 1).astype(np.float64)
    return np.stack([np.full(flat.shape[1], len(flat), np.float64), flat.sum(0), (flat ** 2).sum(0),
                     flat.min(0), flat.max(0)])


def _combine(parts: list[np.ndarray]) -> dict[str, list[float]]:
    m = np.stack(parts)
    count, total, sq = m[:, 0].sum(0), m[:, 1].sum(0), m[:, 2].sum(0)
    mean = total / count
    std = np.sqrt(np.maximum(sq / count - mean ** 2, 0.0))
    return {"mean": mean.tolist(), "std": std.tolist(), "min": m[:, 3].min(0).tolist(),
            "max": m[:, 4].max(0).tolist(), "count": [int(count[0])]}


class Dataset:
    """A dataset written by `DatasetWriter`, read with validation."""

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

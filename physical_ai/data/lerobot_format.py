"""LeRobot v3.0 datasets on disk: the format `lerobot.datasets.LeRobotDataset` (lerobot 0.6, PyPI) loads.

Layout written here (field names and paths are LeRobot's; one data file and one video per episode, which LeRobot
allows since every episode row names its own files):

    <root>/meta/info.json                      codebase_version "v3.0", fps, robot_type, features, paths, totals
    <root>/meta/stats.json                     per feature: mean, std, min, max, count (images: per channel, 0-1)
    <root>/meta/tasks.parquet                  task (pandas index) -> task_index
    <root>/meta/episodes/chunk-000/file-000.parquet
                                               one row per episode: episode_index, tasks, length, its data and
                                               video files, dataset_from_index/to_index, video from/to timestamps,
                                               and `physai/<key>` columns (seed, success, source recording, ...)
    <root>/data/chunk-CCC/file-FFF.parquet     frames of episode CCC*1000+FFF: one column per feature plus
                                               timestamp, frame_index, episode_index, index, task_index, next.done
    <root>/videos/<camera key>/chunk-CCC/file-FFF.mp4   that episode's frames of one camera (H.264)
    <root>/meta/physai.json                    this project's metadata (policy spec, scenario, sensing, ...)
    <root>/extras/chunk-CCC/file-FFF.npz       per-episode arrays that are not per-frame (world-model labels)

LeRobot ignores the last two. `meta/info.json` is written last: its presence marks a complete dataset, so an
interrupted collection or build never looks finished. Every read is validated, and a missing, truncated or
inconsistent file raises `DatasetError` naming the episode and the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from physical_ai.data.video import VideoError, decode_video, encode_video, video_frame_count

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EXTRAS_PATH = "extras/chunk-{chunk_index:03d}/file-{file_index:03d}.npz"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
TASKS_PATH = "meta/tasks.parquet"
PHYSAI_META = "meta/physai.json"
# Per-frame bookkeeping columns every LeRobot dataset carries, besides its observation/action features.
INDEX_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index", "next.done")
IMAGE_STATS_PIXELS = 20_000  # pixels sampled per episode and camera for the image statistics


class DatasetError(ValueError):
    """A dataset is missing, corrupt or inconsistent; the message names the episode or file."""


@dataclass(frozen=True)
class Feature:
    """One per-frame value: dtype ("float32", "int64", "bool", or "video" for camera frames), shape, names.

    A shape of () is a scalar (LeRobot writes it as shape [1]); "video" features are (H, W, 3) uint8 frames.
    """

    dtype: str
    shape: tuple[int, ...]
    names: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        """LeRobot's feature entry (shape at least 1-D)."""
        return {"dtype": self.dtype, "shape": list(self.shape) or [1],
                "names": list(self.names) if self.names else None}


def _chunk_file(index: int) -> dict[str, int]:
    return {"chunk_index": index // CHUNKS_SIZE, "file_index": index % CHUNKS_SIZE}


def data_path(root: Path, episode: int) -> Path:
    """Path of an episode's data file."""
    return root / DATA_PATH.format(**_chunk_file(episode))


def video_path(root: Path, key: str, episode: int) -> Path:
    """Path of an episode's video of camera feature `key`."""
    return root / VIDEO_PATH.format(video_key=key, **_chunk_file(episode))


class DatasetWriter:
    """Writes episodes one by one (data parquet + one MP4 per camera), then `finish()` writes meta/.

    Args:
        root: new dataset directory (refused if a dataset is already there).
        robot_type: LeRobot's robot_type (our embodiment: amr, arm, vehicle).
        fps: frames per second; LeRobot stores an integer, so it must be one (10.0 is, 12.5 is refused).
        features: per-frame features, frames first in `add_episode`.
        extra: this project's metadata, written to meta/physai.json.
    """

    def __init__(self, root: str | Path, robot_type: str, fps: float, features: Mapping[str, Feature],
                 extra: Mapping[str, Any] | None = None) -> None:
        self.root = Path(root)
        if (self.root / "meta" / "info.json").exists():
            raise DatasetError(f"{self.root}: a dataset already exists here (choose a new --output)")
        if abs(fps - round(fps)) > 1e-6 or round(fps) <= 0:
            raise DatasetError(f"fps {fps} is not a positive integer (LeRobot datasets store an integer fps)")
        self.robot_type, self.fps = robot_type, round(fps)
        self.features = dict(features)
        for name, feat in self.features.items():
            if name in INDEX_COLUMNS:
                raise DatasetError(f"feature {name!r} is a bookkeeping column the writer fills itself")
            if feat.dtype == "video" and (len(feat.shape) != 3 or feat.shape[2] != 3):
                raise DatasetError(f"video feature {name!r} must be (H, W, 3), got {feat.shape}")
        self.extra = dict(extra or {})
        self.episodes: list[dict[str, Any]] = []
        self.tasks: dict[str, int] = {}
        self._moments: dict[str, list[np.ndarray]] = {}
        self.frames = 0

    @property
    def video_keys(self) -> list[str]:
        """Camera features, stored as MP4."""
        return [k for k, f in self.features.items() if f.dtype == "video"]

    def add_episode(self, frames: Mapping[str, np.ndarray], task: str, meta: Mapping[str, Any],
                    extra_arrays: Mapping[str, np.ndarray] | None = None,
                    encoded_videos: Mapping[str, str | Path] | None = None) -> int:
        """Write one episode and return its index.

        Args:
            frames: every feature as an array with T frames first (camera features (T, H, W, 3) uint8), except
                cameras given in `encoded_videos`.
            task: the episode's instruction.
            meta: scalar facts about the episode (seed, success, source file, ...): `physai/<key>` columns.
            extra_arrays: per-episode arrays that are not per-frame (stored beside the dataset).
            encoded_videos: camera key -> an MP4 already encoded at this fps with T frames (a parallel build's
                worker encoded it); moved into place.
        """
        import pyarrow as pa

        index = len(self.episodes)
        encoded = dict(encoded_videos or {})
        missing = set(self.features) - set(frames) - set(encoded)
        if missing:
            raise DatasetError(f"episode {index}: missing features {sorted(missing)}")
        lengths = {k: len(frames[k]) for k in self.features if k in frames}
        length = next(iter(lengths.values()), 0)
        if set(lengths.values()) != {length} or length == 0:
            raise DatasetError(f"episode {index}: features of unequal or zero length {lengths}")
        task_index = self.tasks.setdefault(task, len(self.tasks))
        columns: dict[str, Any] = {}
        for name, feat in self.features.items():
            if feat.dtype == "video":
                continue
            arr = np.asarray(frames[name], dtype=feat.dtype)
            if arr.shape[1:] != feat.shape and not (feat.shape == () and arr.shape[1:] == (1,)):
                raise DatasetError(f"episode {index}: {name} frames of shape {arr.shape[1:]}, expected {feat.shape}")
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise DatasetError(f"episode {index}: {name} holds non-finite values")
            if arr.dtype.kind == "f":
                self._moments.setdefault(name, []).append(_moments(arr.reshape(length, -1)))
            columns[name] = _arrow_column(arr.reshape(length, *feat.shape), pa)
        columns["timestamp"] = pa.array(np.arange(length, dtype=np.float32) / np.float32(self.fps))
        columns["frame_index"] = pa.array(np.arange(length, dtype=np.int64))
        columns["episode_index"] = pa.array(np.full(length, index, dtype=np.int64))
        columns["index"] = pa.array(np.arange(self.frames, self.frames + length, dtype=np.int64))
        columns["task_index"] = pa.array(np.full(length, task_index, dtype=np.int64))
        done = np.zeros(length, dtype=bool)
        done[-1] = True
        columns["next.done"] = pa.array(done)
        row: dict[str, Any] = {"episode_index": index, "tasks": [task], "length": length}
        where = _chunk_file(index)
        row.update({"data/chunk_index": where["chunk_index"], "data/file_index": where["file_index"],
                    "dataset_from_index": self.frames, "dataset_to_index": self.frames + length})
        for key in self.video_keys:
            target = video_path(self.root, key, index)
            if key in encoded:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(encoded[key], target)
                count = video_frame_count(target)
                if count != length:
                    raise DatasetError(f"episode {index}: {target} holds {count} frames, the episode {length}")
            else:
                images = np.asarray(frames[key])
                if images.shape[1:] != self.features[key].shape or images.dtype != np.uint8:
                    raise DatasetError(f"episode {index}: {key} frames {images.shape[1:]} {images.dtype}, expected "
                                       f"{self.features[key].shape} uint8")
                encode_video(images, target, self.fps)
                self._moments.setdefault(key, []).append(_image_moments(images))
            row.update({f"videos/{key}/chunk_index": where["chunk_index"],
                        f"videos/{key}/file_index": where["file_index"],
                        f"videos/{key}/from_timestamp": 0.0, f"videos/{key}/to_timestamp": length / self.fps})
        row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
        for key, value in meta.items():
            if not isinstance(value, (bool, int, float, str, np.generic)):
                raise DatasetError(f"episode {index}: meta {key!r} must be a scalar, got {type(value).__name__}")
            row[f"physai/{key}"] = value.item() if isinstance(value, np.generic) else value
        if extra_arrays:
            path = self.root / EXTRAS_PATH.format(**where)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp.npz")
            np.savez_compressed(tmp, **{k: np.asarray(v) for k, v in extra_arrays.items()})
            tmp.replace(path)
        _write_parquet(pa.table(columns), data_path(self.root, index))
        self.episodes.append(row)
        self.frames += length
        return index

    def finish(self) -> Path:
        """Write meta/ (episodes, tasks, stats, physai.json, info.json last) and return the dataset root."""
        import pyarrow as pa

        meta = self.root / "meta"
        meta.mkdir(parents=True, exist_ok=True)
        _write_parquet(_episodes_table(self.episodes, pa), self.root / EPISODES_PATH)
        _write_parquet(_tasks_table(self.tasks, pa), self.root / TASKS_PATH)
        stats = {name: _combine(parts, image=self.features[name].dtype == "video")
                 for name, parts in self._moments.items()}
        _write_json(self.root / "meta" / "stats.json", stats)
        _write_json(self.root / PHYSAI_META, self.extra)
        features = {k: v.to_json() for k, v in self.features.items()}
        for key in self.video_keys:
            h, w, _ = self.features[key].shape
            features[key]["names"] = ["height", "width", "channels"]
            features[key]["info"] = {"video.height": h, "video.width": w, "video.codec": "h264",
                                     "video.pix_fmt": "yuv420p", "video.is_depth_map": False,
                                     "video.fps": self.fps, "video.channels": 3, "has_audio": False}
        features.update({"timestamp": Feature("float32", ()).to_json(), "frame_index": Feature("int64", ()).to_json(),
                         "episode_index": Feature("int64", ()).to_json(), "index": Feature("int64", ()).to_json(),
                         "task_index": Feature("int64", ()).to_json(), "next.done": Feature("bool", ()).to_json()})
        n = len(self.episodes)
        info = {"codebase_version": CODEBASE_VERSION, "robot_type": self.robot_type, "fps": self.fps,
                "total_episodes": n, "total_frames": self.frames, "total_tasks": len(self.tasks),
                "chunks_size": CHUNKS_SIZE, "data_files_size_in_mb": 100, "video_files_size_in_mb": 200,
                "data_path": DATA_PATH,
                "video_path": VIDEO_PATH if self.video_keys else None,
                "features": features, "splits": {"train": f"0:{n}"}}
        _write_json(self.root / "meta" / "info.json", info)
        return self.root


def _arrow_column(arr: np.ndarray, pa: Any) -> Any:
    """A column as LeRobot's `datasets` features expect it: scalars plain, vectors fixed-size lists, 2-D nested."""
    if arr.ndim == 1:
        return pa.array(arr)
    flat = pa.array(arr.reshape(-1))
    for size in reversed(arr.shape[1:]):
        flat = pa.FixedSizeListArray.from_arrays(flat, size)
    return flat


def _episodes_table(rows: list[dict[str, Any]], pa: Any) -> Any:
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in row if k not in keys)
    return pa.table({k: [row.get(k) for row in rows] for k in keys})


def _tasks_table(tasks: dict[str, int], pa: Any) -> Any:
    """tasks.parquet as pandas writes it: `task` is the DataFrame's index (LeRobot reads it with pandas)."""
    ordered = sorted(tasks, key=tasks.__getitem__)
    table = pa.table({"task_index": pa.array([tasks[t] for t in ordered], pa.int64()),
                      "task": pa.array(ordered, pa.string())})
    pandas_meta = {"index_columns": ["task"],
                   "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode",
                                       "numpy_type": "object", "metadata": {"encoding": "UTF-8"}}],
                   "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
                                "numpy_type": "int64", "metadata": None},
                               {"name": "task", "field_name": "task", "pandas_type": "unicode",
                                "numpy_type": "object", "metadata": None}],
                   "attributes": {}, "creator": {"library": "pyarrow", "version": pa.__version__},
                   "pandas_version": "2.2.0"}
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})


def _write_parquet(table: Any, path: Path) -> None:
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, compression="snappy")
    tmp.replace(path)  # a crash mid-write leaves no half-written file under the final name


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    tmp.replace(path)


def _moments(flat: np.ndarray) -> np.ndarray:
    """Per-channel count, sum, sum of squares, min, max of (N, C) values."""
    flat = flat.astype(np.float64)
    return np.stack([np.full(flat.shape[1], len(flat), np.float64), flat.sum(0), (flat ** 2).sum(0),
                     flat.min(0), flat.max(0)])


def _image_moments(images: np.ndarray) -> np.ndarray:
    """Per-channel moments (0-1 scale) of a fixed sample of an episode's pixels."""
    pixels = images.reshape(-1, 3)
    step = max(1, len(pixels) // IMAGE_STATS_PIXELS)
    return _moments(pixels[::step] / 255.0)


def _combine(parts: list[np.ndarray], image: bool = False) -> dict[str, Any]:
    m = np.stack(parts)
    count, total, sq = m[:, 0].sum(0), m[:, 1].sum(0), m[:, 2].sum(0)
    mean = total / count
    stats = {"mean": mean, "std": np.sqrt(np.maximum(sq / count - mean ** 2, 0.0)),
             "min": m[:, 3].min(0), "max": m[:, 4].max(0)}
    # LeRobot keeps image statistics per channel as (3, 1, 1)
    out: dict[str, Any] = {k: (v.reshape(3, 1, 1) if image else v).tolist() for k, v in stats.items()}
    out["count"] = [int(count[0])]
    return out


class LeRobotReader:
    """A LeRobot v3.0 dataset read with validation (training, conversion, checks).

    `load_episode` returns every feature with frames first (camera frames decoded to (T, H, W, 3) uint8, scalars
    as (T,)) plus the bookkeeping columns and `extra.<name>` for per-episode arrays.
    """

    def __init__(self, root: str | Path) -> None:
        import pyarrow.parquet as pq

        self.root = Path(root)
        info_path = self.root / "meta" / "info.json"
        if not info_path.is_file():
            raise DatasetError(f"{self.root}: not a dataset (meta/info.json missing: collection did not finish?)")
        try:
            self.info: dict[str, Any] = json.loads(info_path.read_text())
            rows = pq.read_table(self.root / EPISODES_PATH).to_pylist()
            self.stats: dict[str, Any] = json.loads((self.root / "meta" / "stats.json").read_text())
            extra_path = self.root / PHYSAI_META
            self._physai = json.loads(extra_path.read_text()) if extra_path.is_file() else {}
            self._tasks = {int(r["task_index"]): str(r["task"]) for r in pq.read_table(self.root / TASKS_PATH)
                           .to_pylist()}
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{self.root}/meta: unreadable: {exc}") from exc
        if len(rows) != self.info.get("total_episodes"):
            raise DatasetError(f"{self.root}: meta/episodes lists {len(rows)} episodes, info.json says "
                               f"{self.info.get('total_episodes')} (partial dataset)")
        # Our episode entries: LeRobot's columns, with `physai/<key>` meta as plain keys (seed, success, ...)
        self.episodes: list[dict[str, Any]] = [
            {(k.split("/", 1)[1] if k.startswith("physai/") else k): v for k, v in r.items()} for r in rows]
        self.features: dict[str, Feature] = {
            k: Feature(v["dtype"], tuple(v["shape"]) if v["shape"] != [1] else (),
                       tuple(v["names"]) if v.get("names") else None)
            for k, v in self.info["features"].items()}

    @property
    def physai(self) -> dict[str, Any]:
        """Project-specific metadata (scenario, embodiment, observation spec, provenance pointer, ...)."""
        return self._physai

    @property
    def fps(self) -> int:
        """Frames per second."""
        return int(self.info["fps"])

    def __len__(self) -> int:
        return len(self.episodes)

    def load_episode(self, index: int) -> dict[str, np.ndarray]:
        """All arrays of episode `index`, validated against meta/; `DatasetError` names the episode and file."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        meta = self.episodes[index]
        path = data_path(self.root, index)
        where = f"episode {index} ({path})"
        if not path.is_file():
            raise DatasetError(f"{where}: data file missing")
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as exc:
            raise DatasetError(f"{where}: corrupt or truncated data file: {exc}") from exc
        length = int(meta["length"])
        if table.num_rows != length:
            raise DatasetError(f"{where}: {table.num_rows} frames, meta/episodes says {length}")
        arrays: dict[str, np.ndarray] = {}
        for name, feat in self.features.items():
            if feat.dtype == "video":
                vpath = video_path(self.root, name, index)
                try:
                    arrays[name] = decode_video(vpath, expected_frames=length, size=feat.shape[:2])
                except VideoError as exc:
                    raise DatasetError(f"episode {index}: {exc}") from exc
                continue
            if name not in table.column_names:
                raise DatasetError(f"{where}: feature {name!r} missing")
            arr = _numpy_column(table.column(name), length, feat)
            if arr.shape != (length, *feat.shape):
                raise DatasetError(f"{where}: {name} has shape {arr.shape}, expected {(length, *feat.shape)}")
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise DatasetError(f"{where}: {name} holds non-finite values")
            arrays[name] = arr
        extras = self.root / EXTRAS_PATH.format(**_chunk_file(index))
        if extras.is_file():
            try:
                with np.load(extras, allow_pickle=False) as npz:
                    arrays.update({f"extra.{k}": npz[k] for k in npz.files})
            except (OSError, ValueError, EOFError) as exc:
                raise DatasetError(f"episode {index} ({extras}): corrupt or truncated extras: {exc}") from exc
        return arrays

    def iter_episodes(self) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """(index, arrays) for every episode, in order."""
        for i in range(len(self.episodes)):
            yield i, self.load_episode(i)

    def task(self, episode: int) -> str:
        """Instruction of an episode."""
        return str(self.episodes[episode]["tasks"][0])

    def tasks(self) -> dict[int, str]:
        """task_index -> task."""
        return dict(self._tasks)


def _numpy_column(column: Any, length: int, feat: Feature) -> np.ndarray:
    """A parquet column back to (T, *shape) numpy (fixed-size or variable lists flattened, then reshaped)."""
    import pyarrow as pa

    chunk = column.combine_chunks()
    while isinstance(chunk.type, (pa.ListType, pa.LargeListType, pa.FixedSizeListType)):
        chunk = chunk.flatten()
    flat = chunk.to_numpy(zero_copy_only=False)
    try:
        return flat.reshape(length, *feat.shape).astype(feat.dtype, copy=False)
    except ValueError:
        return flat  # wrong size: the caller's shape check names it

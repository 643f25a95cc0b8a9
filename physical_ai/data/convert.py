"""Converting the older `.npz` datasets of `physai collect` into LeRobot datasets (`physai dataset convert`).

Every feature, episode fact, task and world-model label is carried over unchanged; camera frames stored as uint8
arrays become MP4 video features. The new dataset's provenance manifest names the source files with their sha256.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from physical_ai.data.legacy_npz import NpzReader, episode_path
from physical_ai.data.lerobot_format import DatasetWriter, Feature
from physical_ai.data.provenance import Manifest

BOOKKEEPING = ("timestamp", "frame_index", "episode_index", "index", "task_index", "next.done")


def convert_npz(source: str | Path, output: str | Path, licence: str = "") -> dict[str, Any]:
    """Write the LeRobot form of the `.npz` dataset at `source` to `output`; return a summary.

    Args:
        source: a dataset written by `physai collect` before it wrote LeRobot datasets.
        output: new dataset directory.
        licence: the data's licence for the manifest ('' keeps what the source says, if anything).
    """
    reader = NpzReader(source)
    features: dict[str, Feature] = {}
    for name, feat in reader.features.items():
        if name in BOOKKEEPING:
            continue
        image = feat.dtype == "uint8" and len(feat.shape) == 3 and feat.shape[-1] == 3
        features[name] = Feature("video", feat.shape, ("height", "width", "channels")) if image else feat
    manifest = Manifest.start("physai dataset convert", {"source": str(source)}, licence)
    writer = DatasetWriter(output, robot_type=str(reader.info.get("robot_type", "")), fps=reader.fps,
                           features=features, extra=reader.physai)
    for index, arrays in reader.iter_episodes():
        meta = {k: v for k, v in reader.episodes[index].items() if k not in ("episode_index", "tasks", "length")}
        extras = {k.removeprefix("extra."): v for k, v in arrays.items() if k.startswith("extra.")}
        writer.add_episode({k: arrays[k] for k in features}, reader.task(index), meta, extra_arrays=extras)
        manifest.add_source(episode_path(Path(source), index))
    manifest.add_step("convert", {"from": "v2.1-npz", "to": "LeRobot v3.0",
                                  "video_features": [k for k, f in features.items() if f.dtype == "video"]})
    writer.finish()
    manifest.write(output, episodes=len(writer.episodes), frames=writer.frames)
    return {"episodes": len(writer.episodes), "frames": writer.frames, "output": str(output)}

"""Demonstration datasets as training reads them: LeRobot v3.0 or the older `.npz` layout.

LeRobot v3.0 is what `physai collect` and `physai dataset build` write (`physical_ai.data.lerobot_format`); the
`.npz` layout is what `physai collect` wrote before (`physical_ai.data.legacy_npz`).

Both readers give the same interface: `info`, `episodes` (dicts with `length`, `tasks` and the episode's facts),
`stats`, `features`, `physai` (spec, scenario, sensing), `load_episode(i)` (arrays, frames first, validated; a
missing, truncated or inconsistent file raises `DatasetError` naming the episode and file) and `task(i)`.
"""

from __future__ import annotations

import json
from pathlib import Path

from physical_ai.data.legacy_npz import CODEBASE_VERSION as NPZ_VERSION
from physical_ai.data.legacy_npz import NpzReader
from physical_ai.data.lerobot_format import DatasetError, LeRobotReader

DatasetReader = LeRobotReader | NpzReader


def open_dataset(root: str | Path) -> DatasetReader:
    """Open a dataset directory of either format (decided by meta/info.json's codebase_version)."""
    info = Path(root) / "meta" / "info.json"
    try:
        version = json.loads(info.read_text()).get("codebase_version") if info.is_file() else None
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{info}: unreadable: {exc}") from exc
    return NpzReader(root) if version == NPZ_VERSION else LeRobotReader(root)

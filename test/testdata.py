"""Where the tests find the repository and the shared real-sensor datasets (used in place, never copied)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"

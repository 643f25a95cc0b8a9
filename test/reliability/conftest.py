"""The reliability tests reuse the bring-up tests' DDS probe and stack runner."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bringup"))

"""Test isolation: each pytest process talks DDS on its own domain, on localhost only, with the shipped profile."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"

# Must be set before rclpy creates a participant. A distinct domain per process keeps concurrent test runs
# (and developers' running stacks) from hearing each other.
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(ROOT / "config" / "fastdds.xml"))
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.pop("ROS_PYTHON_CHECK_FIELDS", None)

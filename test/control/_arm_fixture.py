"""Shared arm setup for control tests: the arm cell's joints, limits and capsule model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from physical_ai.control.arm import ArmConfig, ArmCorrector
from physical_ai.control.arm_collision import CapsuleArm
from physical_ai.control.limits import JointLimits

ROOT = Path(__file__).resolve().parents[2]
ARM_XML = ROOT / "models" / "arm_cell" / "arm_cell.xml"
NAMES = [f"joint{i}" for i in range(1, 8)]
LIMITS = JointLimits.from_lists(
    NAMES, [-2.9, -1.76, -2.9, -0.2, -2.9, -2.6, -2.9], [2.9, 1.76, 2.9, 2.9, 2.9, 2.6, 2.9],
    [1.5, 1.5, 1.5, 1.5, 2.0, 2.0, 2.0], [5.0] * 7, [50.0] * 7)


def make_arm(config: ArmConfig | None = None, with_collision: bool = True) -> ArmCorrector:
    collision = CapsuleArm.from_file(ARM_XML, NAMES, "col_") if with_collision else None
    return ArmCorrector(LIMITS, config or ArmConfig(), collision)


def start_pose() -> np.ndarray:
    return np.array([0.0, 0.3, 0.0, 1.2, 0.0, 0.8, 0.0])

"""Per-joint limits and the checks that keep commands inside them."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class JointLimits:
    """Position, velocity, acceleration and jerk limits of a set of named joints (SI units, rad or m).

    Attributes:
        names: joint names in command order.
        lower: lower position limits.
        upper: upper position limits.
        max_velocity: symmetric velocity limits (> 0).
        max_acceleration: symmetric acceleration limits (> 0).
        max_jerk: symmetric jerk limits (> 0).
    """

    names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    max_velocity: np.ndarray
    max_acceleration: np.ndarray
    max_jerk: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.names)
        if n == 0 or len(set(self.names)) != n:
            raise ValueError(f"joint names must be non-empty and unique, got {self.names}")
        for field in ("lower", "upper", "max_velocity", "max_acceleration", "max_jerk"):
            arr = np.asarray(getattr(self, field), dtype=float)
            if arr.shape != (n,) or not np.all(np.isfinite(arr)):
                raise ValueError(f"{field} must be {n} finite values, got {arr}")
            object.__setattr__(self, field, arr)
        if np.any(self.lower >= self.upper):
            raise ValueError("every lower position limit must be below the upper one")
        for field in ("max_velocity", "max_acceleration", "max_jerk"):
            if np.any(getattr(self, field) <= 0):
                raise ValueError(f"{field} must be > 0")

    @property
    def dof(self) -> int:
        """Number of joints."""
        return len(self.names)

    @classmethod
    def from_lists(cls, names: Sequence[str], lower: Sequence[float], upper: Sequence[float],
                   max_velocity: Sequence[float], max_acceleration: Sequence[float],
                   max_jerk: Sequence[float]) -> JointLimits:
        """Build from parallel lists (as they come from a ROS parameter file)."""
        return cls(tuple(names), np.asarray(lower, float), np.asarray(upper, float), np.asarray(max_velocity, float),
                   np.asarray(max_acceleration, float), np.asarray(max_jerk, float))

    def violations(self, position: np.ndarray, velocity: np.ndarray, acceleration: np.ndarray,
                   tol: float = 1e-9) -> list[str]:
        """Names of the limits a state violates (empty when inside all of them)."""
        out = []
        if np.any(position < self.lower - tol) or np.any(position > self.upper + tol):
            out.append("position")
        if np.any(np.abs(velocity) > self.max_velocity * (1 + tol) + tol):
            out.append("velocity")
        if np.any(np.abs(acceleration) > self.max_acceleration * (1 + tol) + tol):
            out.append("acceleration")
        return out


def map_by_name(names: Sequence[str], values: np.ndarray, joint_names: Sequence[str],
                index: Mapping[str, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reorder columns of `values` (..., len(names)) into `joint_names` order.

    Returns:
        (mapped, present): mapped has shape (..., len(joint_names)) with NaN where a joint is missing;
        present is a bool mask over joint_names. Names not in joint_names are ignored by the caller's choice.
    """
    index = index if index is not None else {n: i for i, n in enumerate(joint_names)}
    values = np.asarray(values, dtype=float)
    mapped = np.full((*values.shape[:-1], len(joint_names)), np.nan)
    present = np.zeros(len(joint_names), dtype=bool)
    for col, name in enumerate(names):
        j = index.get(name)
        if j is not None:
            mapped[..., j] = values[..., col]
            present[j] = True
    return mapped, present

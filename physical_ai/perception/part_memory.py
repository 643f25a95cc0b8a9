"""Last-seen part poses held while the robot hides them from the camera (arm cell, overhead depth).

An arm that reaches for a part hides it from an overhead camera for the last part of the approach, and a gripper
beside a part merges with it in the depth fit: the fits there jump by centimetres (a part seen half, or the gripper
fitted as a part) or vanish. A policy without memory then grasps beside the part (issue 7: through ROS 0.18, the
fingers closing 3-13 cm from the part). `PartMemory` keeps what was seen while the view was clear:

- a fitted part whose footprint the robot covers (its padded body spheres, projected from the camera onto the part's
  top, or beside the part below it) is not trusted and dropped;
- a remembered part that the robot now covers is held at its last clear pose, for at most `hold_s`;
- a remembered part that is in clear view again is forgotten unless it is fitted there again (the table is seen
  where it was: it was moved, e.g. picked), and so is one whose kind (label and size) is seen in clear view
  elsewhere (the cell holds one part of each kind, so that is where it went).

One implementation for the training env (`physical_ai.training.envs.ArmEnv`) and the perception_fusion node
(through `physical_ai.perception.pipeline.FusionPipeline`), so a policy trained in-process sees what it sees under
ROS. Positions are in the robot's base frame, which must not move (a fixed arm).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from physical_ai.perception.parts import Part


@dataclass
class PartMemoryConfig:
    """Parameters of `PartMemory`."""

    hold_s: float = 5.0          # longest a hidden part is held [s]; 0 = memory off (every fit passes through)
    margin_m: float = 0.02       # added between the robot's shadow and a part's footprint [m]
    same_kind_tolerance: float = 0.4  # sizes within this fraction of a held part's are the same kind of part


def robot_covers(positions: np.ndarray, sizes: np.ndarray, centres: np.ndarray, radii: np.ndarray,
                 camera: np.ndarray, margin_m: float) -> np.ndarray:
    """Which parts the robot hides from (or touches in the view of) a camera above them.

    A body sphere above a part's top is projected from the camera centre onto the part's top plane (centre and
    radius scaled by the ray's length); one below it is compared where it is. A part is covered when a projected
    sphere overlaps its footprint's circumscribed circle grown by `margin_m`.

    Args:
        positions: (n, 3) part centres [m], base frame (z up).
        sizes: (n, 3) part sizes (footprint sides, height) [m].
        centres: (S, 3) robot body sphere centres [m], base frame.
        radii: (S,) their radii [m].
        camera: (3,) camera optical centre [m], base frame, above the parts.
        margin_m: extra clearance [m].

    Returns:
        (n,) bool.
    """
    positions = np.asarray(positions, np.float64).reshape(-1, 3)
    sizes = np.asarray(sizes, np.float64).reshape(-1, 3)
    centres = np.asarray(centres, np.float64).reshape(-1, 3)
    radii = np.asarray(radii, np.float64).reshape(-1)
    if len(positions) == 0 or len(radii) == 0:
        return np.zeros(len(positions), dtype=bool)
    camera = np.asarray(camera, np.float64).reshape(3)
    top = positions[:, 2] + sizes[:, 2] / 2
    footprint = 0.5 * np.hypot(sizes[:, 0], sizes[:, 1])
    # ray scale from the camera to each part's top plane through each sphere centre: (n, S)
    scale = (camera[2] - top)[:, None] / np.maximum(camera[2] - centres[None, :, 2], 1e-6)
    above = centres[None, :, 2] > top[:, None]
    shadow = camera[:2] + (centres[None, :, :2] - camera[:2]) * scale[..., None]
    xy = np.where(above[..., None], shadow, centres[None, :, :2])
    reach = np.where(above, radii[None, :] * scale, radii[None, :])
    dist = np.linalg.norm(xy - positions[:, None, :2], axis=2)
    return (dist < reach + footprint[:, None] + margin_m).any(axis=1)


class PartMemory:
    """Part fits filtered and completed with last-seen poses while the robot covers a part (module docstring)."""

    def __init__(self, cfg: PartMemoryConfig | None = None) -> None:
        self.cfg = cfg or PartMemoryConfig()
        self._held: list[tuple[Part, int]] = []  # (part, stamp it was last seen in clear view [ns])
        self.hidden: list[Part] = []  # the held parts the last update reported (covered by the robot now)

    def reset(self) -> None:
        """Forget everything (a new episode, a clock that jumped back)."""
        self._held = []
        self.hidden = []

    def update(self, parts: Sequence[Part], stamp_ns: int, body_spheres: tuple[np.ndarray, np.ndarray],
               camera: np.ndarray) -> list[Part]:
        """One depth frame's fits -> the parts to report: clear fits, then held ones.

        Args:
            parts: this frame's fits (whole depth view).
            stamp_ns: the frame's time [ns]; an earlier time than the last update resets the memory.
            body_spheres: the robot at this time, (centres (S, 3), radii (S,)) in the base frame.
            camera: (3,) the depth camera's optical centre in the base frame.

        Returns:
            Parts in clear view, then remembered parts the robot covers now (their last clear fit).
        """
        if self.cfg.hold_s <= 0:
            return list(parts)
        if self._held and stamp_ns < max(t for _, t in self._held):
            self.reset()
        centres, radii = body_spheres
        clear = [p for p, covered in zip(parts, self._covered(parts, centres, radii, camera), strict=True)
                 if not covered]
        hold_ns = int(self.cfg.hold_s * 1e9)
        held = [(p, t) for (p, t), covered in zip(self._held, self._covered([p for p, _ in self._held], centres,
                                                                            radii, camera), strict=True)
                if covered and stamp_ns - t <= hold_ns and not any(self._same_kind(p, c) for c in clear)]
        self._held = [(p, stamp_ns) for p in clear] + held
        self.hidden = [p for p, _ in held]
        return clear + self.hidden

    def _covered(self, parts: Sequence[Part], centres: np.ndarray, radii: np.ndarray,
                 camera: np.ndarray) -> np.ndarray:
        if not parts:
            return np.zeros(0, dtype=bool)
        return robot_covers(np.array([p.position for p in parts]), np.array([p.size for p in parts]), centres, radii,
                            camera, self.cfg.margin_m)

    def _same_kind(self, held: Part, seen: Part) -> bool:
        """Same label and sizes (footprint sides in either order, height) within the tolerance."""
        if held.label != seen.label:
            return False
        a = np.array([*np.sort(held.size[:2]), held.size[2]])
        b = np.array([*np.sort(seen.size[:2]), seen.size[2]])
        return bool(np.all(np.abs(a - b) <= self.cfg.same_kind_tolerance * a))

"""Geometry of the vehicle-lane scenario's road: one source for the MJCF generator, the expert and scoring.

The lane centreline is a straight along +x, a left arc, and a second straight. Positions along it are given by
arc length s [m]; the lane is `LANE_WIDTH` wide with a solid right edge line and a dashed left line.
"""

from __future__ import annotations

import numpy as np

LANE_WIDTH = 3.5  # [m]
STRAIGHT_1 = 50.0  # [m] first straight, from x = START_X along +x
START_X = -10.0  # [m]
ARC_RADIUS = 60.0  # [m] left turn
ARC_ANGLE = np.pi / 4  # [rad]
STRAIGHT_2 = 40.0  # [m]
LENGTH = STRAIGHT_1 + ARC_RADIUS * ARC_ANGLE + STRAIGHT_2


def centerline(s: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (x, y, heading) of the lane centre at arc lengths `s` [m] (clipped to the road)."""
    s = np.clip(np.asarray(s, dtype=float), 0.0, LENGTH)
    arc_len = ARC_RADIUS * ARC_ANGLE
    s1 = np.minimum(s, STRAIGHT_1)
    s_arc = np.clip(s - STRAIGHT_1, 0.0, arc_len)
    s2 = np.maximum(s - STRAIGHT_1 - arc_len, 0.0)
    phi = s_arc / ARC_RADIUS
    x = START_X + s1 + ARC_RADIUS * np.sin(phi) + s2 * np.cos(phi)
    y = ARC_RADIUS * (1.0 - np.cos(phi)) + s2 * np.sin(phi)
    return x, y, phi


def project(x: float, y: float) -> tuple[float, float]:
    """Project a point onto the centreline; return (arc length s [m], signed lateral offset [m], left positive)."""
    s_grid = np.linspace(0.0, LENGTH, int(LENGTH * 4) + 1)
    cx, cy, _ = centerline(s_grid)
    i = int(np.argmin((cx - x) ** 2 + (cy - y) ** 2))
    # refine on the local tangent
    s0 = s_grid[i]
    px, py, h = centerline(s0)
    dx, dy = x - float(px), y - float(py)
    ds = dx * np.cos(h) + dy * np.sin(h)
    s = float(np.clip(s0 + ds, 0.0, LENGTH))
    px, py, h = centerline(s)
    lateral = -(x - float(px)) * np.sin(h) + (y - float(py)) * np.cos(h)
    return s, float(lateral)

"""Obstacle shapes for the planar collision checks: oriented boxes as chains of covering discs.

The AMR and vehicle cores check discs. A box's circumscribed disc is a poor stand-in for a long thin obstacle (a
7.8 m shelf face becomes a 3.9 m-radius disc over the aisle), so each box is covered by discs along its length
axis: n discs spaced L/n apart, each of radius sqrt((L/2n)^2 + (W/2)^2), which together contain the box.
"""

from __future__ import annotations

import numpy as np


def boxes_to_discs(centres: np.ndarray, lengths: np.ndarray, widths: np.ndarray, yaws: np.ndarray,
                   velocities: np.ndarray, max_discs: int = 64
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cover oriented boxes with discs.

    Args:
        centres: (M, 2) box centres [m].
        lengths: (M,) extent along the box's yaw axis [m].
        widths: (M,) extent across it [m].
        yaws: (M,) orientation of the length axis [rad].
        velocities: (M, 2) velocities, copied to each box's discs [m/s].
        max_discs: most discs per box (a longer box gets fewer, larger discs; still covering).

    Returns:
        (centres (K, 2), radii (K,), velocities (K, 2), owner (K,): the index of each disc's box) with K >= M.
    """
    centres = np.asarray(centres, float).reshape(-1, 2)
    length = np.abs(np.asarray(lengths, float).ravel())
    width = np.abs(np.asarray(widths, float).ravel())
    yaws = np.asarray(yaws, float).ravel()
    velocities = np.asarray(velocities, float).reshape(-1, 2)
    long_side = np.maximum(length, width)
    short_side = np.minimum(length, width)
    axis_yaw = np.where(length >= width, yaws, yaws + np.pi / 2)
    n = np.clip(np.ceil(long_side / np.maximum(short_side, 1e-3)), 1, max_discs).astype(int)
    owner = np.repeat(np.arange(len(n)), n)
    # position of each disc along its box's axis, in [-L/2, L/2]: centres of n equal segments
    index = np.arange(owner.size) - np.repeat(np.cumsum(n) - n, n)
    step = long_side[owner] / n[owner]
    offset = (index + 0.5) * step - long_side[owner] / 2
    axis = np.stack([np.cos(axis_yaw[owner]), np.sin(axis_yaw[owner])], axis=1)
    disc_centres = centres[owner] + offset[:, None] * axis
    radii = np.hypot(step / 2, short_side[owner] / 2)
    return disc_centres, radii, velocities[owner], owner

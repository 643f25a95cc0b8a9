"""Vectorised footprint sweep: when a rectangular base driving a constant (v, w) first nears a point or obstacle.

Used by the AMR corrector on every cycle; a 24k-point cloud costs well under a millisecond.

Points are first binned into a coarse 2D grid around the robot (one `bincount`), so the sweep works on occupied
cells, not raw points; each cell is inflated by its half diagonal, so the check stays conservative.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Footprint:
    """A rectangle centred on base_link: length along x, width along y [m]."""

    length: float = 0.6
    width: float = 0.45

    @property
    def radius(self) -> float:
        """Circumscribed radius [m]."""
        return float(np.hypot(self.length, self.width) / 2)


def bin_points(xy: np.ndarray, reach: float, cell: float) -> tuple[np.ndarray, float]:
    """Occupied cell centres (M, 2) within `reach` [m] of the origin, and the half diagonal of a cell [m]."""
    n = int(np.ceil(reach / cell))
    idx = np.floor(xy / cell).astype(np.int64) + n
    ok = (idx[:, 0] >= 0) & (idx[:, 0] < 2 * n) & (idx[:, 1] >= 0) & (idx[:, 1] < 2 * n)
    flat = idx[ok, 0] * (2 * n) + idx[ok, 1]
    occupied = np.flatnonzero(np.bincount(flat, minlength=4 * n * n))
    centres = np.column_stack(((occupied // (2 * n) - n + 0.5) * cell, (occupied % (2 * n) - n + 0.5) * cell))
    return centres, cell * np.sqrt(0.5)


def points_near(x: np.ndarray, y: np.ndarray, z: np.ndarray, T: np.ndarray, z_band: tuple[float, float],
                reach: float) -> tuple[np.ndarray, int]:
    """Points of a cloud that can hit the base: (K, 2) x, y in the base frame, and how many points were not finite.

    `x`, `y`, `z`: the cloud's columns in the sensor frame (float32 views are not copied); `T`: base <- sensor;
    kept are the finite points whose base-frame height lies in `z_band` and whose x and y lie within `reach` [m].
    Height is computed first and x, y only for the points in the band, in float32 (a 130k-point cloud costs a few
    ms instead of 30: the AMR corrector takes every LiDAR frame).
    """
    R = T[:3, :3].astype(np.float32)
    t = T[:3, 3].astype(np.float32)
    height = R[2, 0] * x + R[2, 1] * y + R[2, 2] * z + t[2]
    band = np.flatnonzero((height >= z_band[0]) & (height <= z_band[1]))  # NaN and inf fail (never in band)
    xs, ys, zs = x[band], y[band], z[band]
    bx = R[0, 0] * xs + R[0, 1] * ys + R[0, 2] * zs + t[0]
    by = R[1, 0] * xs + R[1, 1] * ys + R[1, 2] * zs + t[1]
    near = (np.abs(bx) <= reach) & (np.abs(by) <= reach)
    nonfinite = len(x) - int(np.count_nonzero(np.isfinite(x) & np.isfinite(y) & np.isfinite(z)))
    return np.column_stack((bx[near], by[near])).astype(np.float64), nonfinite


def arc_poses(v: np.ndarray, w: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Poses (x, y, yaw), each (C, K), of a unicycle driving (v[c], w[c]) from the origin at `times` (K,)."""
    v = np.asarray(v, float)[:, None]
    w = np.asarray(w, float)[:, None]
    th = w * times[None, :]
    straight = np.abs(w) < 1e-6
    w_safe = np.where(straight, 1.0, w)
    x = np.where(straight, v * times, v / w_safe * np.sin(th))
    y = np.where(straight, 0.0, v / w_safe * (1.0 - np.cos(th)))
    return x, y, th


def _ramp_then_stop(target: np.ndarray, start: float, rate: float, t: np.ndarray) -> np.ndarray:
    """Speeds (C, K): ramp from `start` towards each target at `rate`, then brake at `rate` to 0 by t[-1]."""
    ramp = start + np.clip(target - start, -rate * t, rate * t)
    t_brake = t[:, -1:] - np.abs(target) / rate  # latest braking start that still ends at rest
    at_brake = start + np.clip(target - start, -rate * np.maximum(t_brake, 0.0), rate * np.maximum(t_brake, 0.0))
    braking = np.sign(at_brake) * np.maximum(np.abs(at_brake) - rate * (t - np.maximum(t_brake, 0.0)), 0.0)
    return np.where(t < t_brake, ramp, np.where(np.abs(braking) < np.abs(ramp), braking, ramp))


def ramp_poses(v: np.ndarray, w: np.ndarray, times: np.ndarray, v0: float, w0: float, acc: float,
               alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Poses (C, K) of a unicycle ramping to each candidate (v[c], w[c]), holding it, and at rest by the end.

    Ramps run from (v0, w0) at the acceleration limits. The base cannot jump to a candidate speed: sweeping the
    command as if it could would let a slow base "beat" a crossing worker it cannot outrun. Ending at rest makes
    a free sweep mean the base can still stop safely after it, so the next cycle always has a safe option (no
    commitment beyond the horizon). Trapezoid integration between samples.
    """
    t = np.broadcast_to(times[None, :], (len(v), len(times)))
    vt = _ramp_then_stop(np.asarray(v, float)[:, None], v0, acc, t)
    wt = _ramp_then_stop(np.asarray(w, float)[:, None], w0, alpha, t)
    dt = np.diff(times)[None, :]
    th = np.concatenate([np.zeros((len(v), 1)), np.cumsum(0.5 * (wt[:, 1:] + wt[:, :-1]) * dt, axis=1)], axis=1)
    dx = 0.5 * (vt[:, 1:] * np.cos(th[:, 1:]) + vt[:, :-1] * np.cos(th[:, :-1])) * dt
    dy = 0.5 * (vt[:, 1:] * np.sin(th[:, 1:]) + vt[:, :-1] * np.sin(th[:, :-1])) * dt
    zero = np.zeros((len(v), 1))
    return np.concatenate([zero, np.cumsum(dx, axis=1)], 1), np.concatenate([zero, np.cumsum(dy, axis=1)], 1), th


def rect_distance(px: np.ndarray, py: np.ndarray, half_length: float, half_width: float) -> np.ndarray:
    """Signed distance from points (in the rectangle's frame) to an axis-aligned rectangle (negative inside)."""
    ex = np.abs(px) - half_length
    ey = np.abs(py) - half_width
    dx = np.maximum(ex, 0.0)
    dy = np.maximum(ey, 0.0)
    return np.sqrt(dx * dx + dy * dy) + np.minimum(np.maximum(ex, ey), 0.0)


def sweep(footprint: Footprint, v: np.ndarray, w: np.ndarray, times: np.ndarray, cells: np.ndarray,
          cell_pad: float, obstacles: tuple[np.ndarray, np.ndarray, np.ndarray], clearance: float,
          ramp: tuple[float, float, float, float] | None = None,
          rest: tuple[float, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
          ) -> tuple[np.ndarray, np.ndarray]:
    """For each candidate command, the first time the footprint comes within `clearance` of anything.

    Args:
        footprint: robot rectangle.
        v: candidate linear velocities (C,) [m/s].
        w: candidate angular velocities (C,) [rad/s].
        times: sample times (K,) [s], increasing from 0.
        cells: static occupied cell centres (M, 2) in the robot frame now.
        cell_pad: half diagonal of a cell [m], added to the distance test.
        obstacles: (centres (O, 2), radii (O,), velocities (O, 2)) in the robot frame now; they move at constant
            velocity over the horizon (their prediction).
        clearance: distance to keep [m]; when something is already closer, the limit is "no closer than now".
        ramp: (v0, w0, acc, alpha): the present command and acceleration limits; each candidate is reached by
            ramping from it (see `ramp_poses`). None: the candidates apply at once.
        rest: (rest_s, obstacles): after times[-1] the final pose (at rest there when ramped) is held `rest_s`
            longer, sampled at the spacing of `times`, against these obstacles' predicted motion (centres, radii,
            velocities as above). Coming to rest is no safe stop where something moving walks into the stopped
            base. None: nothing after times[-1].

    Returns:
        (t_hit (C,), distance_now (C,)): first sample time within clearance (inf if none; after times[-1] for a
        hit while at rest), and the distance at time 0 (footprint surface to cell/obstacle surface; the same for
        all candidates).
    """
    x, y, th = arc_poses(v, w, times) if ramp is None else ramp_poses(v, w, times, *ramp)
    c, s = np.cos(th)[..., None], np.sin(th)[..., None]
    hl, hw = footprint.length / 2, footprint.width / 2
    centres, radii, vel = obstacles
    # The distance now (every candidate starts at the origin) over everything: one pose, cheap.
    dist = np.full(x.shape, np.inf)
    dist[:, 0] = min(_nearest(cells, cell_pad, hl, hw), _nearest(centres, radii, hl, hw), 1e9)  # 1e9: nothing
    # Anything farther from the origin than the farthest pose by more than the footprint's circumscribed radius
    # plus the clearance cannot come within the clearance of any pose; the exact test runs on what is left (the
    # far shelves and workers of a factory cloud are most of it).
    reach = footprint.radius + clearance
    span = float(np.sqrt(np.max(x * x + y * y))) + reach
    if cells.shape[0]:
        cells = cells[np.hypot(cells[:, 0], cells[:, 1]) - cell_pad < span]
    if cells.shape[0]:
        # Cull with the circumscribed circle: only cells that come near some pose get the exact rectangle test.
        px, py = x.reshape(-1), y.reshape(-1)
        near2 = (cells[:, 0, None] - px[None]) ** 2 + (cells[:, 1, None] - py[None]) ** 2
        cells = cells[near2.min(axis=1) < (reach + cell_pad) ** 2]
    if cells.shape[0]:
        dx = cells[None, None, :, 0] - x[..., None]
        dy = cells[None, None, :, 1] - y[..., None]
        d = rect_distance(c * dx + s * dy, -s * dx + c * dy, hl, hw) - cell_pad
        dist[:, 1:] = np.minimum(dist[:, 1:], d[:, 1:].min(axis=2))
    if centres.shape[0]:  # an obstacle moves at most |velocity| x horizon towards the poses
        keep = np.hypot(centres[:, 0], centres[:, 1]) - radii - np.hypot(vel[:, 0], vel[:, 1]) * times[-1] < span
        centres, radii, vel = centres[keep], radii[keep], vel[keep]
    if centres.shape[0]:
        ox = centres[None, None, :, 0] + vel[None, None, :, 0] * times[None, :, None] - x[..., None]
        oy = centres[None, None, :, 1] + vel[None, None, :, 1] * times[None, :, None] - y[..., None]
        d = rect_distance(c * ox + s * oy, -s * ox + c * oy, hl, hw) - radii[None, None, :]
        dist[:, 1:] = np.minimum(dist[:, 1:], d[:, 1:].min(axis=2))
    if rest is not None and rest[0] > 0.0 and rest[1][0].shape[0]:
        dt = float(times[1] - times[0]) if len(times) > 1 else float(rest[0])
        after = times[-1] + dt * np.arange(1, int(np.ceil(rest[0] / dt - 1e-9)) + 1)
        dist = np.concatenate([dist, _at_rest_distance(x[:, -1], y[:, -1], th[:, -1], after, hl, hw, rest[1],
                                                       span)], axis=1)
        times = np.concatenate([times, after])
    # Already inside the clearance (stopped next to a wall or a worker walked up): only motions that get no closer
    # count as free, so the base can still back or turn away instead of being frozen.
    threshold = np.minimum(clearance, dist[:, :1] - 1e-6)
    hit = dist < threshold
    first = np.where(hit.any(axis=1), times[np.argmax(hit, axis=1)], np.inf)
    return first, dist[:, 0]


def _at_rest_distance(x: np.ndarray, y: np.ndarray, th: np.ndarray, times: np.ndarray, half_length: float,
                      half_width: float, obstacles: tuple[np.ndarray, np.ndarray, np.ndarray], span: float
                      ) -> np.ndarray:
    """Distance (C, K) from the footprint standing at each candidate's pose (x, y, th (C,)) to moving discs at `times`.

    Discs that stay farther than `span` from the origin over `times` cannot come near any pose (see `sweep`).
    """
    centres, radii, vel = obstacles
    keep = np.hypot(centres[:, 0], centres[:, 1]) - radii - np.hypot(vel[:, 0], vel[:, 1]) * times[-1] < span
    centres, radii, vel = centres[keep], radii[keep], vel[keep]
    if centres.shape[0] == 0:
        return np.full((len(x), len(times)), np.inf)
    c, s = np.cos(th)[:, None, None], np.sin(th)[:, None, None]
    ox = centres[None, None, :, 0] + vel[None, None, :, 0] * times[None, :, None] - x[:, None, None]
    oy = centres[None, None, :, 1] + vel[None, None, :, 1] * times[None, :, None] - y[:, None, None]
    return (rect_distance(c * ox + s * oy, -s * ox + c * oy, half_length, half_width) - radii).min(axis=2)


def _nearest(centres: np.ndarray, radii: np.ndarray | float, half_length: float, half_width: float) -> float:
    """Distance from the footprint at the origin to the nearest disc (centres (N, 2), radii) [m]; inf if none."""
    if centres.shape[0] == 0:
        return float("inf")
    return float(np.min(rect_distance(centres[:, 0], centres[:, 1], half_length, half_width) - radii))

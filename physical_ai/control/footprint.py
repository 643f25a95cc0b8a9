"""Footprint sweep: when a rectangular base driving a constant (v, w) first nears a point or obstacle.

Used by the AMR corrector on every cycle; a 24k-point cloud costs well under a millisecond.

Points are first binned into a coarse 2D grid around the robot (one `bincount`), so the sweep works on occupied
cells, not raw points; each cell is inflated by its half diagonal, so the check stays conservative. The poses are
numpy; the distance test runs in one compiled kernel (numba) that stops each candidate at its first hit and skips
what its circumscribed circle cannot reach: in numpy the full (candidates, samples, cells) distance arrays were
most of the corrector's cycle.
"""

from __future__ import annotations

import dataclasses

import numba
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
    hl, hw = footprint.length / 2, footprint.width / 2
    centres, radii, _ = obstacles
    # The distance now (every candidate starts at the origin) over everything: one pose, cheap.
    now = min(_nearest(cells, cell_pad, hl, hw), _nearest(centres, radii, hl, hw), 1e9)  # 1e9: nothing
    # Already inside the clearance (stopped next to a wall or a worker walked up): only motions that get no closer
    # count as free, so the base can still back or turn away instead of being frozen.
    threshold = min(clearance, now - 1e-6)
    after, movers = np.zeros(0), (np.zeros((0, 2)), np.zeros(0), np.zeros((0, 2)))
    if rest is not None and rest[0] > 0.0 and rest[1][0].shape[0]:
        dt = float(times[1] - times[0]) if len(times) > 1 else float(rest[0])
        after, movers = times[-1] + dt * np.arange(1, int(np.ceil(rest[0] / dt - 1e-9)) + 1), rest[1]
    first = _first_hits(x, y, th, np.asarray(times, float), np.asarray(cells, float), float(cell_pad),
                        *(np.asarray(a, float) for a in obstacles), after, *(np.asarray(a, float) for a in movers),
                        hl, hw, footprint.radius + clearance, threshold)
    return first, np.full(len(x), now)


@numba.njit(cache=True)
def _rect(px: float, py: float, half_length: float, half_width: float) -> float:
    """`rect_distance` of one point."""
    ex, ey = abs(px) - half_length, abs(py) - half_width
    dx, dy = max(ex, 0.0), max(ey, 0.0)
    return np.sqrt(dx * dx + dy * dy) + min(max(ex, ey), 0.0)


@numba.njit(cache=True)
def _first_hits(x: np.ndarray, y: np.ndarray, th: np.ndarray, times: np.ndarray, cells: np.ndarray, cell_pad: float,
                centres: np.ndarray, radii: np.ndarray, vel: np.ndarray, after: np.ndarray, rest_centres: np.ndarray,
                rest_radii: np.ndarray, rest_vel: np.ndarray, half_length: float, half_width: float, reach: float,
                threshold: float) -> np.ndarray:
    """Per candidate, the first time (times[1:], then `after` at its final pose) anything is nearer than threshold.

    Cells are fixed; obstacles move at constant velocity (the rest obstacles over `after`). A disc whose centre
    lies at least `reach` (circumscribed radius + clearance) + its radius from a pose's centre is skipped: the
    footprint's surface distance to it is at least the clearance, and the threshold never exceeds that.
    """
    n_cand, n_times = x.shape
    first = np.full(n_cand, np.inf)
    for c in range(n_cand):
        for k in range(1, n_times + after.shape[0]):
            resting = k >= n_times
            j = n_times - 1 if resting else k
            t = after[k - n_times] if resting else times[k]
            px, py, ct, st = x[c, j], y[c, j], np.cos(th[c, j]), np.sin(th[c, j])
            hit = False
            if not resting and reach + cell_pad > 0.0:
                cut = (reach + cell_pad) ** 2
                for m in range(cells.shape[0]):
                    dx, dy = cells[m, 0] - px, cells[m, 1] - py
                    if dx * dx + dy * dy < cut and _rect(ct * dx + st * dy, -st * dx + ct * dy, half_length,
                                                         half_width) - cell_pad < threshold:
                        hit = True
                        break
            obs_c, obs_r, obs_v = (rest_centres, rest_radii, rest_vel) if resting else (centres, radii, vel)
            for o in range(obs_c.shape[0]):
                if hit:
                    break
                dx, dy = obs_c[o, 0] + obs_v[o, 0] * t - px, obs_c[o, 1] + obs_v[o, 1] * t - py
                if reach + obs_r[o] > 0.0 and dx * dx + dy * dy < (reach + obs_r[o]) ** 2 and \
                        _rect(ct * dx + st * dy, -st * dx + ct * dy, half_length, half_width) - obs_r[o] < threshold:
                    hit = True
            if hit:
                first[c] = t
                break
    return first


def _nearest(centres: np.ndarray, radii: np.ndarray | float, half_length: float, half_width: float) -> float:
    """Distance from the footprint at the origin to the nearest disc (centres (N, 2), radii) [m]; inf if none."""
    if centres.shape[0] == 0:
        return float("inf")
    return float(np.min(rect_distance(centres[:, 0], centres[:, 1], half_length, half_width) - radii))

"""Multi-object tracking: constant-velocity Kalman filters with gated (Mahalanobis) Hungarian association.

Tracks live in a fixed frame (odom when the robot's pose is known) so that ego motion does not show up as
obstacle velocity; callers pass the robot pose and get states back in the robot frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from physical_ai.perception.lidar import Cluster


@dataclass
class TrackerConfig:
    """Tracker parameters."""

    gate_m: float = 2.0                 # largest centre distance for an association [m]
    gate_chi2: float = 9.21             # Mahalanobis gate on the innovation (chi-square, 2 dof, 99 %)
    init_speed_std: float = 2.0         # velocity std of a new track per axis: covers the fastest object [m/s]
    max_missed: int = 3                 # frames a track may go unobserved before it is deleted
    process_accel: float = 2.0          # white-acceleration noise [m/s^2]
    measurement_std: float = 0.15       # centre measurement noise [m]
    moving_speed: float = 0.3           # tracks faster than this are reported as moving [m/s]
    prediction_steps: int = 5
    prediction_dt: float = 0.2          # [s]


@dataclass
class Track:
    """One tracked obstacle; `x` = (px, py, vx, vy) in the tracking frame."""

    id: int
    x: np.ndarray
    P: np.ndarray
    cluster: Cluster
    age: int = 1
    missed: int = 0
    stamp_ns: int = 0
    history: list = field(default_factory=list)
    walked: bool = False                # seen walking once: a person while its shape still allows one

    @property
    def speed(self) -> float:
        """Speed [m/s]."""
        return float(np.hypot(self.x[2], self.x[3]))

    @property
    def heading(self) -> float:
        """Direction of motion in the tracking frame [rad]."""
        return float(np.arctan2(self.x[3], self.x[2]))


class Tracker:
    """Associates clusters across frames and estimates their velocities."""

    def __init__(self, cfg: TrackerConfig) -> None:
        self.cfg = cfg
        self.tracks: list[Track] = []
        self._next_id = 1
        self._last_ns: int | None = None

    def reset(self) -> None:
        """Forget every track (e.g. after a jump back in time)."""
        self.tracks.clear()
        self._last_ns = None

    def update(self, clusters: list[Cluster], stamp_ns: int, T_world_base: np.ndarray | None = None) -> list[Track]:
        """Predict, associate and correct; return the tracks observed in this frame.

        Args:
            clusters: this frame's clusters in the robot frame.
            stamp_ns: sensor stamp of the frame.
            T_world_base: (4, 4) robot pose in the tracking frame (None: track in the robot frame).

        Returns:
            Tracks updated by a cluster in this frame (coasting tracks are kept but not returned: they are not
            fresh observations).
        """
        if self._last_ns is not None and stamp_ns <= self._last_ns - int(1e9):
            self.reset()
        dt = 0.0 if self._last_ns is None else max((stamp_ns - self._last_ns) * 1e-9, 0.0)
        self._last_ns = max(stamp_ns, self._last_ns or stamp_ns)
        T = np.eye(4) if T_world_base is None else T_world_base
        meas = np.array([(T[:2, :2] @ c.center[:2] + T[:2, 3]) for c in clusters]).reshape(-1, 2)
        for t in self.tracks:
            self._predict(t, dt)
        matched_tracks, matched_meas = self._associate(meas)
        updated = []
        for ti, mi in zip(matched_tracks, matched_meas, strict=True):
            t = self.tracks[ti]
            self._correct(t, meas[mi])
            t.cluster, t.age, t.missed, t.stamp_ns = clusters[mi], t.age + 1, 0, stamp_ns
            updated.append(t)
        unmatched_t = set(range(len(self.tracks))) - set(matched_tracks)
        for ti in unmatched_t:
            self.tracks[ti].missed += 1
        r2, v2 = self.cfg.measurement_std ** 2, self.cfg.init_speed_std ** 2
        for mi in sorted(set(range(len(meas))) - set(matched_meas)):
            t = Track(id=self._next_id, x=np.array([meas[mi, 0], meas[mi, 1], 0.0, 0.0]),
                      P=np.diag([r2, r2, v2, v2]), cluster=clusters[mi], stamp_ns=stamp_ns)
            self._next_id += 1
            self.tracks.append(t)
            updated.append(t)
        self.tracks = [t for t in self.tracks if t.missed <= self.cfg.max_missed]
        return updated

    def velocity_in_base(self, track: Track, T_world_base: np.ndarray | None) -> np.ndarray:
        """Track velocity (vx, vy) rotated into the robot frame."""
        v = track.x[2:4]
        return v if T_world_base is None else T_world_base[:2, :2].T @ v

    def predict_positions(self, track: Track, T_world_base: np.ndarray | None, still: bool = False) -> np.ndarray:
        """(steps, 2) predicted centres in the robot frame at k * prediction_dt, k = 1..steps (`still`: not moving)."""
        k = np.arange(1, self.cfg.prediction_steps + 1)[:, None] * self.cfg.prediction_dt
        p = track.x[:2] + k * (np.zeros(2) if still else track.x[2:4])
        if T_world_base is None:
            return p
        return (p - T_world_base[:2, 3]) @ T_world_base[:2, :2]

    def _predict(self, t: Track, dt: float) -> None:
        if dt <= 0:
            return
        F = np.eye(4)
        F[0, 2] = F[1, 3] = dt
        q = self.cfg.process_accel ** 2
        G = np.array([[dt * dt / 2, 0], [0, dt * dt / 2], [dt, 0], [0, dt]])
        t.x = F @ t.x
        t.P = F @ t.P @ F.T + q * G @ G.T

    def _correct(self, t: Track, z: np.ndarray) -> None:
        H = np.zeros((2, 4))
        H[0, 0] = H[1, 1] = 1.0
        S = H @ t.P @ H.T + np.eye(2) * self.cfg.measurement_std ** 2
        K = t.P @ H.T @ np.linalg.inv(S)
        t.x = t.x + K @ (z - H @ t.x)
        t.P = (np.eye(4) - K @ H) @ t.P

    def _associate(self, meas: np.ndarray) -> tuple[list[int], list[int]]:
        """Global nearest neighbour on Mahalanobis distances, with "no match" as an option for every track and cluster.

        A pair is possible when the cluster lies within `gate_m` of the track's prediction and inside its
        `gate_chi2` ellipse (the innovation covariance: tight for a settled track, wide for a new or coasting one).
        Leaving a track or a cluster unmatched costs gate_chi2 / 2, so the solver is never forced into a pair: with
        a plain rectangular assignment every track had to take some cluster within 2 m, and a worker's track whose
        cluster another track claimed was handed a shelf post 1.8 m away, and its velocity estimate with it (ROS
        trace, seed 100014).
        """
        n_t, n_m = len(self.tracks), len(meas)
        if not n_t or not n_m:
            return [], []
        pred = np.array([t.x[:2] for t in self.tracks])
        nu = meas[None, :, :] - pred[:, None, :]                                    # (T, M, 2) innovations
        S_inv = np.linalg.inv(np.array([t.P[:2, :2] for t in self.tracks]) + np.eye(2) * self.cfg.measurement_std ** 2)
        d2 = np.einsum("tmi,tij,tmj->tm", nu, S_inv, nu)
        possible = (d2 <= self.cfg.gate_chi2) & (np.hypot(nu[..., 0], nu[..., 1]) <= self.cfg.gate_m)
        big = 1e6 * self.cfg.gate_chi2
        full = np.full((n_t + n_m, n_m + n_t), big)
        full[:n_t, :n_m] = np.where(possible, d2, big)
        full[np.arange(n_t), n_m + np.arange(n_t)] = self.cfg.gate_chi2 / 2      # track i unmatched
        full[n_t + np.arange(n_m), np.arange(n_m)] = self.cfg.gate_chi2 / 2      # cluster j unmatched
        full[n_t:, n_m:] = 0.0
        rows, cols = linear_sum_assignment(full)
        ok = (rows < n_t) & (cols < n_m)
        ok[ok] = possible[rows[ok], cols[ok]]
        return rows[ok].tolist(), cols[ok].tolist()

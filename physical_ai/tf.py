"""A transform tree with time history, the ROS-free core of /tf and /tf_static handling.

Frames form a tree: each child has one parent edge. A dynamic edge keeps a time-sorted history (pruned to
`cache_time_s` behind its newest sample) and is interpolated between samples (linear translation, quaternion
slerp from pytransform3d); a static edge holds for all time. Lookups chain edges through the lowest common
ancestor, like tf2. Thread-safe: a listener thread may write while others look up.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field

import numpy as np
import pytransform3d.rotations as pr
import transforms3d.quaternions as tq

from physical_ai.convert import check_transform_matrix, rotation_to_wxyz

NS_PER_S = 1_000_000_000


@dataclass
class _Edge:
    """The transform from `parent` to one child: static, or a time-sorted history of samples."""

    parent: str
    static: bool
    stamps: list[int] = field(default_factory=list)
    translations: list[np.ndarray] = field(default_factory=list)
    quaternions: list[np.ndarray] = field(default_factory=list)  # (w, x, y, z)

    def insert(self, stamp_ns: int, translation: np.ndarray, quaternion: np.ndarray, cache_ns: int) -> None:
        if self.static:
            self.stamps, self.translations, self.quaternions = [stamp_ns], [translation], [quaternion]
            return
        i = bisect.bisect_left(self.stamps, stamp_ns)
        if i < len(self.stamps) and self.stamps[i] == stamp_ns:  # same stamp: the newer message wins
            self.translations[i], self.quaternions[i] = translation, quaternion
        else:
            self.stamps.insert(i, stamp_ns)
            self.translations.insert(i, translation)
            self.quaternions.insert(i, quaternion)
        drop = bisect.bisect_left(self.stamps, self.stamps[-1] - cache_ns)
        if drop:
            del self.stamps[:drop], self.translations[:drop], self.quaternions[:drop]

    def at(self, stamp_ns: int, child: str) -> np.ndarray:
        """(4, 4) transform parent <- child at `stamp_ns`; ValueError outside the history."""
        if self.static:
            return _matrix(self.translations[0], self.quaternions[0])
        stamps = self.stamps
        i = bisect.bisect_left(stamps, stamp_ns)
        if i < len(stamps) and stamps[i] == stamp_ns:
            return _matrix(self.translations[i], self.quaternions[i])
        if i == 0 or i == len(stamps):
            raise ValueError(
                f"extrapolation: transform {self.parent} -> {child} requested at {stamp_ns / NS_PER_S:.9f} s, "
                f"history covers [{stamps[0] / NS_PER_S:.9f}, {stamps[-1] / NS_PER_S:.9f}] s")
        t0, t1 = stamps[i - 1], stamps[i]
        u = (stamp_ns - t0) / (t1 - t0)
        translation = (1.0 - u) * self.translations[i - 1] + u * self.translations[i]
        quaternion = pr.quaternion_slerp(self.quaternions[i - 1], self.quaternions[i], u, shortest_path=True)
        return _matrix(translation, quaternion)


def _matrix(translation: np.ndarray, quaternion: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = tq.quat2mat(quaternion)
    T[:3, 3] = translation
    return T


def _frame(name: str) -> str:
    """tf2 frame ids carry no leading slash; an empty id is an error."""
    name = name.lstrip("/")
    if not name:
        raise ValueError("empty frame id")
    return name


class TransformBuffer:
    """Time-indexed transform tree with chained, interpolated lookups.

    Args:
        cache_time_s: history kept per dynamic edge, behind that edge's newest sample [s].
    """

    def __init__(self, cache_time_s: float = 10.0) -> None:
        if not cache_time_s > 0:
            raise ValueError(f"cache_time_s must be > 0, got {cache_time_s}")
        self._cache_ns = int(cache_time_s * NS_PER_S)
        self._edges: dict[str, _Edge] = {}  # child -> edge to its parent
        self._lock = threading.Lock()

    def set_transform(self, parent: str, child: str, stamp_ns: int, T: np.ndarray, static: bool = False) -> None:
        """Record T, the pose of `child` in `parent` (it maps points in `child` into `parent`), at `stamp_ns`.

        A child has one parent: a new parent replaces the old edge and its history.

        Raises:
            ValueError: empty/equal frame ids, a non-rigid T, or an edge that would close a loop.
        """
        parent, child = _frame(parent), _frame(child)
        if parent == child:
            raise ValueError(f"transform from frame {parent!r} to itself")
        T = check_transform_matrix(T, tolerance=1e-4)
        quaternion = rotation_to_wxyz(T[:3, :3])
        translation = T[:3, 3].copy()
        with self._lock:
            frame = parent
            while frame in self._edges:  # walking up from the parent must not reach the child
                frame = self._edges[frame].parent
                if frame == child:
                    raise ValueError(f"transform {parent} -> {child} would make a loop in the tree")
            edge = self._edges.get(child)
            if edge is None or edge.parent != parent or edge.static != static:
                edge = self._edges[child] = _Edge(parent, static)
            edge.insert(int(stamp_ns), translation, quaternion, self._cache_ns)

    def clear_history(self) -> None:
        """Forget every dynamic sample, keeping static edges (as tf2 does when ROS time jumps back).

        After a simulator reset the new, smaller stamps would otherwise sort before the old episode's samples and
        be trimmed as too old, leaving the last pose of the previous episode as the "latest" transform.
        """
        with self._lock:
            self._edges = {child: edge for child, edge in self._edges.items() if edge.static}

    def frames(self) -> set[str]:
        """Every frame known to the buffer."""
        with self._lock:
            return set(self._edges) | {edge.parent for edge in self._edges.values()}

    def parent(self, frame: str) -> str | None:
        """The parent of `frame`, None for a root or unknown frame."""
        with self._lock:
            edge = self._edges.get(_frame(frame))
            return None if edge is None else edge.parent

    def lookup(self, target_frame: str, source_frame: str, stamp_ns: int | None = None) -> np.ndarray:
        """The (4, 4) transform mapping points in `source_frame` into `target_frame` at `stamp_ns`.

        Args:
            target_frame: frame the result expresses points in.
            source_frame: frame the points are given in.
            stamp_ns: time [ns]; None for the latest time at which every dynamic edge on the path has data.

        Raises:
            LookupError: an unknown frame, or frames in disconnected trees.
            ValueError: the time is outside some edge's history (extrapolation).
        """
        target_frame, source_frame = _frame(target_frame), _frame(source_frame)
        with self._lock:
            up_source, up_target = self._path(source_frame, target_frame)
            edges = [(child, self._edges[child]) for child in up_source + up_target]
            if stamp_ns is None:
                latest = [edge.stamps[-1] for _, edge in edges if not edge.static]
                stamp_ns = min(latest) if latest else 0
            # compose root-ward: T_ancestor<-source = T_a<-c1 @ T_c1<-c2 @ ... @ T_ck<-source
            source_in_ancestor = np.eye(4)
            for child, edge in edges[:len(up_source)]:
                source_in_ancestor = edge.at(stamp_ns, child) @ source_in_ancestor
            target_in_ancestor = np.eye(4)
            for child, edge in edges[len(up_source):]:
                target_in_ancestor = edge.at(stamp_ns, child) @ target_in_ancestor
        return _inverse(target_in_ancestor) @ source_in_ancestor

    def lookup_at_or_latest(self, target_frame: str, source_frame: str, stamp_ns: int) -> np.ndarray:
        """`lookup` at `stamp_ns`, or at the latest time where the stamp is outside the history.

        Raises:
            LookupError: an unknown frame, or frames in disconnected trees.
            ValueError: no time at all is in the history of some edge on the path.
        """
        try:
            return self.lookup(target_frame, source_frame, stamp_ns)
        except ValueError:
            return self.lookup(target_frame, source_frame)

    def can_transform(self, target_frame: str, source_frame: str, stamp_ns: int | None = None) -> bool:
        """Whether `lookup` would succeed."""
        try:
            self.lookup(target_frame, source_frame, stamp_ns)
        except (LookupError, ValueError):
            return False
        return True

    def transform_points(self, target_frame: str, source_frame: str, points: np.ndarray,
                         stamp_ns: int | None = None) -> np.ndarray:
        """Map (N, 3) points from `source_frame` into `target_frame` (same dtype as given)."""
        points = np.asarray(points)
        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f"points must be (N, 3), got {points.shape}")
        T = self.lookup(target_frame, source_frame, stamp_ns)
        return (points @ T[:3, :3].T + T[:3, 3]).astype(points.dtype, copy=False)

    def _path(self, source: str, target: str) -> tuple[list[str], list[str]]:
        """Children whose edges lead from source and from target up to their lowest common ancestor."""
        known = set(self._edges) | {edge.parent for edge in self._edges.values()}
        for name in (source, target):
            if name not in known:
                raise LookupError(f"frame {name!r} does not exist (known: {', '.join(sorted(known)) or 'none'})")
        source_chain = self._ancestors(source)
        target_chain = self._ancestors(target)
        depth_of = {frame: i for i, frame in enumerate(source_chain)}
        for j, frame in enumerate(target_chain):
            if frame in depth_of:
                return source_chain[:depth_of[frame]], target_chain[:j]
        raise LookupError(f"frames {source!r} (root {source_chain[-1]!r}) and {target!r} "
                          f"(root {target_chain[-1]!r}) are not connected")

    def _ancestors(self, frame: str) -> list[str]:
        chain = [frame]
        while chain[-1] in self._edges:
            chain.append(self._edges[chain[-1]].parent)
        return chain


def _inverse(T: np.ndarray) -> np.ndarray:
    R = T[:3, :3]
    inverse = np.eye(4)
    inverse[:3, :3] = R.T
    inverse[:3, 3] = -R.T @ T[:3, 3]
    return inverse

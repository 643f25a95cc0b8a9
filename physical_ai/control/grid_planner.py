"""Shortest collision-free path on an occupancy grid (Dijkstra over an 8-connected graph built with numpy/scipy).

Used to re-plan the AMR's route the moment its path is blocked. The grid is inflated by the robot's radius plus
clearance with a Euclidean distance transform, so the path is for a point robot.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

_OFFSETS = np.array([(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)])


@dataclasses.dataclass(frozen=True)
class Grid:
    """A 2D occupancy grid: occupied[row, col] is cell (x = origin_x + (col + 0.5) * res, y = origin_y + ...).

    The grid is axis-aligned with the frame its origin is given in (e.g. odom).
    """

    occupied: np.ndarray  # (H, W) bool
    resolution: float
    origin: tuple[float, float]

    def to_cell(self, xy: np.ndarray) -> np.ndarray:
        """(row, col) integer cells of points (N, 2); may be outside the grid."""
        rc = np.floor((np.asarray(xy, float) - np.asarray(self.origin)) / self.resolution).astype(int)
        return rc[..., ::-1]

    def to_xy(self, rc: np.ndarray) -> np.ndarray:
        """Centres (N, 2) of cells (N, 2) given as (row, col)."""
        rc = np.asarray(rc)
        return np.asarray(self.origin) + (rc[..., ::-1] + 0.5) * self.resolution


def aligned_grid(occupied: np.ndarray, resolution: float, origin_pose: tuple[float, float, float]) -> Grid:
    """A grid given in a rotated frame, as an axis-aligned `Grid` of the same resolution in the frame it lies in.

    Args:
        occupied: (H, W) bool, row = y, col = x of the rotated grid.
        resolution: cell size [m].
        origin_pose: (x, y, yaw) of the rotated grid's corner cell (0, 0) in the target frame (e.g. odom; a
            robot-centred perception grid turns with the base).

    Each occupied cell marks every cell its turned square overlaps (at most 3 x 3): no part of an occupied cell
    is free in the result, which marks at most ~0.7 cells more around each obstacle, on the safe side.
    """
    x, y, yaw = origin_pose
    c, s = np.cos(yaw), np.sin(yaw)
    turn = np.array([[c, s], [-s, c]])  # row vectors: p @ turn turns p by yaw
    corners = np.array([(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0)])
    h, w = occupied.shape
    extent = (corners * (w, h) * resolution) @ turn + (x, y)  # the whole grid's corners: start and goal lie in it
    low = np.floor(extent.min(axis=0) / resolution) * resolution
    shape = np.ceil((extent.max(axis=0) - low) / resolution - 1e-9).astype(int)[::-1]
    out = np.zeros(tuple(np.maximum(shape, 1)), bool)
    rows, cols = np.nonzero(occupied)
    if not len(rows):
        return Grid(out, resolution, (float(low[0]), float(low[1])))
    local = (np.column_stack([cols, rows])[:, None, :] + corners[None]) * resolution  # (N, 4, 2)
    cells = (local @ turn + (x, y) - low) / resolution
    first = np.floor(cells.min(axis=1)).astype(int)  # (N, 2) x, y cell of each square's lower bound
    # a bound on a cell edge stays out; rounding never takes a cell past the grid
    last = np.minimum(np.maximum(np.ceil(cells.max(axis=1)).astype(int) - 1, first), shape[::-1] - 1)
    first = np.minimum(first, last)
    for dx in range(3):
        for dy in range(3):
            cell = first + np.array([dx, dy])
            keep = np.all(cell <= last, axis=1)
            out[cell[keep, 1], cell[keep, 0]] = True
    return Grid(out, resolution, (float(low[0]), float(low[1])))


def stamp_obstacles(grid: Grid, centres: np.ndarray, radii: np.ndarray) -> Grid:
    """A copy of `grid` with discs (centres (M, 2), radii (M,)) marked occupied.

    Each disc only touches the cells of its bounding window, so the cost is per obstacle, not per grid cell.
    """
    occ = grid.occupied.copy()
    h, w = occ.shape
    res = grid.resolution
    for (cx, cy), r in zip(np.asarray(centres, float).reshape(-1, 2), np.asarray(radii, float).ravel(), strict=True):
        c0, r0 = np.floor((np.array([cx - r, cy - r]) - grid.origin) / res).astype(int)
        c1, r1 = np.floor((np.array([cx + r, cy + r]) - grid.origin) / res).astype(int) + 1
        c0, r0, c1, r1 = max(c0, 0), max(r0, 0), min(c1, w), min(r1, h)
        if c0 >= c1 or r0 >= r1:
            continue
        ys = grid.origin[1] + (np.arange(r0, r1) + 0.5) * res
        xs = grid.origin[0] + (np.arange(c0, c1) + 0.5) * res
        occ[r0:r1, c0:c1] |= (xs[None, :] - cx) ** 2 + (ys[:, None] - cy) ** 2 <= r * r
    return Grid(occ, grid.resolution, grid.origin)


def coarsen(grid: Grid, min_resolution: float) -> Grid:
    """The grid at a resolution of at least `min_resolution` (a coarse cell is occupied if any fine one is).

    Planning cost grows with the number of cells; a route for a robot half a metre wide needs no 5 cm cells.
    """
    k = int(np.ceil(min_resolution / grid.resolution - 1e-9))
    if k <= 1:
        return grid
    h, w = grid.occupied.shape
    padded = np.zeros((-(-h // k) * k, -(-w // k) * k), dtype=bool)
    padded[:h, :w] = grid.occupied
    pooled = np.zeros((padded.shape[0] // k, padded.shape[1] // k), dtype=bool)
    for i in range(k):  # k*k strided ORs: ~30x faster than any() over the reshaped axes (400x400, k=2)
        for j in range(k):
            pooled |= padded[i::k, j::k]
    return Grid(pooled, grid.resolution * k, grid.origin)


def plan(grid: Grid, start_xy: np.ndarray, goal_xy: np.ndarray, inflation_m: float) -> np.ndarray | None:
    """Shortest path (N, 2) of cell centres from start to goal avoiding cells within `inflation_m` of an obstacle.

    The start cell is always allowed (the robot is there); a goal inside the inflated area or outside the grid is
    replaced by the free cell nearest to it. Returns None when no path exists.
    """
    occ = np.asarray(grid.occupied, bool)
    h, w = occ.shape
    clearance = ndimage.distance_transform_edt(~occ) * grid.resolution
    free = clearance > inflation_m
    start = np.clip(grid.to_cell(start_xy), 0, [h - 1, w - 1])
    free[start[0], start[1]] = True
    if not free.any():
        return None
    free_rc = np.argwhere(free)
    goal = grid.to_cell(goal_xy)
    goal = free_rc[np.argmin(((free_rc - goal) ** 2).sum(axis=1))]
    index = -np.ones((h, w), dtype=np.int64)
    index[free] = np.arange(free_rc.shape[0])
    src, dst, cost = [], [], []
    for dr, dc in _OFFSETS:
        nr, nc = free_rc[:, 0] + dr, free_rc[:, 1] + dc
        ok = (nr >= 0) & (nr < h) & (nc >= 0) & (nc < w)
        ok[ok] = free[nr[ok], nc[ok]]
        src.append(index[free_rc[ok, 0], free_rc[ok, 1]])
        dst.append(index[nr[ok], nc[ok]])
        # Slightly prefer cells further from obstacles so the path does not hug the inflated boundary.
        penalty = 1.0 + 0.5 * np.exp(-clearance[nr[ok], nc[ok]] / max(inflation_m, 1e-3))
        cost.append(np.hypot(dr, dc) * penalty)
    n = free_rc.shape[0]
    graph = csr_matrix((np.concatenate(cost), (np.concatenate(src), np.concatenate(dst))), shape=(n, n))
    s, g = index[start[0], start[1]], index[goal[0], goal[1]]
    dist, pred = dijkstra(graph, indices=s, return_predecessors=True)
    if not np.isfinite(dist[g]):
        return None
    path = [g]
    while path[-1] != s:
        path.append(pred[path[-1]])
    return grid.to_xy(free_rc[np.array(path[::-1])])

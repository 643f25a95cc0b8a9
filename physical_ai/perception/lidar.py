"""LiDAR obstacle segmentation: ground-plane removal and BEV-grid connected components.

Why not DBSCAN: Open3D's DBSCAN builds a KD-tree and runs a radius query per point (~340 ms for 50k points on this
machine). Points of one obstacle are neighbours in a bird's-eye-view grid, so clustering reduces to marking occupied
cells and labelling 8-connected components (`scipy.ndimage.label`, linear in the grid size). Every per-point step is
a numpy vector operation; the only Python loop runs over clusters (tens to hundreds), to fit a minimum-area
rectangle with OpenCV.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import scipy.ndimage as ndi

# Obstacle classes (values match physical_ai_stack/Obstacle CLASS_*; the core does not import messages).
CLASS_UNKNOWN = 0
CLASS_PERSON = 1
CLASS_VEHICLE = 2
CLASS_STATIC = 3
CLASS_PART = 4

# Sensor bits (values match Obstacle.SENSOR_*).
SENSOR_LIDAR = 1
SENSOR_CAMERA = 2
SENSOR_DEPTH = 4
SENSOR_TACTILE = 8

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass
class SegmentationConfig:
    """Parameters of ground removal and clustering (all in the robot frame, metres)."""

    x_range: tuple[float, float] = (-40.0, 40.0)
    y_range: tuple[float, float] = (-40.0, 40.0)
    cell_size: float = 0.2                # BEV grid resolution [m]
    ground_threshold: float = 0.25        # points higher than this above the ground plane are obstacles [m]
    max_height: float = 2.5               # points higher than this above ground are ignored (canopies, ceilings) [m]
    default_ground_z: float = 0.0         # ground height when no plane can be fitted [m]
    ground_search_band: float = 0.6       # candidate ground points lie within this of default_ground_z ... [m]
    max_ground_tilt_deg: float = 12.0     # plane normals tilted more than this are not ground [deg]
    ransac_iterations: int = 40
    ransac_sample: int = 2048             # candidate points used by RANSAC
    ransac_tolerance: float = 0.12        # inlier distance [m]
    min_cluster_points: int = 5
    min_rect_points: int = 40             # clusters this large get a minimum-area rectangle instead of PCA axes
    min_rect_length: float = 1.0          # ... when at least this long (vehicles, walls) [m]
    max_cluster_extent: float = 25.0      # clusters longer than this are split walls/kerbs: kept, classed static [m]
    vehicle_length_prior: float = 4.2     # a vehicle seen end-on is completed to this length; 0 disables [m]
    vehicle_width_prior: float = 1.7      # a vehicle seen side-on is completed to this width [m]
    seed: int = 0


@dataclass
class Cluster:
    """One segmented obstacle in the robot frame."""

    center: np.ndarray                    # (3,) box centre [m]
    size: np.ndarray                      # (3,) length along yaw, width, height [m]
    yaw: float                            # [rad]
    num_points: int
    classification: int = CLASS_UNKNOWN
    confidence: float = 0.5
    sensors: int = SENSOR_LIDAR
    color: np.ndarray = field(default_factory=lambda: np.zeros(3))  # mean RGB in [0, 1] when a camera saw it
    point_index: np.ndarray | None = None  # indices into the segmented cloud (for camera fusion)


@dataclass
class Segmentation:
    """Result of `segment`: ground plane, obstacle points and clusters."""

    plane: np.ndarray                     # (4,) a, b, c, d with a*x + b*y + c*z + d = height above ground, c > 0
    obstacle_points: np.ndarray           # (M, 3) non-ground points inside the grid
    point_sensors: np.ndarray             # (M,) uint8 sensor bit of each obstacle point
    point_labels: np.ndarray              # (M,) cluster index (0..K-1) of each obstacle point, -1 if dropped
    clusters: list[Cluster]
    ground_cells: np.ndarray              # (nx, ny) bool: cells where ground was observed (free space evidence)


def fit_ground_plane(points: np.ndarray, cfg: SegmentationConfig, rng: np.random.Generator) -> np.ndarray:
    """Fit the ground plane with RANSAC on low points; fall back to z = default_ground_z.

    Args:
        points: (N, 3) points in the robot frame.
        cfg: segmentation parameters.
        rng: random generator (seeded for repeatable results).

    Returns:
        (4,) plane coefficients normalised so that (a, b, c) is a unit normal with c > 0.
    """
    fallback = np.array([0.0, 0.0, 1.0, -cfg.default_ground_z])
    # Draw a random subset first (with replacement: a permutation of 100k points costs more than the fit), then
    # keep its points near the expected ground height.
    if len(points) > 4 * cfg.ransac_sample:
        points = points[rng.integers(0, len(points), 4 * cfg.ransac_sample)]
    cand = points[np.abs(points[:, 2] - cfg.default_ground_z) < cfg.ground_search_band]
    if len(cand) < 50:
        return fallback
    if len(cand) > cfg.ransac_sample:
        cand = cand[:cfg.ransac_sample]
    k = cfg.ransac_iterations
    tri = cand[rng.integers(0, len(cand), size=(k, 3))]                 # (k, 3 points, xyz)
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    norms = np.linalg.norm(normals, axis=1)
    ok = norms > 1e-6
    normals[ok] /= norms[ok, None]
    normals *= np.where(normals[:, 2:3] < 0, -1.0, 1.0)
    ok &= normals[:, 2] > np.cos(np.radians(cfg.max_ground_tilt_deg))
    if not ok.any():
        return fallback
    normals, tri = normals[ok], tri[ok]
    d = -np.einsum("ij,ij->i", normals, tri[:, 0])
    dist = np.abs(cand @ normals.T + d)                                   # (n_cand, k)
    inliers = dist < cfg.ransac_tolerance
    best = int(np.argmax(inliers.sum(axis=0)))
    pts = cand[inliers[:, best]]
    if len(pts) < 10:
        return fallback
    # Least-squares refinement z = a x + b y + c over the inliers.
    a_mat = np.column_stack([pts[:, 0], pts[:, 1], np.ones(len(pts))])
    coef, *_ = np.linalg.lstsq(a_mat, pts[:, 2], rcond=None)
    n = np.array([-coef[0], -coef[1], 1.0])
    scale = np.linalg.norm(n)
    plane = np.append(n, -coef[2]) / scale
    if plane[2] < np.cos(np.radians(cfg.max_ground_tilt_deg)):
        return fallback
    return plane


def segment(points: np.ndarray, cfg: SegmentationConfig, sensors: np.ndarray | None = None,
            no_ground: np.ndarray | None = None) -> Segmentation:
    """Remove the ground and cluster the remaining points into oriented boxes.

    Args:
        points: (N, 3) finite points in the robot frame (float32 or float64).
        cfg: segmentation parameters.
        sensors: (N,) uint8 sensor bit per point (default: all LiDAR).
        no_ground: (N,) bool, points known not to be ground (e.g. from a 2D LaserScan) that skip ground removal.

    Returns:
        The segmentation; clusters are ordered by label.
    """
    rng = np.random.default_rng(cfg.seed)
    nx = int(np.ceil((cfg.x_range[1] - cfg.x_range[0]) / cfg.cell_size))
    ny = int(np.ceil((cfg.y_range[1] - cfg.y_range[0]) / cfg.cell_size))
    if sensors is None:
        sensors = np.full(len(points), SENSOR_LIDAR, np.uint8)
    if len(points) == 0:
        return Segmentation(np.array([0.0, 0.0, 1.0, -cfg.default_ground_z]), np.zeros((0, 3), np.float32),
                            np.zeros(0, np.uint8), np.zeros(0, np.int32), [], np.zeros((nx, ny), bool))
    ground_pts = points if no_ground is None else points[~no_ground]
    plane = fit_ground_plane(ground_pts, cfg, rng)
    height = points @ plane[:3].astype(points.dtype) + points.dtype.type(plane[3])
    ix = ((points[:, 0] - cfg.x_range[0]) * (1.0 / cfg.cell_size)).astype(np.int32)
    iy = ((points[:, 1] - cfg.y_range[0]) * (1.0 / cfg.cell_size)).astype(np.int32)
    inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny) & (points[:, 0] >= cfg.x_range[0]) \
        & (points[:, 1] >= cfg.y_range[0])
    is_ground = np.abs(height) <= cfg.ground_threshold
    if no_ground is not None:
        is_ground &= ~no_ground
        height = np.where(no_ground, np.maximum(height, cfg.ground_threshold + 1e-3), height)
    obstacle = inside & ~is_ground & (height > cfg.ground_threshold) & (height < cfg.max_height)
    cell = ix * ny + iy
    ground_cells = np.zeros(nx * ny, bool)
    ground_cells[cell[inside & is_ground]] = True

    flat = cell[obstacle]
    obs_pts = points[obstacle]
    obs_sensors = sensors[obstacle]
    occupied = np.zeros(nx * ny, bool)
    occupied[flat] = True
    labels, n = ndi.label(occupied.reshape(nx, ny), structure=_EIGHT_CONNECTED)
    labels = labels.ravel()
    point_label = labels[flat] - 1
    clusters, keep = _fit_clusters(obs_pts, height[obstacle], point_label, n, cfg, obs_sensors, plane)
    remap = np.full(n + 1, -1, np.int32)
    remap[keep] = np.arange(len(keep), dtype=np.int32)
    point_labels = remap[point_label]
    return Segmentation(plane, obs_pts, obs_sensors, point_labels, clusters, ground_cells.reshape(nx, ny))


def _fit_clusters(pts: np.ndarray, height: np.ndarray, label: np.ndarray, n: int, cfg: SegmentationConfig,
                  point_sensors: np.ndarray, plane: np.ndarray) -> tuple[list[Cluster], np.ndarray]:
    """Fit an oriented box to each component with enough points. Returns clusters and their component indices.

    Per-cluster statistics are segment reductions over the points sorted by label (`ufunc.reduceat`). Small
    clusters get their orientation from the covariance of their points; clusters with at least
    `min_rect_points` points get OpenCV's minimum-area rectangle, which fits the L-shaped view of a car better.
    """
    if n == 0:
        return [], np.zeros(0, np.int64)
    counts = np.bincount(label, minlength=n)
    keep = np.flatnonzero(counts >= cfg.min_cluster_points)
    if len(keep) == 0:
        return [], keep
    # Stable sort of 16-bit keys is a radix sort in numpy: linear in the number of points.
    order = np.argsort(label.astype(np.uint16) if n < 2**16 else label, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])      # every component has at least one point
    xs, ys = pts[order, 0], pts[order, 1]
    x, y = xs.astype(np.float64), ys.astype(np.float64)
    # Boxes stand on the ground: their height is the top of the highest point above the plane.
    top = np.maximum.reduceat(height[order], starts)
    sensor_bits = np.bitwise_or.reduceat(point_sensors[order], starts)
    mx, my = np.add.reduceat(x, starts) / counts, np.add.reduceat(y, starts) / counts
    dx, dy = x - np.repeat(mx, counts), y - np.repeat(my, counts)
    cxx, cyy, cxy = (np.add.reduceat(a, starts) for a in (dx * dx, dy * dy, dx * dy))
    yaw = 0.5 * np.arctan2(2 * cxy, cxx - cyy)
    cos, sin = np.repeat(np.cos(yaw), counts), np.repeat(np.sin(yaw), counts)
    u, v = dx * cos + dy * sin, -dx * sin + dy * cos
    u0, u1 = np.minimum.reduceat(u, starts), np.maximum.reduceat(u, starts)
    v0, v1 = np.minimum.reduceat(v, starts), np.maximum.reduceat(v, starts)
    cu, cv = (u0 + u1) / 2, (v0 + v1) / 2
    cx = mx + cu * np.cos(yaw) - cv * np.sin(yaw)
    cy = my + cu * np.sin(yaw) + cv * np.cos(yaw)
    # Boxes from the covariance axes for every cluster; large ones get the minimum-area rectangle instead.
    bx, by, box_yaw = cx[keep], cy[keep], yaw[keep]
    length, width = (u1 - u0)[keep], (v1 - v0)[keep]
    xy = pts[:, :2].astype(np.float32)
    # Only clusters long enough to be vehicles or walls need it: the covariance axes of small things are fine.
    for j in np.flatnonzero((counts[keep] >= cfg.min_rect_points) & (np.maximum(length, width) >= cfg.min_rect_length)):
        k = keep[j]
        idx = order[starts[k]:starts[k] + counts[k]]
        # The rectangle's angle from at most ~256 points (hull cost grows with points), extents from all.
        a = np.radians(cv2.minAreaRect(xy[idx[::max(1, counts[k] // 256)]])[2])
        ca, sa = np.cos(a), np.sin(a)
        px, py = xs[starts[k]:starts[k] + counts[k]], ys[starts[k]:starts[k] + counts[k]]
        pu, pv = px * ca + py * sa, py * ca - px * sa                # 1-D reductions are much faster than axis=0
        u_lo, u_hi, v_lo, v_hi = pu.min(), pu.max(), pv.min(), pv.max()
        mu, mv = (u_lo + u_hi) / 2, (v_lo + v_hi) / 2
        bx[j], by[j], box_yaw[j] = mu * ca - mv * sa, mu * sa + mv * ca, a
        length[j], width[j] = u_hi - u_lo, v_hi - v_lo
    swap = width > length
    length, width = np.where(swap, width, length), np.where(swap, length, width)
    box_yaw = (box_yaw + np.where(swap, np.pi / 2, 0.0) + np.pi / 2) % np.pi - np.pi / 2
    # A zero-width rectangle (a line of points) still has the sensor's beam footprint.
    length, width = np.maximum(length, cfg.cell_size), np.maximum(width, cfg.cell_size)
    tops = top[keep]
    ground_z = -(plane[0] * bx + plane[1] * by + plane[3]) / plane[2]
    classes, confidence = classify_geometry(length, width, tops, cfg)
    clusters = []
    for j, k in enumerate(keep):
        c = Cluster(center=np.array([bx[j], by[j], ground_z[j] + 0.5 * tops[j]]),
                    size=np.array([length[j], width[j], tops[j]]), yaw=float(box_yaw[j]), num_points=int(counts[k]),
                    classification=int(classes[j]), confidence=float(confidence[j]), sensors=int(sensor_bits[k]),
                    point_index=order[starts[k]:starts[k] + counts[k]])
        if c.classification == CLASS_VEHICLE:
            _complete_vehicle(c, cfg)
        clusters.append(c)
    return clusters, keep


def classify_geometry(length: np.ndarray, width: np.ndarray, height: np.ndarray,
                      cfg: SegmentationConfig) -> tuple[np.ndarray, np.ndarray]:
    """Class and confidence from box shape alone (camera evidence may override it later).

    Args:
        length: (K,) box lengths [m] (length >= width).
        width: (K,) box widths [m].
        height: (K,) box tops above ground [m].
        cfg: segmentation parameters.

    Returns:
        (K,) CLASS_* and (K,) confidences.
    """
    rules = [(length > cfg.max_cluster_extent, CLASS_STATIC, 0.6),
             ((height >= 0.9) & (height <= 2.2) & (length <= 1.2) & (width <= 1.0), CLASS_PERSON, 0.4),
             ((height >= 0.8) & (height <= 3.5) & (length >= 1.2) & (length <= 8.0) & (width <= 3.0),
              CLASS_VEHICLE, 0.6),
             (length > 8.0, CLASS_STATIC, 0.5)]
    conds = [r[0] for r in rules]
    classes = np.select(conds, [r[1] for r in rules], CLASS_UNKNOWN)
    confidence = np.select(conds, [r[2] for r in rules], 0.5)
    return classes, confidence


def _complete_vehicle(c: Cluster, cfg: SegmentationConfig) -> None:
    """Grow a vehicle box away from the sensor (at the origin) along the hidden dimension.

    A LiDAR sees the near faces of a vehicle only. When both faces of a corner are visible (an L, depth >= 1 m) the
    rectangle is already complete. When one face is seen, the box axis closer to the viewing ray is hidden: behind
    a short face (a rear or front, <= 2.6 m) lies the vehicle's length, behind a long one (a side) its width.
    """
    if cfg.vehicle_length_prior <= 0:       # completion disabled (indoor robots)
        return
    axes = np.array([[np.cos(c.yaw), np.sin(c.yaw)], [-np.sin(c.yaw), np.cos(c.yaw)]])
    ray = c.center[:2] / max(float(np.linalg.norm(c.center[:2])), 1e-6)
    depth_axis = int(np.argmax(np.abs(axes @ ray)))
    face = c.size[1 - depth_axis]
    if c.size[depth_axis] >= 1.0:
        return
    target = cfg.vehicle_length_prior if face <= 2.6 else cfg.vehicle_width_prior
    grow = target - c.size[depth_axis]
    if grow > 0:
        direction = axes[depth_axis] * np.sign(axes[depth_axis] @ ray)
        c.center[:2] += direction * grow / 2
        c.size[depth_axis] = target
        if c.size[1] > c.size[0]:
            c.size[:2] = c.size[1::-1].copy()
            c.yaw = float((c.yaw + np.pi) % np.pi - np.pi / 2)

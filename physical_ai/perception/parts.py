"""Part pose estimation for the arm cell: table-plane removal and box/cylinder fitting on depth points."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import ConvexHull, QhullError

from physical_ai.perception.lidar import SegmentationConfig, segment


@dataclass
class PartsConfig:
    """Part detection parameters (table frame: z up, table top at `table_z`)."""

    table_z: float = 0.0                  # expected table height in the working frame [m]
    workspace_x: tuple[float, float] = (-1.0, 1.0)
    workspace_y: tuple[float, float] = (-1.0, 1.0)
    min_height: float = 0.008             # part points rise at least this above the table [m]
    max_height: float = 0.4               # [m]
    cell: float = 0.005                   # grid resolution for part segmentation [m]
    min_points: int = 15
    depth_noise: float = 0.002            # depth noise of one point [m], drives the covariance


@dataclass
class Part:
    """One estimated part pose with a 6x6 covariance (x, y, z, roll, pitch, yaw)."""

    label: str
    position: np.ndarray                  # (3,)
    yaw: float
    size: np.ndarray                      # (3,)
    covariance: np.ndarray                # (6, 6)
    confidence: float


# Canonical part yaws lie within half a symmetry period of the wrist's yaw at rest (the gripper's closing axis,
# ArmPickPlaceExpert.REST): the expert grasps at the canonical yaw, so the grasp a policy must produce is a smooth
# function of the perceived pose wherever the demonstrations are smooth.
YAW_CENTRE = np.pi / 2


def canonical_pose(yaw: np.ndarray | float, size_x: np.ndarray | float, size_y: np.ndarray | float,
                   square_tolerance: float = 0.15) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A part's footprint yaw and sides made independent of the fit's arbitrary choices.

    The fit's yaw names one of a box's axes, and a symmetric box looks the same turned by its symmetry: a square
    footprint (sides within `square_tolerance` of each other; cylinders, fitted with yaw 0, included) repeats every
    quarter turn, a rectangle every half turn. Here the yaw is that of the SHORT side (the axis a gripper closes
    along), reduced into [YAW_CENTRE - period / 2, YAW_CENTRE + period / 2), and the sides are (short, long). The
    one function for the training env, the policy_inference node and the expert's grasp yaw.

    Args:
        yaw: fitted yaw of the footprint's x side [rad].
        size_x: footprint side along `yaw` [m].
        size_y: the other side [m].
        square_tolerance: sides differing by less than this fraction of the longer are a square.

    Returns:
        (canonical yaw [rad], short side [m], long side [m]), arrays of the broadcast shape.
    """
    yaw, sx, sy = (np.asarray(v, dtype=np.float64) for v in (yaw, size_x, size_y))
    swap = sx > sy
    yaw = np.where(swap, yaw + np.pi / 2, yaw)
    short, long = np.minimum(sx, sy), np.maximum(sx, sy)
    period = np.where(long - short < square_tolerance * np.maximum(long, 1e-9), np.pi / 2, np.pi)
    low = YAW_CENTRE - period / 2
    return low + np.mod(yaw - low, period), short, long


def table_segmentation(cfg: PartsConfig) -> SegmentationConfig:
    """The segmentation of a part search: the table top is the ground, parts are what stands on it.

    The table is fitted through its points within 4 mm of the plane, every point its own 2 mm cell. The lowest point
    of wider cells (the floor fit's guard against desk tops and car bodies) is the table's depth noise at its low
    tail: with 2 cm cells the table read 1.6 mm low, every part as much taller, and the arm policy trained on
    unbiased tables missed grasps it makes on them.
    """
    return SegmentationConfig(x_range=cfg.workspace_x, y_range=cfg.workspace_y, cell_size=cfg.cell,
                              ground_threshold=cfg.min_height, max_height=cfg.max_height,
                              default_ground_z=cfg.table_z, ground_search_band=0.05, ground_cell=0.002,
                              ground_tolerance=0.004, min_cluster_points=cfg.min_points, min_rect_length=0.0)


def detect_parts(points: np.ndarray, cfg: PartsConfig) -> list[Part]:
    """Find parts standing on the table and fit oriented boxes; round footprints are labelled cylinders.

    Args:
        points: (N, 3) depth points in the working frame (table top near z = table_z).
        cfg: parameters.

    Returns:
        Parts with poses and covariances.
    """
    seg = segment(np.asarray(points, np.float32), table_segmentation(cfg))
    parts = []
    for c in seg.clusters:
        pts = seg.obstacle_points[c.point_index, :2].astype(float)
        length, width, height = (float(v) for v in c.size)
        label = _shape_label(pts - c.center[:2], length, width, height)
        n = len(pts)
        var_xy = (cfg.depth_noise ** 2 + cfg.cell ** 2 / 12) / max(n, 1) + (cfg.cell / 2) ** 2 / 3
        # Yaw is unobservable for round parts and poorly observed for square ones.
        var_yaw = np.pi ** 2 / 3 if label == "cylinder" else \
            (0.5 if abs(length - width) < 0.1 * length else (cfg.cell / max(length, 1e-3)) ** 2)
        cov = np.diag([var_xy, var_xy, cfg.depth_noise ** 2, 1e-4, 1e-4, var_yaw])
        center = c.center.copy()
        parts.append(Part(label=label, position=center, yaw=c.yaw if label != "cylinder" else 0.0,
                          size=np.array([length, width, height]), covariance=cov,
                          confidence=float(min(1.0, n / (5 * cfg.min_points)))))
    return parts


def _shape_label(rel: np.ndarray, length: float, width: float, height: float) -> str:
    """"cylinder", "cube" or "box" from a part's top-view points (relative to its centre) and fitted size.

    A round footprint is square in its bounding rectangle but its outline (convex hull) fills only ~pi/4 of it
    (0.79-0.88 with grid and depth noise) where a square fills > 0.9; the hull area is robust to the scattered
    corner points that make point counts near the corners unreliable for parts a few centimetres wide.
    """
    square = abs(length - width) < 0.15 * max(length, 1e-6)
    try:
        fill = ConvexHull(rel).volume / max(length * width, 1e-9) if len(rel) >= 3 else 1.0
    except QhullError:  # collinear points: a sliver, not round
        fill = 1.0
    if square and fill < 0.9:
        return "cylinder"
    if square and abs(length - height) < 0.3 * length:  # heights read high by ~2 depth-noise sigmas
        return "cube"
    return "box"

"""Recorded data through the same pipeline the node runs: KITTI 000008 (cars, free road) and the nuScenes sample."""

from __future__ import annotations

import numpy as np
import pytest
from testdata import DATASETS

from physical_ai.perception.datasets import load_kitti, load_nuscenes
from physical_ai.perception.evaluation import match_boxes, run
from physical_ai.perception.lidar import SegmentationConfig
from physical_ai.perception.pipeline import FusionPipeline, PipelineConfig

KITTI = DATASETS / "kitti_000008"
NUSCENES = DATASETS / "nuscenes_sample"


@pytest.mark.skipif(not KITTI.exists(), reason=f"KITTI frame not found at {KITTI}")
def test_kitti_every_car_matched_and_road_free():
    rec = load_kitti(KITTI)
    assert len(rec.boxes) == 6
    result = run(FusionPipeline(PipelineConfig(segmentation=SegmentationConfig(x_range=(0, 50),
                                                                               y_range=(-25, 25)))), rec)
    dist, _ = match_boxes(result, rec.boxes, max_dist=1.0)
    assert np.all(dist <= 1.0), f"unmatched cars, BEV distances {dist}"
    # Free road ahead: ego corridor (ego width 1.6 m + 0.2 m each side), 2-25 m ahead, in 0.2 m cells that hold
    # ground returns (observed road; the cropped scan sees the ground from ~6 m) and lie more than 0.5 m from every
    # labelled car's footprint.
    half = 1.6 / 2 + 0.2
    xs, ys = np.meshgrid(np.arange(2.0, 25.0, 0.2) + 0.1, np.arange(-half, half, 0.2) + 0.1, indexing="ij")
    cells = np.column_stack([xs.ravel(), ys.ravel()])
    pts = rec.points_lidar[:, :3] + rec.T_base_lidar[:3, 3]
    ground = pts[np.abs(pts[:, 2]) < 0.3]
    gi = np.floor((ground[:, 0] - 2.0) / 0.2).astype(int)
    gj = np.floor((ground[:, 1] + half) / 0.2).astype(int)
    ok = (gi >= 0) & (gi < xs.shape[0]) & (gj >= 0) & (gj < xs.shape[1])
    observed = np.zeros(xs.shape, bool)
    observed[gi[ok], gj[ok]] = True
    free = observed.ravel().copy()
    for b in rec.boxes:
        free &= ~_in_box(cells, b.center[:2], b.size[:2] + 1.0, b.yaw)
    assert free.sum() > 50, "the free road area should be a real, observed area"
    free_cells = cells[free]
    for ob in result.obstacles:
        c = ob.cluster
        hit = _in_box(free_cells, c.center[:2], np.maximum(c.size[:2], 0.2), c.yaw)
        assert not hit.any(), f"obstacle in the free road area: centre {c.center}, size {c.size}"


def _in_box(xy: np.ndarray, center: np.ndarray, size: np.ndarray, yaw: float) -> np.ndarray:
    """Which points lie inside an oriented rectangle (size = full length, width)."""
    d = xy - center
    u = d[:, 0] * np.cos(yaw) + d[:, 1] * np.sin(yaw)
    v = -d[:, 0] * np.sin(yaw) + d[:, 1] * np.cos(yaw)
    return (np.abs(u) <= size[0] / 2) & (np.abs(v) <= size[1] / 2)


@pytest.mark.skipif(not NUSCENES.exists(), reason=f"nuScenes sample not found at {NUSCENES}")
def test_nuscenes_runs_and_prints_recall():
    rec = load_nuscenes(NUSCENES)
    result = run(FusionPipeline(PipelineConfig(segmentation=SegmentationConfig(x_range=(-50, 50),
                                                                               y_range=(-50, 50)))), rec)
    boxes = [b for b in rec.boxes if b.num_lidar_pts >= 10 and np.hypot(*b.center[:2]) <= 40 and b.label != "unknown"]
    dist, _ = match_boxes(result, boxes, max_dist=1.0)
    recall = float(np.mean(np.isfinite(dist)))
    print(f"nuScenes recall (>= 10 LiDAR points, <= 40 m, BEV centre within 1 m): {recall:.3f} of {len(boxes)}")
    assert len(result.people_boxes) == 6 and len(boxes) > 10
    assert recall > 0.4

"""Run recorded frames through `FusionPipeline` and score obstacles against labelled boxes (BEV centre distance)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from physical_ai.perception.camera import CameraModel
from physical_ai.perception.datasets import LabelledBox, RecordedFrame
from physical_ai.perception.pipeline import CameraFrame, FrameInput, FrameResult, FusionPipeline


def frame_input(rec: RecordedFrame, stamp_ns: int = 0) -> FrameInput:
    """Convert a recorded frame into pipeline input (points into the robot frame, camera models from calibration)."""
    T = rec.T_base_lidar
    pts = rec.points_lidar[:, :3] @ T[:3, :3].T.astype(np.float32) + T[:3, 3].astype(np.float32)
    cams = []
    for name, image in rec.images.items():
        T_cam_base = rec.T_cam_lidar[name] @ np.linalg.inv(T)
        cams.append(CameraFrame(image, CameraModel(rec.K[name], image.shape[1], image.shape[0], T_cam_base)))
    return FrameInput(stamp_ns=stamp_ns, clouds=[pts.astype(np.float32)], cameras=cams)


def match_boxes(result: FrameResult, boxes: list[LabelledBox], max_dist: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one assignment of labelled boxes to obstacles by BEV centre distance.

    Returns:
        (len(boxes),) matched distance per box (inf when unmatched) and the obstacle index per box (-1).
    """
    dist = np.full(len(boxes), np.inf)
    index = np.full(len(boxes), -1)
    if not boxes or not result.obstacles:
        return dist, index
    b = np.array([x.center[:2] for x in boxes])
    o = np.array([x.cluster.center[:2] for x in result.obstacles])
    cost = np.linalg.norm(b[:, None] - o[None], axis=2)
    rows, cols = linear_sum_assignment(np.where(cost <= max_dist, cost, 1e6))
    ok = cost[rows, cols] <= max_dist
    dist[rows[ok]] = cost[rows[ok], cols[ok]]
    index[rows[ok]] = cols[ok]
    return dist, index


def run(pipeline: FusionPipeline, rec: RecordedFrame) -> FrameResult:
    """Process one recorded frame."""
    return pipeline.process(frame_input(rec))

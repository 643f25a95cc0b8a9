"""Camera fusion: LiDAR-to-image projection, cluster colour and class, HOG people detection, depth back-projection.

The SSD people detector for real images is in ssd_detector.py.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from physical_ai.perception.classify import ClassifyConfig, could_be_person
from physical_ai.perception.lidar import CLASS_PERSON, SENSOR_CAMERA, Cluster
from physical_ai.perception.ssd_detector import SsdPersonDetector


@dataclass
class CameraModel:
    """A pinhole camera: intrinsics and the transform from the robot frame into the optical frame."""

    K: np.ndarray                 # (3, 3)
    width: int
    height: int
    T_cam_base: np.ndarray        # (4, 4) maps robot-frame points into the camera optical frame

    def project(self, points: np.ndarray, min_depth: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
        """Project robot-frame points; returns (N, 2) int pixel coords and an (N,) mask of points in the image."""
        pc = points @ self.T_cam_base[:3, :3].T.astype(points.dtype) + self.T_cam_base[:3, 3].astype(points.dtype)
        z = pc[:, 2]
        valid = z > min_depth
        inv = np.where(valid, 1.0 / np.where(valid, z, 1.0), 0.0)
        u = (self.K[0, 0] * pc[:, 0] * inv + self.K[0, 2])
        v = (self.K[1, 1] * pc[:, 1] * inv + self.K[1, 2])
        valid &= (u >= 0) & (u < self.width) & (v >= 0) & (v < self.height)
        uv = np.column_stack([u, v]).astype(np.int32)
        return uv, valid

    def ground_point(self, u: float, v: float, plane: np.ndarray) -> np.ndarray | None:
        """Robot-frame point where the ray through pixel (u, v) meets the ground plane, or None if it never does."""
        ray_cam = np.linalg.solve(self.K, np.array([u, v, 1.0]))
        T_base_cam = np.linalg.inv(self.T_cam_base)
        origin, ray = T_base_cam[:3, 3], T_base_cam[:3, :3] @ ray_cam
        denom = plane[:3] @ ray
        if abs(denom) < 1e-9:
            return None
        t = -(plane[:3] @ origin + plane[3]) / denom
        return origin + t * ray if t > 0 else None


class PersonDetector:
    """OpenCV's pretrained HOG + linear SVM people detector (Dalal-Triggs), full frame and LiDAR-guided.

    OpenCV 5 ships HOG in the contrib build (opencv-contrib-python-headless); without it `available` is False
    and people come from LiDAR geometry only.
    """

    cycle_roi_check = True     # one window costs ~1 ms: cheap enough for the LiDAR cycle

    def __init__(self, frame_scale: float = 0.5, hit_threshold: float = 0.0) -> None:
        self.available = hasattr(cv2, "HOGDescriptor") and hasattr(cv2, "HOGDescriptor_getDefaultPeopleDetector")
        self.unavailable_reason = "" if self.available else "OpenCV without HOG (needs the contrib build)"
        self.frame_scale = frame_scale
        self.hit_threshold = hit_threshold
        if self.available:
            self._hog = cv2.HOGDescriptor()
            self._weights = np.asarray(cv2.HOGDescriptor_getDefaultPeopleDetector(), np.float32).ravel()
            self._hog.setSVMDetector(self._weights)

    def detect(self, image: np.ndarray, bgr: bool = False) -> np.ndarray:
        """People boxes (K, 5): x0, y0, x1, y1 in full-resolution pixels and the SVM score (any channel order)."""
        if not self.available or image.size == 0:
            return np.zeros((0, 5))
        small = cv2.resize(image, None, fx=self.frame_scale, fy=self.frame_scale, interpolation=cv2.INTER_AREA) \
            if self.frame_scale != 1.0 else image
        if small.shape[0] < 128 or small.shape[1] < 64:
            return np.zeros((0, 5))
        rects, weights = self._hog.detectMultiScale(small, hitThreshold=self.hit_threshold, winStride=(8, 8),
                                                    scale=1.1)
        if len(rects) == 0:
            return np.zeros((0, 5))
        rects = np.asarray(rects, float) / self.frame_scale
        return np.column_stack([rects[:, 0], rects[:, 1], rects[:, 0] + rects[:, 2], rects[:, 1] + rects[:, 3],
                                np.asarray(weights, float).ravel()])

    def score_roi(self, image: np.ndarray, box: np.ndarray) -> float:
        """SVM score of one 64x128 window fitted to `box` (x0, y0, x1, y1); > 0 means a person (any channel order)."""
        if not self.available:
            return float("-inf")
        h, w = image.shape[:2]
        x0, y0, x1, y1 = box
        # Dalal-Triggs windows have 16 px of margin around a 96 px tall person: pad the box the same way.
        pad_y, cx = (y1 - y0) / 6.0, (x0 + x1) / 2
        half_w = (y1 - y0 + 2 * pad_y) / 4
        xa, xb = int(max(cx - half_w, 0)), int(min(cx + half_w, w))
        ya, yb = int(max(y0 - pad_y, 0)), int(min(y1 + pad_y, h))
        if xb - xa < 8 or yb - ya < 16:
            return float("-inf")
        window = cv2.resize(image[ya:yb, xa:xb], (64, 128), interpolation=cv2.INTER_AREA)
        desc = self._hog.compute(window).ravel()
        return float(desc @ self._weights[:-1] + self._weights[-1])


def fuse_clusters(clusters: list[Cluster], points: np.ndarray, camera: CameraModel, image: np.ndarray | None,
                  people: np.ndarray, evidence: ClassifyConfig,
                  detector: PersonDetector | SsdPersonDetector | None = None, roi_person_check: bool = True,
                  bgr: bool = False) -> np.ndarray:
    """Colour and (re)classify clusters with one camera, in place; returns the clusters' image boxes.

    Each cluster's points are projected into the image: its colour is the mean of the pixels they hit, and a
    cluster whose shape allows a person (`could_be_person`) is one when its projected box lies inside a detected
    person box; person-shaped clusters whose own image window scores as a person (a LiDAR-guided look) gain
    confidence.

    Args:
        clusters: clusters to update; their `point_index` index into `points`.
        points: (M, 3) robot-frame obstacle points.
        camera: the camera model.
        image: HxWx3 image (RGB, or BGR with `bgr`), or None when only geometry is fused.
        people: (K, 5) person boxes from the detector's `detect`.
        evidence: the classification rules (what shape a person may have, whether this robot reports people).
        detector: detector used for the LiDAR-guided window check (None: skip it).
        roi_person_check: run the window check on person-sized clusters.
        bgr: the image's channels are blue, green, red (colours are reported RGB).

    Returns:
        (K, 4) image boxes (x0, y0, x1, y1) of the clusters this camera sees (at least 3 points in the image).
    """
    seen: list[np.ndarray] = []
    if not clusters:
        return np.zeros((0, 4))
    uv, valid = camera.project(points)
    for c in clusters:
        idx = c.point_index
        if idx is None:
            continue
        sel = idx[valid[idx]]
        if len(sel) < 3:
            continue
        c.sensors |= SENSOR_CAMERA
        pix = uv[sel]
        if image is not None:
            mean = image[pix[:, 1], pix[:, 0], :3].mean(axis=0) / 255.0
            c.color = mean[::-1] if bgr else mean
        x0, y0 = pix.min(axis=0)
        x1, y1 = pix.max(axis=0)
        box = np.array([x0, y0, x1, y1], float)
        seen.append(box)
        if len(people) and could_be_person(c, evidence) and _best_coverage(box, people[:, :4]) > 0.6:
            c.classification, c.confidence = CLASS_PERSON, max(c.confidence, 0.8)
        elif (roi_person_check and detector is not None and detector.cycle_roi_check and image is not None
              and c.classification == CLASS_PERSON and detector.score_roi(image, box) > 0.0):
            c.confidence = max(c.confidence, 0.75)
    return np.array(seen, float).reshape(-1, 4)


def _best_coverage(box: np.ndarray, boxes: np.ndarray) -> float:
    """Largest fraction of `box` covered by any of `boxes` (a cluster's projection lies inside a person box)."""
    ix0 = np.maximum(box[0], boxes[:, 0])
    iy0 = np.maximum(box[1], boxes[:, 1])
    ix1 = np.minimum(box[2], boxes[:, 2])
    iy1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area = max((box[2] - box[0]) * (box[3] - box[1]), 1.0)
    return float(np.max(inter / area))


def depth_to_points(depth: np.ndarray, K: np.ndarray, T_base_cam: np.ndarray, stride: int = 4,
                    max_range: float = 8.0) -> np.ndarray:
    """Back-project a metric depth image (every `stride`-th pixel) into robot-frame points.

    Args:
        depth: HxW depth in metres (float32; 0, NaN or inf = no return). uint16 millimetres must be scaled first.
        K: (3, 3) intrinsics of the depth image.
        T_base_cam: (4, 4) maps optical-frame points into the robot frame.
        stride: pixel subsampling step.
        max_range: returns farther than this are ignored [m].

    Returns:
        (N, 3) float32 points.
    """
    d = depth[::stride, ::stride]
    ok = np.isfinite(d) & (d > 0.05) & (d < max_range)
    # A point is its pixel's ray (fixed for a camera) times its depth; rotating the rays first leaves one multiply.
    rays = _rays(depth.shape, stride, tuple(np.asarray(K, float)[[0, 1, 0, 1], [0, 1, 2, 2]]))
    R = T_base_cam[:3, :3].astype(np.float32)
    return (rays[ok] @ R.T) * d[ok].astype(np.float32)[:, None] + T_base_cam[:3, 3].astype(np.float32)


@functools.lru_cache(maxsize=8)
def _rays(shape: tuple[int, ...], stride: int, fxfycxcy: tuple[float, float, float, float]) -> np.ndarray:
    """Optical-frame rays (x/z, y/z, 1) of every `stride`-th pixel, (H', W', 3) float32."""
    fx, fy, cx, cy = fxfycxcy
    vs, us = np.mgrid[0:shape[0]:stride, 0:shape[1]:stride]
    rays = np.stack([(us - cx) / fx, (vs - cy) / fy, np.ones(us.shape)], axis=-1).astype(np.float32)
    rays.setflags(write=False)
    return rays

"""Score perception on recorded, labelled frames (KITTI, nuScenes): what `physai perception eval` and the tests run.

Every frame goes through `FusionPipeline.process` with a robot's configuration (the same parameter table the node
reads), so what is scored is what runs. Scores, per frame:
- recall at 1 m and 2 m: labelled objects with at least `min_points` LiDAR points within `max_range` that an obstacle
  matches one-to-one (Hungarian on the bird's-eye-view centre distance);
- per-class precision: of the obstacles within range claiming "person" or "vehicle", those within 1 m of a labelled
  box of that kind (any point count);
- false positives: obstacles within range more than 1 m from every labelled box; among them the person and vehicle
  claims (claims on unannotated structure: poles, hedges, walls);
- the recording vehicle reported as an obstacle (a body box from the dataset's calibration);
- milliseconds per frame, LiDAR only and with the cameras;
- with cameras, the same scores for the fused result (the people detector run inside the cycle), and the camera
  people detector on its own: labelled pedestrians within range projected into each image (their 3D box's image
  box, at least half of it in the picture) found by a detection at IoU >= 0.3, and detections that match no labelled
  pedestrian or cyclist.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from physical_ai.perception.camera import CameraModel
from physical_ai.perception.datasets import LabelledBox, RecordedFrame
from physical_ai.perception.lidar import CLASS_PERSON, CLASS_VEHICLE
from physical_ai.perception.pipeline import CameraFrame, FrameInput, FrameResult, FusionPipeline, PipelineConfig

# Dataset labels that a class claim may match.
CLASS_LABELS = {CLASS_PERSON: frozenset({"pedestrian"}),
                CLASS_VEHICLE: frozenset({"car", "truck", "bus", "trailer", "construction_vehicle"})}
CLASS_NAMES = {CLASS_PERSON: "person", CLASS_VEHICLE: "vehicle"}


def frame_input(rec: RecordedFrame, stamp_ns: int = 0, cameras: bool = True) -> FrameInput:
    """Convert a recorded frame into pipeline input (points into the robot frame, camera models from calibration)."""
    T = rec.T_base_lidar
    pts = rec.points_lidar[:, :3] @ T[:3, :3].T.astype(np.float32) + T[:3, 3].astype(np.float32)
    cams = []
    for name, image in rec.images.items() if cameras else ():
        T_cam_base = rec.T_cam_lidar[name] @ np.linalg.inv(T)
        cams.append(CameraFrame(image, CameraModel(rec.K[name], image.shape[1], image.shape[0], T_cam_base), name))
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


def box_distance(xy: np.ndarray, box: LabelledBox) -> np.ndarray:
    """Bird's-eye-view distance from points (N, 2) to a labelled box's footprint (0 inside)."""
    d = np.asarray(xy, float).reshape(-1, 2) - box.center[:2]
    c, s = np.cos(box.yaw), np.sin(box.yaw)
    u, v = d[:, 0] * c + d[:, 1] * s, -d[:, 0] * s + d[:, 1] * c
    du = np.maximum(np.abs(u) - box.size[0] / 2, 0.0)
    dv = np.maximum(np.abs(v) - box.size[1] / 2, 0.0)
    return np.hypot(du, dv)


@dataclass
class FrameScore:
    """Scores of one frame (see the module docstring)."""

    frame: str
    objects: int                          # labelled objects scored for recall
    recall_1m: float
    recall_2m: float
    claims: dict[str, list[int]] = field(default_factory=dict)  # class -> [correct, claimed]
    false_positives: int = 0
    false_person_vehicle: int = 0
    ego_reported: int = 0
    ground: str = ""
    self_points: int = 0
    lidar_ms: float = float("nan")        # median per frame, LiDAR only
    fused_ms: float = float("nan")        # median per frame with the cameras (nan: no cameras run)
    fused: dict = field(default_factory=dict)   # recall_1m, claims, false_person_vehicle with the cameras fused
    camera_people: dict = field(default_factory=dict)   # detector, found, labelled, false, ms per image

    def as_dict(self) -> dict:
        """JSON-ready dictionary."""
        return asdict(self)


def score(rec: RecordedFrame, result: FrameResult, max_range: float = 40.0, min_points: int = 10,
          claim_dist: float = 1.0) -> FrameScore:
    """Score one processed frame against its labels (times are left unset)."""
    boxes = [b for b in rec.boxes if b.num_lidar_pts >= min_points and np.hypot(*b.center[:2]) <= max_range]
    recall = []
    for d in (1.0, 2.0):
        dist, _ = match_boxes(result, boxes, d)
        recall.append(float(np.mean(np.isfinite(dist))) if boxes else float("nan"))
    obs = [o.cluster for o in result.obstacles]
    xy = np.array([c.center[:2] for c in obs]).reshape(-1, 2)
    in_range = np.hypot(xy[:, 0], xy[:, 1]) <= max_range
    near = np.stack([box_distance(xy, b) for b in rec.boxes], axis=1) if rec.boxes else np.zeros((len(obs), 0))
    unlabelled = in_range & ~(near <= claim_dist).any(axis=1) if len(obs) else np.zeros(0, bool)
    classes = np.array([c.classification for c in obs], int)
    out = FrameScore(rec.name, len(boxes), recall[0], recall[1], ground=result.segmentation.ground_status,
                     self_points=result.segmentation.self_points)
    for k, name in CLASS_NAMES.items():
        claimed = in_range & (classes == k)
        kind = np.array([b.label in CLASS_LABELS[k] for b in rec.boxes], bool)
        right = (near[:, kind] <= claim_dist).any(axis=1) if kind.any() else np.zeros(len(obs), bool)
        out.claims[name] = [int((claimed & right).sum()), int(claimed.sum())]
    out.false_positives = int(unlabelled.sum())
    out.false_person_vehicle = int((unlabelled & np.isin(classes, list(CLASS_NAMES))).sum())
    if rec.body_box is not None and len(obs):
        b = rec.body_box
        out.ego_reported = int(((xy[:, 0] >= b[0] - 0.5) & (xy[:, 0] <= b[1] + 0.5) & (xy[:, 1] >= b[2] - 0.5)
                                & (xy[:, 1] <= b[3] + 0.5)).sum())
    return out


def evaluate(rec: RecordedFrame, cfg: PipelineConfig, repeats: int = 10, cameras: bool = True,
             max_range: float = 40.0, min_points: int = 10) -> tuple[FrameScore, FrameResult]:
    """Process a frame with a configuration, score it and time it.

    The frame's own body box (the recording vehicle) replaces the configuration's self-crop box: the robot in the
    recording is that vehicle. Times are medians over `repeats` runs of a pipeline that sees the frame as a
    standing scene at 10 Hz (tracks confirmed, as in steady operation).

    Returns:
        The score (with times) and the result of the first LiDAR-only run (for plotting).
    """
    if rec.body_box is not None:
        cfg.segmentation.self_crop_box = rec.body_box
    pipe = FusionPipeline(cfg)
    result = pipe.process(frame_input(rec, 0, cameras=False))
    out = score(rec, result, max_range, min_points)
    out.lidar_ms = _median_ms(pipe, frame_input(rec, cameras=False), repeats)
    if cameras and rec.images:
        fused = FusionPipeline(cfg)
        try:
            out.fused_ms = _median_ms(fused, frame_input(rec), repeats)
        finally:
            fused.close()    # its detector thread, still inside OpenCV at exit, aborted the interpreter
        in_cycle = FusionPipeline(replace(cfg, people_rate_hz=0.0))
        fs = score(rec, in_cycle.process(frame_input(rec)), max_range, min_points)
        out.fused = {"recall_1m": fs.recall_1m, "claims": fs.claims, "false_person_vehicle": fs.false_person_vehicle}
        if in_cycle.detector is not None and in_cycle.detector.available:
            out.camera_people = {"detector": cfg.people_detector,
                                 **camera_people_score(rec, in_cycle.detector.detect, max_range)}
    return out, result


PERSON_LABELS = frozenset({"pedestrian"})
RIDER_LABELS = frozenset({"bicycle", "motorcycle"})     # nuScenes labels a cyclist with the bicycle


def camera_people_score(rec: RecordedFrame, detect: Callable[[np.ndarray], np.ndarray], max_range: float = 40.0,
                        min_iou: float = 0.3) -> dict:
    """Score an image people detector on a frame's cameras against its labelled 3D boxes.

    Args:
        rec: the frame.
        detect: `detect(image) -> (K, 5)` boxes (x0, y0, x1, y1, score) on an RGB image.
        max_range: labelled pedestrians farther than this from the robot are not counted [m].
        min_iou: overlap a detection needs with a labelled pedestrian's image box.

    Returns:
        {"found", "labelled", "false", "ms"}: pedestrians found of those labelled in view, detections matching no
        pedestrian or rider, and the median milliseconds per image.
    """
    found = labelled = false = 0
    times = []
    for name, image in rec.images.items():
        T_cam_base = rec.T_cam_lidar[name] @ np.linalg.inv(rec.T_base_lidar)
        h, w = image.shape[:2]
        people = [b for b in rec.boxes if b.label in PERSON_LABELS and np.hypot(*b.center[:2]) <= max_range]
        riders = [b for b in rec.boxes if b.label in RIDER_LABELS]
        gt = image_boxes(people, rec.K[name], T_cam_base, w, h)
        others = image_boxes(riders, rec.K[name], T_cam_base, w, h)
        start = time.perf_counter()
        dets = np.asarray(detect(image)).reshape(-1, 5)
        times.append((time.perf_counter() - start) * 1e3)
        iou = _iou(gt, dets[:, :4])
        if len(gt) and len(dets):
            rows, cols = linear_sum_assignment(-iou)
            hit = iou[rows, cols] >= min_iou
            found += int(hit.sum())
        labelled += len(gt)
        near_any = _iou(np.concatenate([gt, others]), dets[:, :4])
        false += int((near_any.max(axis=0, initial=0.0) < min_iou).sum()) if len(dets) else 0
    return {"found": found, "labelled": labelled, "false": false, "ms": float(np.median(times)) if times else 0.0}


def image_boxes(boxes: list[LabelledBox], K: np.ndarray, T_cam_base: np.ndarray, w: int, h: int) -> np.ndarray:
    """(N, 4) image boxes of 3D boxes wholly in front of the camera with at least half their box in the image."""
    out = []
    for b in boxes:
        corners = np.array([[sx, sy, sz] for sx in (-0.5, 0.5) for sy in (-0.5, 0.5) for sz in (-0.5, 0.5)]) * b.size
        c, s = np.cos(b.yaw), np.sin(b.yaw)
        pts = corners @ np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]]) + b.center
        pc = pts @ T_cam_base[:3, :3].T + T_cam_base[:3, 3]
        if np.any(pc[:, 2] < 0.5):
            continue
        uv = (pc @ np.asarray(K, float).T)[:, :2] / pc[:, 2:3]
        box = np.r_[uv.min(axis=0), uv.max(axis=0)]
        clipped = np.clip(box, 0, [w, h, w, h])
        area = (box[2] - box[0]) * (box[3] - box[1])
        if area > 0 and (clipped[2] - clipped[0]) * (clipped[3] - clipped[1]) >= 0.5 * area:
            out.append(clipped)
    return np.array(out, float).reshape(-1, 4)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) intersection over union of x0, y0, x1, y1 boxes."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    area_a, area_b = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]), (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def _median_ms(pipe: FusionPipeline, frame: FrameInput, repeats: int) -> float:
    times = []
    for i in range(max(repeats, 1)):
        frame.stamp_ns = (i + 1) * 100_000_000
        start = time.perf_counter()
        pipe.process(frame)
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def plot_topdown(rec: RecordedFrame, result: FrameResult, sc: FrameScore, path: Path,
                 max_range: float = 40.0) -> None:
    """Write a top-down PNG: points, labelled boxes (green), obstacles by class, the scoring range and the body box."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, Polygon, Rectangle

    T = rec.T_base_lidar
    pts = rec.points_lidar[::3, :3] @ T[:3, :3].T + T[:3, 3]
    fig, ax = plt.subplots(figsize=(10, 10), dpi=110)
    ax.scatter(pts[:, 0], pts[:, 1], s=0.2, c="0.6", lw=0)
    for b in rec.boxes:
        ax.add_patch(Polygon(_corners(b.center[:2], b.size[:2], b.yaw), fill=False, ec="tab:green", lw=1.2))
    colours = {CLASS_PERSON: "tab:red", CLASS_VEHICLE: "tab:blue"}
    for o in result.obstacles:
        c = o.cluster
        ax.add_patch(Polygon(_corners(c.center[:2], np.maximum(c.size[:2], 0.2), c.yaw), fill=True, alpha=0.5,
                             fc=colours.get(c.classification, "0.25"), ec="none"))
    ax.add_patch(Circle((0, 0), max_range, fill=False, ls="--", ec="0.4"))
    if rec.body_box is not None:
        b = rec.body_box
        ax.add_patch(Rectangle((b[0], b[2]), b[1] - b[0], b[3] - b[2], fill=False, ec="k", lw=1.5))
    lim = max_range + 5
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", xlabel="x forward [m]", ylabel="y left [m]")
    claims = ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in sc.claims.items())
    ax.set_title(f"{sc.frame}: recall@1m {sc.recall_1m:.2f} @2m {sc.recall_2m:.2f} of {sc.objects}; "
                 f"right claims {claims}\nfalse positives {sc.false_positives} (person/vehicle "
                 f"{sc.false_person_vehicle}); ego {sc.ego_reported}; {sc.lidar_ms:.1f} ms LiDAR; green = labels, "
                 "red = person, blue = vehicle, grey = obstacle", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _corners(center: np.ndarray, size: np.ndarray, yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    half = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]]) * np.asarray(size[:2]) / 2
    return center[:2] + half @ np.array([[c, s], [-s, c]])

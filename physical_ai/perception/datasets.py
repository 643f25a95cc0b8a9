"""Loaders for the recorded frames in shared/datasets (KITTI 000008, nuScenes sample), as robot-frame inputs.

The robot frame ("base_link") is put on the ground under the LiDAR, x forward: KITTI's Velodyne sits 1.73 m above
the road; nuScenes gives lidar2ego (ego frame on the ground at the rear axle).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

KITTI_LIDAR_HEIGHT = 1.73   # Velodyne above the road [m] (KITTI setup description)
# The nuScenes car (Renault Zoe: 4.08 x 1.73 m, wheelbase 2.59 m, front overhang 0.84 m) around its ego frame (rear
# axle, on the ground), 0.1 m added each way and mirrors in the width; up to the LiDAR's mount (x/y/z min, max) [m].
NUSCENES_EGO_BOX = np.array([-0.76, 3.53, -1.0, 1.0, -0.5, 2.1])


@dataclass
class LabelledBox:
    """A labelled object in the robot frame."""

    label: str
    center: np.ndarray      # (3,)
    size: np.ndarray        # (3,) length, width, height
    yaw: float
    num_lidar_pts: int


@dataclass
class RecordedFrame:
    """One recorded multi-sensor frame."""

    points_lidar: np.ndarray            # (N, 4+) in the LiDAR frame
    T_base_lidar: np.ndarray            # (4, 4)
    images: dict[str, np.ndarray]       # camera -> RGB image
    K: dict[str, np.ndarray]            # camera -> (3, 3)
    T_cam_lidar: dict[str, np.ndarray]  # camera -> (4, 4) maps LiDAR points into the optical frame
    boxes: list[LabelledBox]
    name: str = ""
    body_box: np.ndarray | None = None  # (6,) the recording vehicle in the robot frame (x/y/z min, max), if seen


def load_kitti(root: Path) -> RecordedFrame:
    """KITTI 000008: one camera, 17k points, labelled cars (DontCare dropped).

    The scan is cropped to the camera's view ahead of the car, so the car itself is not in it (no body box).
    """
    root = Path(root)
    info = json.loads((root / "000008_info.json").read_text())["data_list"][0]
    pts = np.fromfile(root / "000008.bin", np.float32).reshape(-1, 4)
    cam = info["images"]["CAM2"]
    # cam2img is the rectified projection P2 (with a baseline offset); lidar2cam includes R0_rect.
    P = np.array(cam["cam2img"])
    K = P[:3, :3]
    T_cam_lidar = np.array(cam["lidar2cam"])
    T_cam_lidar[:3, 3] += np.linalg.solve(K, P[:3, 3])      # fold P2's offset into the extrinsic
    T_base_lidar = np.eye(4)
    T_base_lidar[2, 3] = KITTI_LIDAR_HEIGHT
    image = cv2.cvtColor(cv2.imread(str(root / "000008.png")), cv2.COLOR_BGR2RGB)
    T_lidar_rect = np.linalg.inv(np.array(cam["lidar2cam"]))
    boxes = []
    for inst in info["instances"]:
        if inst["bbox_label_3d"] != 2:
            continue
        x, y, z, length, h, w, ry = inst["bbox_3d"]
        c = T_base_lidar @ T_lidar_rect @ np.array([x, y - h / 2, z, 1.0])   # bottom centre -> centre
        boxes.append(LabelledBox("car", c[:3], np.array([length, w, h]), float(-ry - np.pi / 2),
                                 int(inst["num_lidar_pts"])))
    return RecordedFrame(pts, T_base_lidar, {"CAM2": image}, {"CAM2": K}, {"CAM2": T_cam_lidar}, boxes,
                         name=root.name)


def load_nuscenes(root: Path) -> RecordedFrame:
    """The nuScenes keyframe: six cameras, a 360° scan and 69 labelled boxes (in the ego frame on output)."""
    root = Path(root)
    meta = json.loads((root / "sample_info.json").read_text())
    info = meta["data_list"][0]
    names = {v: k for k, v in meta["metainfo"]["categories"].items()}
    lidar = info["lidar_points"]
    pts = np.fromfile(root / lidar["lidar_path"], np.float32).reshape(-1, lidar["num_pts_feats"])
    T_base_lidar = np.array(lidar["lidar2ego"])
    images, K, T = {}, {}, {}
    for cam, c in info["images"].items():
        path = root / c["img_path"]
        if not path.exists():
            continue
        images[cam] = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        K[cam] = np.array(c["cam2img"])[:3, :3]
        T[cam] = np.array(c["lidar2cam"])
    boxes = []
    for inst in info["instances"]:
        x, y, z, length, w, h, yaw = inst["bbox_3d"]
        c = T_base_lidar @ np.array([x, y, z, 1.0])
        yaw_base = yaw + np.arctan2(T_base_lidar[1, 0], T_base_lidar[0, 0])
        boxes.append(LabelledBox(names.get(inst["bbox_label_3d"], "unknown"), c[:3], np.array([length, w, h]),
                                 float(yaw_base), int(inst["num_lidar_pts"])))
    return RecordedFrame(pts, T_base_lidar, images, K, T, boxes, name=root.name,
                         body_box=NUSCENES_EGO_BOX.copy())


def load_frame(path: Path) -> RecordedFrame:
    """Load a recorded frame folder by its layout: nuScenes (`sample_info.json`) or KITTI (`*_info.json`).

    Raises:
        ValueError: when the folder holds neither.
    """
    path = Path(path)
    if (path / "sample_info.json").is_file():
        return load_nuscenes(path)
    if any(path.glob("*_info.json")):
        return load_kitti(path)
    raise ValueError(f"{path}: neither a nuScenes (sample_info.json) nor a KITTI (*_info.json) frame")

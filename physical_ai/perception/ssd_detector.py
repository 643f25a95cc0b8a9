"""Camera people detector for real images: MobileNetV2-SSD trained on Open Images (MediaPipe's Objectron detector).

OpenCV's HOG detector found 0 of the 21 pedestrians within 40 m in the six nuScenes cameras; this network finds
about half of them with a handful of false boxes (`physai perception eval --camera-people`). Its weights ship
inside a package: the npm package `@mediapipe/objectron` (Apache-2.0) packs the TFLite model into its asset file.
`install_weights` (run by `make venv`, or `physai perception install-detector`) takes it from the package registry
once, checks the tarball's npm integrity hash and writes the model beside the Python environment; nothing is
downloaded at run time, and without the file the detector reports itself unavailable.

The network sees a 300x300 image. A whole 1600x900 frame shrinks a pedestrian at 30 m to 20 pixels, below its
smallest anchor, so besides the whole image it looks at square tiles across the middle rows, where a level camera
sees the horizon and people at range stand (`tile_px`).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import sys
import tarfile
import urllib.request
from pathlib import Path

import cv2
import numpy as np

NPM_TARBALL = "https://registry.npmjs.org/@mediapipe/objectron/-/objectron-0.4.1675468480.tgz"
NPM_INTEGRITY = "sha512-IoWuW0ojc9GaSW6UoDCIXgwjLSqTEcR5w8NYuGH+R5+q+nKzS7KOIGfY/eyx4DttReumb398W6+PpW0DQ2Rs/w=="
MODEL_NAME = "ssd_mobilenetv2_oidv4_fp16.tflite"
LABELS_NAME = "oidv4_labels.txt"
INPUT_PX = 300
# Box decoding and anchors of this model (MediaPipe's objectron detection graph, the TF Object Detection API's SSD).
BOX_SCALE = np.array([10.0, 10.0, 5.0, 5.0])        # y, x, h, w
ANCHOR_STRIDES = (16, 32, 64, 128, 256, 512)
ANCHOR_RATIOS = (1.0, 2.0, 0.5, 3.0, 0.3333)
ANCHOR_SCALES = (0.2, 0.95)


def weights_dirs() -> list[Path]:
    """Where the model is looked for, in order: beside the Python environment, then the user's data folder."""
    return [Path(sys.prefix) / "share" / "physical_ai_stack" / "detectors",
            Path.home() / ".local" / "share" / "physical_ai_stack" / "detectors"]


def find_weights() -> Path | None:
    """The installed model file, or None."""
    return next((d / MODEL_NAME for d in weights_dirs() if (d / MODEL_NAME).is_file()), None)


def install_weights(dest: Path | None = None, url: str = NPM_TARBALL, timeout_s: float = 120.0) -> Path:
    """Take the model out of its npm package and write it (with its label map) to `dest`; returns the model path.

    Args:
        dest: target folder; default the first writable of `weights_dirs()`.
        url: the package tarball.
        timeout_s: network timeout [s].

    Raises:
        RuntimeError: the tarball does not match its integrity hash, or does not hold the model.
    """
    if dest is None:
        dest = next((d for d in weights_dirs() if _writable(d)), weights_dirs()[-1])
    with urllib.request.urlopen(url, timeout=timeout_s) as r:
        blob = r.read()
    algo, digest = NPM_INTEGRITY.split("-", 1)
    if base64.b64encode(hashlib.new(algo, blob).digest()).decode() != digest:
        raise RuntimeError(f"{url}: integrity check failed (expected {NPM_INTEGRITY})")
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        loader = tar.extractfile("package/objectron_solution_packed_assets_loader.js").read().decode()
        packed = tar.extractfile("package/objectron_solution_packed_assets.data").read()
    # The loader lists each packed file as {"filename": ..., "start": ..., "end": ...}.
    files = {Path(m[0]).name: packed[int(m[1]):int(m[2])] for m in
             re.findall(r'"filename":\s*"([^"]+)",\s*"start":\s*(\d+),\s*"end":\s*(\d+)', loader)}
    model = files.get("object_detection_ssd_mobilenetv2_oidv4_fp16.tflite")
    labels = files.get("object_detection_oidv4_labelmap.txt")
    if model is None or labels is None or model[4:8] != b"TFL3":
        raise RuntimeError(f"{url}: no TFLite detector in the package's assets (found {sorted(files)})")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / LABELS_NAME).write_bytes(labels)
    (dest / MODEL_NAME).write_bytes(model)
    (dest / "SOURCE.json").write_text(json.dumps({"package": url, "integrity": NPM_INTEGRITY,
                                                  "license": "Apache-2.0"}, indent=1))
    return dest / MODEL_NAME


def _writable(d: Path) -> bool:
    """Whether `d` exists and is writable, or could be created."""
    while not d.exists():
        d = d.parent
    return d.is_dir() and os.access(d, os.W_OK)


def ssd_anchors() -> np.ndarray:
    """The model's 1917 anchors (x, y, w, h), normalised, in its output order (layer, row, column, shape)."""
    n, (lo, hi) = len(ANCHOR_STRIDES), ANCHOR_SCALES
    scales = [lo + (hi - lo) * i / (n - 1) for i in range(n)] + [1.0]
    out = []
    for i, stride in enumerate(ANCHOR_STRIDES):
        fm = int(np.ceil(INPUT_PX / stride))
        if i == 0:      # the lowest layer has three boxes: a small square and the two 2:1 shapes
            shapes = [(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)]
        else:           # all ratios, and a square between this layer's scale and the next
            shapes = [(scales[i], a) for a in ANCHOR_RATIOS] + [(np.sqrt(scales[i] * scales[i + 1]), 1.0)]
        wh = np.array([(s * np.sqrt(a), s / np.sqrt(a)) for s, a in shapes])
        ys, xs = np.mgrid[0:fm, 0:fm]
        centres = np.column_stack([(xs.ravel() + 0.5) / fm, (ys.ravel() + 0.5) / fm])
        out.append(np.concatenate([np.repeat(centres, len(shapes), axis=0), np.tile(wh, (fm * fm, 1))], axis=1))
    return np.concatenate(out)


def nms(boxes: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression of (K, 5) boxes (x0, y0, x1, y1, score), best first."""
    order = np.argsort(-boxes[:, 4])
    keep = []
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while len(order):
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.clip(np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]), 0, None)
        h = np.clip(np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]), 0, None)
        inter = w * h
        order = rest[inter / (area[i] + area[rest] - inter + 1e-9) < iou]
    return np.array(keep, int)


class SsdPersonDetector:
    """People boxes from the Open Images SSD, on the whole image and on tiles across its middle rows.

    Same interface as the HOG `PersonDetector` (`available`, `detect`), without its window check inside the LiDAR
    cycle: one look costs 20 ms here (`cycle_roi_check` False).
    """

    cycle_roi_check = False

    def __init__(self, tile_px: int = 0, score_threshold: float = 0.3, model_path: Path | None = None,
                 nms_iou: float = 0.4) -> None:
        """Load the model (one inference thread).

        Args:
            tile_px: side of the square tiles looked at besides the whole image; 0 = the whole image only [px].
            score_threshold: lowest person score kept (0-1).
            model_path: the TFLite file; default `find_weights()`.
            nms_iou: overlap above which the weaker of two boxes is dropped.
        """
        self.tile_px, self.threshold, self.nms_iou = int(tile_px), float(score_threshold), float(nms_iou)
        path = model_path or find_weights()
        self.available = path is not None and Path(path).is_file()
        self.unavailable_reason = "" if self.available else (
            "camera people detector weights not installed (run `physai perception install-detector`)")
        if not self.available:
            return
        from ai_edge_litert.interpreter import Interpreter
        self._net = Interpreter(model_path=str(path), num_threads=1)
        self._net.allocate_tensors()
        self._in = self._net.get_input_details()[0]["index"]
        out = {d["name"]: d["index"] for d in self._net.get_output_details()}
        self._boxes_out, self._scores_out = out["raw_outputs/box_encodings"], out["raw_outputs/class_predictions"]
        labels = (Path(path).parent / LABELS_NAME).read_text().split("\n")
        self._person = labels.index("Person")
        self._anchors = ssd_anchors()

    def detect(self, image: np.ndarray, bgr: bool = False) -> np.ndarray:
        """People boxes (K, 5): x0, y0, x1, y1 in full-resolution pixels and the score (0-1)."""
        if not self.available or image.size == 0:
            return np.zeros((0, 5))
        h, w = image.shape[:2]
        found = [self._run(image, (0, 0, w, h), bgr)]
        if self.tile_px > 0 and min(h, w) > self.tile_px:
            s = self.tile_px
            y0 = (h - s) // 2
            n = int(np.ceil((w - s) / (0.8 * s))) + 1          # at least 20 % overlap between neighbours
            for x0 in np.linspace(0, w - s, n).round().astype(int):
                found.append(self._run(image, (x0, y0, x0 + s, y0 + s), bgr))
        boxes = np.concatenate(found)
        return boxes[nms(boxes, self.nms_iou)] if len(boxes) else boxes

    def _run(self, image: np.ndarray, roi: tuple[int, int, int, int], bgr: bool) -> np.ndarray:
        """Person boxes (K, 5) in `roi` (x0, y0, x1, y1) of `image`, in image pixels, before suppression."""
        x0, y0, x1, y1 = roi
        tile = cv2.resize(image[y0:y1, x0:x1, :3], (INPUT_PX, INPUT_PX), interpolation=cv2.INTER_AREA)
        if bgr:
            tile = tile[:, :, ::-1]
        self._net.set_tensor(self._in, (tile.astype(np.float32) * (2 / 255.0) - 1.0)[None])
        self._net.invoke()
        logit = self._net.get_tensor(self._scores_out)[0, :, self._person]
        keep = 1 / (1 + np.exp(-logit)) > self.threshold
        if not keep.any():
            return np.zeros((0, 5))
        raw = self._net.get_tensor(self._boxes_out)[0][keep] / BOX_SCALE
        a = self._anchors[keep]
        cx, cy = raw[:, 1] * a[:, 2] + a[:, 0], raw[:, 0] * a[:, 3] + a[:, 1]
        bw, bh = np.exp(raw[:, 3]) * a[:, 2], np.exp(raw[:, 2]) * a[:, 3]
        sx, sy = x1 - x0, y1 - y0
        return np.column_stack([x0 + (cx - bw / 2) * sx, y0 + (cy - bh / 2) * sy, x0 + (cx + bw / 2) * sx,
                                y0 + (cy + bh / 2) * sy, 1 / (1 + np.exp(-logit[keep]))])


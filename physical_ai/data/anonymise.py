"""Anonymisation: people in camera images and identifiers in text.

People. Each image is masked where a person is, from two sources:
1. the stack's own detections (`/perception/obstacles`, LiDAR tracks): every person-like track (classified person,
   or person-sized and not static) nearest in time to the image is moved to the image's time along its velocity,
   grown to a whole person (a close person's head is above the LiDAR's rings: the box reaches `person_height_m`,
   and at least `person_width_m` wide) plus `margin_m`, and its 3-D box is projected into the image through /tf
   (the obstacle frame at the detection's time, via the fixed `odom` frame, into the camera at the image's time);
2. an image person detector (the perception stack's: the Open Images SSD by default, or OpenCV's HOG) for people no
   LiDAR sees (out of its range or view); its boxes are padded by 15 %.
The masked pixels are blurred beyond recognition (Gaussian, sigma a quarter of the box) or filled.

Identifiers. Text (task strings, topic strings) is kept, scrubbed (words that look like identifiers: host names,
IP/MAC addresses, e-mail addresses, serial numbers, UUIDs, and the configured site/person/robot names, each replaced
by a keyed hash) or hashed or removed whole, per topic; recording paths are replaced by their keyed hash. A keyed
hash (HMAC-SHA256 under a secret key) maps the same identifier to the same token within a dataset (episodes from
one robot stay linkable) without revealing it; without the key it cannot be reversed by trying candidates.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

import cv2
import numpy as np

from physical_ai.perception.lidar import CLASS_PART, CLASS_PERSON, CLASS_STATIC

# identifier-like words: e-mail, IPv4, MAC, UUID, host names (dotted, or name-with-digits), serial numbers
_PATTERNS = [
    re.compile(r"\b[\w.+-]+@[\w-]+(\.[\w-]+)+\b"),
    re.compile(r"\b\d{1,3}(\.\d{1,3}){3}\b"),
    re.compile(r"\b[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}\b"),
    re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),
    re.compile(r"\b[a-zA-Z][\w-]*(\.[a-zA-Z][\w-]*)+\.[a-zA-Z]{2,}\b"),
    re.compile(r"\b(?:SN|S/N|serial|Serial|SERIAL)[\s:#-]*[A-Z0-9-]{3,}\b"),
    re.compile(r"\b(?=[A-Za-z-]*\d)(?=[\d-]*[A-Za-z])[A-Za-z0-9]+(?:-[A-Za-z0-9]+)+\b"),
    re.compile(r"\b(?=[A-Z]*\d)(?=\d*[A-Z])[A-Z0-9]{6,}\b"),
]


class Scrubber:
    """Keyed hashing of identifiers and text policies (see the module docstring)."""

    def __init__(self, key: bytes | None = None, identifiers: tuple[str, ...] = ()) -> None:
        self.key_is_random = key is None
        self._key = key if key is not None else secrets.token_bytes(32)
        # longest first, so "Berlin plant 2" is replaced before "Berlin"
        self._names = sorted((n for n in identifiers if n), key=len, reverse=True)

    @property
    def key(self) -> bytes:
        """The hash key (random unless given): workers hashing for the same dataset need the same one."""
        return self._key

    def token(self, value: str) -> str:
        """The keyed hash of an identifier: `anon-` and 12 hex digits of HMAC-SHA256."""
        return "anon-" + hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()[:12]

    def scrub(self, text: str) -> tuple[str, int]:
        """Text with configured names and identifier-like words replaced by tokens; returns (text, replacements)."""
        count = 0
        for name in self._names:
            pattern = re.compile(re.escape(name), re.IGNORECASE)
            text, n = pattern.subn(lambda m: self.token(m.group(0).lower()), text)
            count += n
        for pattern in _PATTERNS:
            text, n = pattern.subn(lambda m: m.group(0) if m.group(0).startswith("anon-") else self.token(m.group(0)),
                                   text)
            count += n
        return text, count

    def apply(self, text: str, policy: str) -> tuple[str, int]:
        """`keep`, `scrub`, `hash` (whole text) or `remove` (empty); returns (text, identifiers replaced)."""
        if policy == "keep":
            return text, 0
        if policy == "hash":
            return (self.token(text), 1) if text else (text, 0)
        if policy == "remove":
            return "", int(bool(text))
        return self.scrub(text)


@dataclass(frozen=True)
class PersonBox:
    """A person-like obstacle: centre, size (l, w, h), yaw and velocity, in its message's frame."""

    center: np.ndarray
    size: np.ndarray
    yaw: float
    velocity: np.ndarray


def person_like(classification: int, size: np.ndarray) -> bool:
    """A track that may be a person: classified so, or person-sized and not classified static or a part."""
    if classification == CLASS_PERSON:
        return True
    if classification in (CLASS_STATIC, CLASS_PART):
        return False
    return float(max(size[0], size[1])) <= 1.2 and 0.3 <= float(size[2]) <= 2.4


def box_points(box: PersonBox, dt: float, height: float, width: float, margin: float) -> np.ndarray:
    """Points on the edges of a person's grown box at `dt` seconds after its detection, (N, 3) in its frame."""
    half_l = max(box.size[0], width) / 2 + margin
    half_w = max(box.size[1], width) / 2 + margin
    bottom = box.center[2] - box.size[2] / 2 - margin
    top = max(box.center[2] + box.size[2] / 2, bottom + margin + height) + margin
    c, s = np.cos(box.yaw), np.sin(box.yaw)
    corners = []
    for dx, dy in ((-half_l, -half_w), (half_l, -half_w), (half_l, half_w), (-half_l, half_w)):
        for z in (bottom, top):
            corners.append([c * dx - s * dy, s * dx + c * dy, z])
    corners = np.asarray(corners)
    corners[:, :2] += box.center[:2] + box.velocity[:2] * dt
    # edges sampled densely, so a box partly behind the camera still projects its visible part
    t = np.linspace(0.0, 1.0, 6)[:, None, None]
    a, b = corners[:, None, :], corners[None, :, :]
    return (a + t[..., None] * (b - a)).reshape(-1, 3)


def project_mask(points_cam: np.ndarray, K: np.ndarray, shape: tuple[int, int], mask: np.ndarray) -> bool:
    """Fill the convex hull of camera-frame points (in front of it) into `mask`; True if anything was filled."""
    front = points_cam[points_cam[:, 2] > 0.05]
    if len(front) < 3:
        return False
    uv = front[:, :2] / front[:, 2:3] * np.array([K[0, 0], K[1, 1]]) + np.array([K[0, 2], K[1, 2]])
    h, w = shape
    if (uv[:, 0].max() < 0 or uv[:, 0].min() >= w or uv[:, 1].max() < 0 or uv[:, 1].min() >= h):
        return False
    limit = 4.0 * max(h, w)  # far off-image points (near the camera plane) only widen the hull: clamp
    hull = cv2.convexHull(np.clip(uv, -limit, limit).astype(np.float32)).astype(np.int32)
    cv2.fillConvexPoly(mask, hull, 1)
    return True


def detector_mask(image: np.ndarray, detector: object, mask: np.ndarray, pad: float = 0.15) -> int:
    """Fill padded image-detector person boxes into `mask`; returns how many."""
    boxes = detector.detect(image)
    h, w = mask.shape
    for x0, y0, x1, y1, _ in boxes:
        px, py = (x1 - x0) * pad, (y1 - y0) * pad
        mask[max(int(y0 - py), 0):min(int(y1 + py) + 1, h), max(int(x0 - px), 0):min(int(x1 + px) + 1, w)] = 1
    return len(boxes)


def obscure(image: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    """The image with masked pixels blurred beyond recognition (`blur`) or filled with grey (`mask`)."""
    if not mask.any() or mode == "off":
        return image
    out = image.copy()
    if mode == "mask":
        out[mask.astype(bool)] = 128
        return out
    ys, xs = np.nonzero(mask)
    extent = max(int(ys.max() - ys.min()), int(xs.max() - xs.min()), 8)
    sigma = max(extent / 4.0, 4.0)
    # a small image blurred then enlarged: the same strong blur, a fraction of the cost
    scale = min(1.0, 8.0 / sigma)
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1.0 else image
    blurred = cv2.GaussianBlur(small, (0, 0), sigma * scale)
    if scale < 1.0:
        blurred = cv2.resize(blurred, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    keep = mask.astype(bool)
    out[keep] = blurred[keep]
    return out

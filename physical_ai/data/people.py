"""People masks for the images of one recording: the stack's LiDAR person tracks projected, and an image detector.

See `physical_ai.data.anonymise` for the method; this module finds, for each recorded image, the detections
nearest in time, the camera's intrinsics and the transforms, and applies it.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from physical_ai import convert
from physical_ai.data.anonymise import PersonBox, box_points, detector_mask, obscure, person_like, project_mask
from physical_ai.data.lerobot_format import DatasetError
from physical_ai.data.mapping import DatasetMapping
from physical_ai.data.mcap_read import Message
from physical_ai.tf import TransformBuffer

NS = 1_000_000_000
FIXED_FRAMES = ("odom", "map", "world")


def rgb_from_message(msg: object) -> np.ndarray:
    """Image (rgb8, bgr8, mono8) or CompressedImage (jpeg, png) message -> (H, W, 3) uint8 RGB."""
    if hasattr(msg, "format"):  # sensor_msgs/CompressedImage, as camera drivers' image_transport records it
        import cv2

        decoded = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
        if decoded is None:
            raise ValueError(f"compressed image ({msg.format!r}) does not decode")
        return np.ascontiguousarray(decoded[:, :, ::-1])
    array = convert.image_to_numpy(msg)
    encoding = msg.encoding
    if encoding == "rgb8":
        return np.ascontiguousarray(array)
    if encoding == "bgr8":
        return np.ascontiguousarray(array[:, :, ::-1])
    if encoding == "mono8":
        return np.repeat(array[:, :, None], 3, axis=2)
    raise ValueError(f"image encoding {encoding!r} not usable as a colour image (rgb8, bgr8, mono8)")


class PeopleMasker:
    """Masks people in a recording's images (`anonymise` per image message)."""

    def __init__(self, mapping: DatasetMapping, messages: list[Message]) -> None:
        self.config = mapping.anonymise
        topic = self.config.detections_topic
        self.detections = sorted((m for m in messages if m.topic == topic), key=lambda m: m.time_ns)
        self.times = np.array([m.time_ns for m in self.detections], np.int64)
        self.infos = {}
        for image in mapping.images.values():
            info_topic = mapping.camera_info_topic(image.topic)
            self.infos[image.topic] = next((m for m in messages if m.topic == info_topic), None)
        self._detector = None
        if self.config.detector == "ssd":
            from physical_ai.perception.ssd_detector import SsdPersonDetector

            self._detector = SsdPersonDetector(tile_px=self.config.detector_tile_px)
            if not self._detector.available:    # a build must not pass people it was configured to look for
                raise DatasetError(f"anonymise.detector ssd: {self._detector.unavailable_reason}")
        elif self.config.detector == "hog":
            from physical_ai.perception.camera import PersonDetector

            self._detector = PersonDetector(frame_scale=0.5)

    def mask(self, image: np.ndarray, message: Message, tf: TransformBuffer) -> tuple[np.ndarray, Counter]:
        """(H, W) uint8 person mask of one image and which sources contributed (`lidar`, `detector`)."""
        used: Counter = Counter()
        mask = np.zeros(image.shape[:2], np.uint8)
        t_img = message.time_ns
        info = self.infos.get(message.topic)
        camera_frame = message.msg.header.frame_id
        if info is not None and len(self.times):
            K = convert.camera_info_to_matrix(info.msg)
            i = int(np.searchsorted(self.times, t_img))
            near = [j for j in (i - 1, i) if 0 <= j < len(self.times)]
            j = min(near, key=lambda k: abs(int(self.times[k]) - t_img))
            if abs(int(self.times[j]) - t_img) <= self.config.max_detection_gap_s * NS:
                if self._project(self.detections[j], t_img, camera_frame, K, tf, mask):
                    used["lidar"] += 1
        if self._detector is not None and self._detector.available:
            if detector_mask(image, self._detector, mask):
                used["detector"] += 1
        return mask, used

    def _project(self, detection: Message, t_img: int, camera_frame: str, K: np.ndarray, tf: TransformBuffer,
                 mask: np.ndarray) -> bool:
        frame = detection.msg.header.frame_id
        t_det = detection.time_ns
        try:
            fixed = next((f for f in FIXED_FRAMES if tf.can_transform(f, frame, t_det)
                          and tf.can_transform(camera_frame, f, t_img)), None)
            if fixed is not None:  # the detection's frame at its time -> the world -> the camera at the image's
                T = tf.lookup(camera_frame, fixed, t_img) @ tf.lookup(fixed, frame, t_det)
            else:
                T = tf.lookup(camera_frame, frame, t_img)
        except (LookupError, ValueError):
            return False
        dt = (t_img - t_det) / NS
        c = self.config
        filled = False
        for o in detection.msg.obstacles:
            size = np.array([o.size.x, o.size.y, o.size.z])
            if not person_like(int(o.classification), size):
                continue
            box = PersonBox(np.array([o.pose.position.x, o.pose.position.y, o.pose.position.z]), size,
                            convert.quaternion_to_yaw(o.pose.orientation), np.array([o.velocity.x, o.velocity.y]))
            points = box_points(box, dt, c.person_height_m, c.person_width_m, c.margin_m)
            cam = points @ T[:3, :3].T + T[:3, 3]
            filled |= project_mask(cam, K, mask.shape, mask)
        return filled

    def anonymise(self, message: Message, tf: TransformBuffer) -> tuple[np.ndarray, Counter]:
        """The image of `message`, RGB, with people obscured; and which sources found them."""
        image = rgb_from_message(message.msg)
        if self.config.people == "off":
            return image, Counter()
        mask, used = self.mask(image, message, tf)
        return obscure(image, mask, self.config.people), used

"""One perception cycle: LiDAR/scan/depth points -> clusters -> camera fusion -> tracks, grid and parts.

The node, the tests on recorded data (KITTI, nuScenes) and the benchmark all call `FusionPipeline.process`, so
what is measured is what runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from physical_ai.perception.camera import CameraModel, PersonDetector, fuse_clusters
from physical_ai.perception.classify import ClassifyConfig, classify_clusters, could_be_person, split_rows, walking
from physical_ai.perception.detector_thread import DetectorThread
from physical_ai.perception.lidar import (
    CLASS_PART,
    CLASS_PERSON,
    CLASS_STATIC,
    CLASS_UNKNOWN,
    SENSOR_CAMERA,
    SENSOR_DEPTH,
    SENSOR_LIDAR,
    Cluster,
    Segmentation,
    SegmentationConfig,
    segment,
)
from physical_ai.perception.occupancy import OccupancyConfig, build_grid
from physical_ai.perception.part_memory import PartMemory, PartMemoryConfig
from physical_ai.perception.parts import Part, PartsConfig, detect_parts
from physical_ai.perception.self_filter import outside_spheres
from physical_ai.perception.ssd_detector import SsdPersonDetector
from physical_ai.perception.tracking import Track, Tracker, TrackerConfig


@dataclass
class CameraFrame:
    """One camera image (HxWx3 uint8) with its model; image may be None for geometry-only fusion."""

    image: np.ndarray | None
    camera: CameraModel
    name: str = "camera"                  # which camera (the detector keeps the newest detections per camera)
    bgr: bool = False                     # channel order: a driver's bgr8 image is used as it is, without a copy


@dataclass
class FrameInput:
    """Everything one cycle uses, already in the robot frame."""

    stamp_ns: int
    clouds: list[np.ndarray] = field(default_factory=list)   # (N, 3) 3D LiDAR points
    scans: list[np.ndarray] = field(default_factory=list)    # (N, 3) 2D scan points (never ground)
    depth: list[np.ndarray] = field(default_factory=list)    # (N, 3) back-projected depth points
    cameras: list[CameraFrame] = field(default_factory=list)
    T_world_base: np.ndarray | None = None                    # robot pose in the tracking frame
    # The robot's own body at this frame's time, as spheres (centres (S, 3) in the robot frame, radii (S,)): range
    # and depth points inside them are the robot itself, not obstacles (see perception/self_filter.py).
    body_spheres: tuple[np.ndarray, np.ndarray] | None = None
    # The depth camera's optical centre in the robot frame (3,): with body_spheres, what the robot hides from it.
    depth_origin: np.ndarray | None = None


@dataclass
class ObstacleEstimate:
    """A tracked obstacle in the robot frame."""

    track_id: int
    cluster: Cluster
    velocity: np.ndarray                  # (2,) [m/s] in the robot frame
    predicted: np.ndarray                 # (steps, 2) predicted centres in the robot frame
    age: int
    moving: bool


@dataclass
class FrameResult:
    """Outputs of one cycle."""

    stamp_ns: int
    obstacles: list[ObstacleEstimate]
    segmentation: Segmentation
    people_boxes: list[np.ndarray]        # per camera, (K, 5)
    grid: np.ndarray | None
    parts: list[Part] | None              # None: no part search this cycle (no depth in the frame, parts disabled)


@dataclass
class PipelineConfig:
    """Configuration of every stage."""

    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    classify: ClassifyConfig = field(default_factory=ClassifyConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    occupancy: OccupancyConfig = field(default_factory=OccupancyConfig)
    parts: PartsConfig | None = None      # None: no part detection (mobile robots)
    people_detector: str = "ssd"          # ssd | hog | off (params.py)
    people_tile_px: int = 0               # SSD tiles besides the whole image (ssd_detector.py)
    people_threshold: float = 0.3         # SSD person score
    hog_frame_scale: float = 0.5
    people_rate_hz: float = 0.0           # > 0: the detector runs in its own thread at this rate (detector_thread.py)
    camera_people_max_age_s: float = 0.5  # ... and its detections are fused while no older than this
    occupancy_enabled: bool = True
    camera_person_size: tuple[float, float, float] = (0.6, 0.6, 1.7)
    camera_person_max_range_m: float = 15.0   # camera-only people farther than this are not reported
    part_catalogue: np.ndarray | None = None  # (K, 3) sizes of the cell's parts, see `mark_parts`
    part_memory: PartMemoryConfig | None = None  # parts the robot hides keep their last clear fit (part_memory.py)


def _explained(boxes: np.ndarray, box: np.ndarray) -> bool:
    """Whether most of one of `boxes` (K, 4) lies inside `box` (x0, y0, x1, y1), or most of `box` inside one."""
    w = np.clip(np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0]), 0, None)
    h = np.clip(np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1]), 0, None)
    areas = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1.0)
    return bool(np.any(w * h / np.minimum(areas, max((box[2] - box[0]) * (box[3] - box[1]), 1.0)) > 0.5))


def people_detector(cfg: PipelineConfig) -> PersonDetector | SsdPersonDetector | None:
    """The configured camera people detector, or None for `off`.

    Raises:
        ValueError: for an unknown detector name.
    """
    if cfg.people_detector == "ssd":
        return SsdPersonDetector(tile_px=cfg.people_tile_px, score_threshold=cfg.people_threshold)
    if cfg.people_detector == "hog":
        return PersonDetector(frame_scale=cfg.hog_frame_scale)
    if cfg.people_detector == "off":
        return None
    raise ValueError(f"people_detector {cfg.people_detector!r}: ssd | hog | off")


def mark_parts(clusters: list[Cluster], parts: list[Part], table_z: float, catalogue: np.ndarray | None = None,
               tolerance_m: float = 0.015) -> None:
    """Classify as CLASS_PART the clusters that are a known part resting on the table.

    A detected part counts only when its fitted size fits an entry of the cell's `catalogue` ((K, 3): shorter and
    longer footprint side, height [m]): the same height within `tolerance_m`, a footprint no larger (plus
    `tolerance_m`; the arm above a part hides some of it from an overhead camera, never adds to it). The fitter makes
    a "part" of anything on the table, a hand laid on it included, so the size of the workpieces the cell handles is
    what identifies them (None: every detected part counts). A cluster is that part when it stands on the table (its
    bottom within `tolerance_m` of `table_z`), its centre lies within the part's footprint, and it is no taller than
    the part. Anything else near a part, such as a hand reaching in, stays an obstacle. The cluster's width is not
    compared: a few points of the gripper left beside a part widen its cluster without making it anything else.
    """
    known = []
    for p in parts:
        dims = np.array([min(p.size[0], p.size[1]), max(p.size[0], p.size[1]), p.size[2]])
        fits = (np.all(dims[:2] <= catalogue[:, :2] + tolerance_m, axis=1)
                & (np.abs(dims[2] - catalogue[:, 2]) <= tolerance_m)) if catalogue is not None else [True]
        if np.any(fits):
            known.append(p)
    for c in clusters:
        if c.classification != CLASS_UNKNOWN or c.center[2] - c.size[2] / 2 > table_z + tolerance_m:
            continue
        for p in known:
            reach = 0.5 * float(np.hypot(p.size[0], p.size[1])) + tolerance_m
            if np.hypot(*(c.center[:2] - p.position[:2])) <= reach and c.size[2] <= p.size[2] + tolerance_m:
                c.classification = CLASS_PART
                break


class FusionPipeline:
    """Stateful perception pipeline (tracks and tactile memory persist across cycles)."""

    def __init__(self, cfg: PipelineConfig) -> None:
        self.cfg = cfg
        self.tracker = Tracker(cfg.tracker)
        self.detector = people_detector(cfg)
        self.detector_thread: DetectorThread | None = None     # started with the first image (see `_people`)
        self.part_memory = PartMemory(cfg.part_memory) if cfg.part_memory is not None else None

    def close(self) -> None:
        """Stop the detector thread, if any."""
        if self.detector_thread is not None:
            self.detector_thread.close()
            self.detector_thread = None

    def reset(self) -> None:
        """Forget tracks and remembered parts (a clock that jumped back, a new episode)."""
        self.tracker.reset()
        if self.part_memory is not None:
            self.part_memory.reset()

    def process(self, frame: FrameInput, with_grid: bool = True) -> FrameResult:
        """Run one cycle.

        Args:
            frame: the synchronised inputs.
            with_grid: also build the occupancy grid (a node publishes obstacles first and calls `occupancy` after).

        Returns:
            Tracked obstacles, the segmentation, people boxes, occupancy grid and parts.
        """
        # A frame without depth (one the colour camera triggered while depth was late, or the first after a reset)
        # says nothing about the parts: reported as an empty list, the policy planned on a table without parts.
        parts = None
        if self.cfg.parts is not None and frame.depth:
            # From the whole depth view, as the policy was trained.
            parts = detect_parts(np.concatenate(frame.depth), self.cfg.parts)
        fitted, hidden = parts or [], []
        if (parts is not None and self.part_memory is not None and frame.body_spheres is not None
                and frame.depth_origin is not None):
            # Fits the robot covers are not trusted; a part it hides keeps its last clear fit.
            parts = self.part_memory.update(parts, frame.stamp_ns, frame.body_spheres, frame.depth_origin)
            hidden = self.part_memory.hidden
        chunks, bits, no_ground = [], [], []
        for arrays, bit, ground_free in ((frame.clouds, SENSOR_LIDAR, False), (frame.depth, SENSOR_DEPTH, False),
                                         (frame.scans, SENSOR_LIDAR, True)):
            for a in arrays:
                a = np.asarray(a, np.float32)[:, :3]
                if frame.body_spheres is not None:
                    a = a[outside_spheres(a, *frame.body_spheres)]
                chunks.append(a)
                bits.append(np.full(len(a), bit, np.uint8))
                no_ground.append(np.full(len(a), ground_free))
        if chunks:
            points = np.concatenate(chunks)
            sensors = np.concatenate(bits)
            flags = np.concatenate(no_ground)
        else:
            points, sensors, flags = np.zeros((0, 3), np.float32), np.zeros(0, np.uint8), np.zeros(0, bool)
        seg = segment(points, self.cfg.segmentation, sensors, flags if flags.any() else None)
        classify_clusters(seg.clusters, self.cfg.segmentation.max_height, self.cfg.classify)
        clusters = split_rows(seg.clusters, seg.obstacle_points, self.cfg.classify)

        people_per_cam = []
        for cam in frame.cameras:
            people = self._people(cam, frame.stamp_ns)
            people_per_cam.append(people)
            seen = fuse_clusters(clusters, seg.obstacle_points, cam.camera, cam.image, people, self.cfg.classify,
                                 self.detector, bgr=cam.bgr)
            clusters += self._camera_only_people(clusters, seg, cam.camera, people, seen)

        if fitted or hidden:
            # Which obstacles are parts is judged without the robot: a gripper over a part merges with it otherwise.
            seen = fitted if frame.body_spheres is None else \
                detect_parts(points[sensors == SENSOR_DEPTH], self.cfg.parts)
            # A part the robot hides keeps its last clear fit: the gripper's remnants beside it widen its fit beyond
            # the catalogue, and the cluster there became an obstacle the arm backed away from mid-grasp (ROS, 100024).
            mark_parts(clusters, [*seen, *hidden], self.cfg.parts.table_z, self.cfg.part_catalogue)
        tracks = self.tracker.update(clusters, frame.stamp_ns, frame.T_world_base)
        self._person_evidence(tracks)
        obstacles = [self._estimate(t, frame.T_world_base) for t in tracks]
        result = FrameResult(frame.stamp_ns, obstacles, seg, people_per_cam, None, parts)
        if with_grid:
            self.occupancy(result)
        return result

    def occupancy(self, result: FrameResult) -> np.ndarray | None:
        """Build (once) and return the result's occupancy grid; None when occupancy is disabled."""
        if result.grid is None and self.cfg.occupancy_enabled:
            clusters = [ob.cluster for ob in result.obstacles]
            result.grid = self._grid(result.segmentation, clusters)
        return result.grid

    def _people(self, cam: CameraFrame, stamp_ns: int) -> np.ndarray:
        """People boxes (K, 5) for this frame's image.

        Detected now, or the camera's newest from the detector thread (this image is handed over for a later one).
        """
        none = np.zeros((0, 5))
        if self.detector is None or not self.detector.available or cam.image is None:
            return none
        if self.cfg.people_rate_hz <= 0:
            return self.detector.detect(cam.image, bgr=cam.bgr)
        if self.detector_thread is None:
            self.detector_thread = DetectorThread(self.detector.detect, self.cfg.people_rate_hz)
        self.detector_thread.submit(cam.name, stamp_ns, cam.image, cam.bgr)
        latest = self.detector_thread.latest(cam.name)
        if latest is None or abs(stamp_ns - latest[0]) > self.cfg.camera_people_max_age_s * 1e9:
            return none
        return latest[1]

    def _person_evidence(self, tracks: list[Track]) -> None:
        """A track once seen as a person stays one while its shape allows it (a walking person's wider footprint).

        The evidence is its shape on one frame, a camera detection fused with it, or its motion at walking speed.
        Frame by frame, a worker's class came and went with the shape of its points (legs apart, half hidden, an arm
        out): a fleet AMR gave way early only to tracks classed a person, and a worker whose track was unclassed
        on the frames that mattered walked into it (seed 200018 through the nodes).
        """
        for t in tracks:
            c = t.cluster
            if c.sensors == SENSOR_CAMERA or not could_be_person(c, self.cfg.classify):
                continue
            if c.classification == CLASS_PERSON:
                t.person = max(t.person, c.confidence)
            if walking(t.speed, t.age, self.cfg.classify):
                t.person = max(t.person, 0.8)
            if t.person > 0.0:
                c.classification, c.confidence = CLASS_PERSON, max(c.confidence, t.person)

    def _estimate(self, t: Track, T: np.ndarray | None) -> ObstacleEstimate:
        # A structure (longer than any vehicle) does not move: its centroid drifts as more of it comes into view or
        # is hidden, which the tracker reads as motion (an 11 m wall "moving" at 0.16 m/s held a fleet AMR back).
        still = t.cluster.classification == CLASS_STATIC
        velocity = np.zeros(2) if still else self.tracker.velocity_in_base(t, T)
        return ObstacleEstimate(track_id=t.id, cluster=t.cluster, velocity=velocity,
                                predicted=self.tracker.predict_positions(t, T, still), age=t.age,
                                moving=not still and t.age >= 3 and t.speed > self.cfg.tracker.moving_speed)

    def _camera_only_people(self, clusters: list[Cluster], seg: Segmentation, camera: CameraModel,
                            people: np.ndarray, seen: np.ndarray) -> list[Cluster]:
        """People seen by the camera but not by a range sensor, placed where their feet meet the ground.

        A person box that holds most of a range-sensor cluster's image box (`seen`), or lies mostly within one, is
        that cluster, which `fuse_clusters` has judged: one monocular box places a person at 20 m metres off, and made
        a second, wrongly placed person of every pedestrian the LiDAR already saw (14 on the nuScenes sample), and a
        person of a bag left on a barrier. Where the feet meet the
        ground is read from one pixel row, so the range error grows with the square of the range: farther than
        `camera_person_max_range_m` a camera-only person is not reported (a LiDAR sees people there).
        """
        out = []
        for x0, y0, x1, y1, score in people:
            if len(seen) and _explained(seen, np.array([x0, y0, x1, y1])):
                continue
            foot = camera.ground_point((x0 + x1) / 2, y1, seg.plane)
            if foot is None or np.hypot(foot[0], foot[1]) > self.cfg.camera_person_max_range_m:
                continue
            if any(np.linalg.norm(c.center[:2] - foot[:2]) < 1.0 and c.classification == CLASS_PERSON
                   for c in clusters):
                continue
            size = np.array(self.cfg.camera_person_size, float)
            center = np.array([foot[0], foot[1], foot[2] + size[2] / 2])
            out.append(Cluster(center=center, size=size, yaw=0.0, num_points=0, classification=CLASS_PERSON,
                               confidence=float(np.clip(0.5 + 0.25 * score, 0.5, 0.9)), sensors=SENSOR_CAMERA))
        return out

    def _grid(self, seg: Segmentation, clusters: list[Cluster]) -> np.ndarray:
        classes = np.array([c.classification for c in seg.clusters] + [CLASS_UNKNOWN], np.int64)
        point_class = classes[seg.point_labels]          # label -1 picks the trailing UNKNOWN
        sc = self.cfg.segmentation
        gi, gj = np.nonzero(seg.ground_cells)
        free = np.column_stack([sc.x_range[0] + (gi + 0.5) * sc.cell_size, sc.y_range[0] + (gj + 0.5) * sc.cell_size])
        pts = seg.obstacle_points[:, :2]
        extra = [c for c in clusters if c.point_index is None]     # camera-only people: paint their footprint
        if extra:
            pts = np.concatenate([pts, np.array([c.center[:2] for c in extra], np.float32)])
            point_class = np.concatenate([point_class, [c.classification for c in extra]])
        return build_grid(pts, point_class, free, self.cfg.occupancy)

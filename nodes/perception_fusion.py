"""perception_fusion: camera, depth, LiDAR/scan and tactile inputs fused into obstacles, occupancy, parts, contact.

Inputs (each optional; an empty topic name disables it): PointCloud2 LiDARs (`lidar_topics`, comma-separated),
LaserScans (`scan_topics`), RGB + CameraInfo, depth + CameraInfo, TactileState, /tf and /tf_static.
Every accepted message is validated (stamp not in the future nor older than its age limit, rate, finite points,
image size/encoding, known frames) and otherwise dropped with a counter on /diagnostics. A `SensorSync` bundles
the inputs around each trigger frame without ever stalling on a dead or late sensor; a bundle missing a configured
sensor is published with `degraded = true`.
"""

from __future__ import annotations

import array
import bisect
import collections
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import Point, Pose, PoseWithCovariance, Quaternion, Vector3
from nav_msgs.msg import OccupancyGrid
from physical_ai_stack.msg import DetectedPart, DetectedPartArray, Obstacle, ObstacleArray, TactileState
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, JointState, LaserScan, PointCloud2
from visualization_msgs.msg import Marker, MarkerArray

from physical_ai.convert import (
    camera_info_to_matrix,
    image_to_numpy,
    joint_state_to_dict,
    laserscan_to_xy,
    make_header,
    pointcloud2_to_xyz,
    stamp_to_ns,
)
from physical_ai.perception.camera import CameraModel, depth_to_points
from physical_ai.perception.lidar import CLASS_PERSON, CLASS_VEHICLE, SENSOR_CAMERA, SENSOR_DEPTH, SENSOR_LIDAR
from physical_ai.perception.params import PARAMS, pipeline_config
from physical_ai.perception.pipeline import CameraFrame, FrameInput, FusionPipeline
from physical_ai.perception.self_filter import BodySpheres
from physical_ai.perception.sync import SensorSpec, SensorSync
from physical_ai.perception.tactile import TactileConfig, TactileProcessor
from physical_ai.tf import TransformBuffer
from physical_ai_nodes._base import PhysaiNode, resolve_share_path, run_node
from physical_ai_nodes._tf import TfListener

# Images are processed newest-first: when a cycle runs longer than a frame period, older queued frames would only
# add latency (a queue of 5 at 15 Hz is 330 ms), so only the latest waits.
LATEST_FRAME_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST)
RATE_BURST = 3  # messages per sensor accepted back to back before max_rate_hz applies
_COLORS = {CLASS_PERSON: (1.0, 0.2, 0.2), CLASS_VEHICLE: (0.2, 0.4, 1.0)}


def _yaw_quaternion(yaw: float) -> Quaternion:
    return Quaternion(z=float(np.sin(yaw / 2)), w=float(np.cos(yaw / 2)))


def _topics(value: str) -> list[str]:
    return [t.strip() for t in value.split(",") if t.strip()]


class PerceptionFusion(PhysaiNode):
    """The perception fusion node."""

    def __init__(self) -> None:
        super().__init__("perception_fusion")
        p = self.param
        self.base_frame = p("base_frame", "base_link", "Frame of obstacles and occupancy")
        self.tracking_frame = p("tracking_frame", "odom", "Fixed frame for tracking; '' tracks in base_frame")
        self.tf_wait_ns = int(p("tf_wait_s", 0.1, "A frame waits at most this long for the tracking-frame pose at "
                                "its stamp (tf arriving after the sensor data) before it is dropped [s]",
                                (0.0, 1.0)) * 1e9)
        lidar_topics = _topics(p("lidar_topics", "lidar/points", "PointCloud2 topics, comma-separated"))
        scan_topics = _topics(p("scan_topics", "", "LaserScan topics, comma-separated"))
        image_topic = p("image_topic", "camera/color/image_raw", "RGB image topic ('' disables)")
        info_topic = p("camera_info_topic", "camera/color/camera_info", "CameraInfo of the RGB image")
        depth_topic = p("depth_topic", "", "Depth image topic, 32FC1 [m] or 16UC1 [mm] ('' disables)")
        depth_info_topic = p("depth_info_topic", "camera/depth/camera_info", "CameraInfo of the depth image")
        tactile_topic = p("tactile_topic", "", "TactileState topic ('' disables)")
        range_age = p("lidar_max_age_s", 0.5, "LiDAR/scan data older than this is stale [s]", (0.01, 10.0))
        camera_age = p("camera_max_age_s", 0.5, "Camera/depth data older than this is stale [s]", (0.01, 10.0))
        slop = p("sync_slop_s", 0.05, "Largest stamp difference for matching sensors [s]", (0.0, 1.0))
        max_wait = p("sync_max_wait_s", 0.02, "Longest a LiDAR frame waits for a late camera [s]", (0.0, 0.5))
        self.future_tol_ns = int(p("future_tolerance_s", 0.05, "Stamps this far ahead of now are rejected [s]",
                                   (0.0, 5.0)) * 1e9)
        self.max_rate_hz = p("max_rate_hz", 50.0, "Messages faster than this per sensor (on average, bursts of "
                             f"{RATE_BURST}) are dropped [Hz]",
                             (1.0, 10000.0))
        self.marker_period_ns = int(p("marker_period_s", 0.2, "Period of /perception/markers [s]",
                                      (0.0, 60.0)) * 1e9)
        self._last_markers_ns = 0
        self.grid_period_ns = int(p("occupancy_period_s", 0.0, "Period of /perception/occupancy [s]: the grid is what "
                                    "detours are planned around (what moves comes from /perception/obstacles); "
                                    "0 = every cycle", (0.0, 60.0)) * 1e9)
        self._last_grid_ns = -self.grid_period_ns
        self.depth_stride = p("depth_stride", 4, "Depth pixel subsampling step", (1, 32))
        self.depth_max_range = p("depth_max_range_m", 6.0, "Depth returns farther than this are ignored [m]",
                                 (0.1, 100.0))
        # The pipeline's parameters come from the one table the ROS-free core reads too (perception/params.py).
        self.pipeline = FusionPipeline(pipeline_config(
            {q.name: p(q.name, q.default, q.description, q.value_range) for q in PARAMS}))
        detector = self.pipeline.detector
        if detector is not None and not detector.available:      # people then come from range sensors only
            self.get_logger().error(f"people_detector {self.pipeline.cfg.people_detector}: "
                                    f"{detector.unavailable_reason}")
        self.tactile = TactileProcessor(TactileConfig(
            taxel_pitch=p("taxel_pitch_m", 0.004, "Taxel spacing [m]", (1e-4, 0.1)),
            contact_on_n=p("contact_on_n", 0.5, "Force that starts a contact [N]", (0.0, 1000.0)),
            contact_off_n=p("contact_off_n", 0.3, "Force that ends a contact [N]", (0.0, 1000.0))))

        self.tf_buffer = TransformBuffer()
        self.tf_listener = TfListener(self, self.tf_buffer)
        self._setup_self_filter()
        specs: dict[str, SensorSpec] = {}
        triggers: list[str] = []
        self._max_age_ns: dict[str, int] = {}
        self._last_rx: dict[str, tuple[float, int]] = {}  # rate limit per sensor: (tokens, monotonic ns)
        self._camera_info: dict[str, CameraInfo] = {}
        for topic in lidar_topics:
            self.sensor_subscription(PointCloud2, topic, lambda m, t=topic: self._on_cloud(m, t))
            triggers.append(f"lidar:{topic}")
        for topic in scan_topics:
            self.sensor_subscription(LaserScan, topic, lambda m, t=topic: self._on_scan(m, t))
            triggers.append(f"scan:{topic}")
        for name in triggers:
            specs[name] = SensorSpec(int(range_age * 1e9))
        if depth_topic:
            self.sensor_subscription(CameraInfo, depth_info_topic, lambda m: self._camera_info.__setitem__("depth", m))
            self.sensor_subscription(Image, depth_topic, self._on_depth, LATEST_FRAME_QOS)
            specs["depth"] = SensorSpec(int(camera_age * 1e9))
            triggers.append("depth")
        if image_topic:
            self.sensor_subscription(CameraInfo, info_topic, lambda m: self._camera_info.__setitem__("camera", m))
            self.sensor_subscription(Image, image_topic, self._on_image, LATEST_FRAME_QOS)
            specs["camera"] = SensorSpec(int(camera_age * 1e9))
            triggers.append("camera")
        if tactile_topic:
            self.sensor_subscription(TactileState, tactile_topic, self._on_tactile)
        if not specs:
            raise ValueError("perception_fusion: no LiDAR, scan, depth or image topic configured")
        sensor_topics = [t for t in (*lidar_topics, *scan_topics, depth_topic, image_topic, tactile_topic) if t]
        self.exit_when_deaf(sensor_topics, p(
            "deaf_restart_s", 10.0, "Exit (code 3, to be restarted) when no sensor message has arrived since start "
            "for this long while a sensor topic has a publisher: a participant whose transport failed to start "
            "hears nothing [s]; 0 disables", (0.0, 600.0)))
        self._max_age_ns = {k: v.max_age_ns for k, v in specs.items()}
        self._sync_args = (specs, triggers, int(slop * 1e9), int(max_wait * 1e9))
        self.sync = SensorSync(*self._sync_args)
        self._pose_wait: collections.deque = collections.deque()  # frames waiting for their tracking-frame pose
        self.on_time_reset(self._restart)

        self.obstacle_pub = self.checked_publisher(ObstacleArray, "perception/obstacles")
        self.grid_pub = self.checked_publisher(OccupancyGrid, "perception/occupancy")
        self.parts_pub = self.checked_publisher(DetectedPartArray, "perception/parts")
        self.contact_pub = self.checked_publisher(TactileState, "perception/contact")
        self.marker_pub = self.checked_publisher(MarkerArray, "perception/markers")
        # Each arrival polls at once; this timer polls only while a frame waits on time alone (a late camera, a
        # pose not yet in tf): always on, it woke the process 100-200 times a second for nothing.
        self._poll_timer = self.create_timer(0.005, self._poll)
        self._poll_timer.cancel()
        self.set_status(DiagnosticStatus.OK, "waiting for sensors")

    def _setup_self_filter(self) -> None:
        """Robot self-filter (arm under an overhead camera): its own points are not obstacles."""
        p = self.param
        self.body: BodySpheres | None = None
        self._joints: collections.deque[tuple[int, np.ndarray]] = collections.deque(maxlen=400)
        model = p("self_filter_model", "", "MJCF of the robot seen by the sensors, relative to the package share "
                  "dir; its points are removed before obstacle segmentation ('' = off)")
        if not model:
            return
        self.joint_names = list(p("self_filter_joints", [f"joint{i}" for i in range(1, 8)],
                                  "Joints of that model, named as in joint_states"))
        self.body = BodySpheres.from_file(
            resolve_share_path(model), self.joint_names, p("self_filter_geom_prefix", "col_", "Collision geoms used"),
            padding_m=p("self_filter_padding_m", 0.03, "Added to the link spheres [m]", (0.0, 0.5)),
            hand_body=p("self_filter_hand_body", "", "Body whose subtree (the gripper) gets the hand padding"),
            hand_padding_m=p("self_filter_hand_padding_m", 0.06,
                             "Padding of the gripper's spheres, covering a held part [m]", (0.0, 0.5)),
            static_bodies=[b for b in p("self_filter_static_bodies", [""], "Robot bodies no joint moves (its base); "
                                        "[''] = none (a ROS list parameter cannot default to empty)") if b])
        self.body_frame = p("self_filter_frame", "world", "TF frame of the model's origin")
        self.joint_gap_ns = int(p("self_filter_max_joint_gap_s", 0.1, "A frame uses the joint state nearest its "
                                  "stamp if it is this close; else the frame is dropped (counted) [s]",
                                  (0.001, 1.0)) * 1e9)
        self.sensor_subscription(JointState, p("joint_states_topic", "joint_states", "Robot joint states"),
                                 self._on_joint_states)

    def _on_joint_states(self, msg: JointState) -> None:
        try:
            joints = joint_state_to_dict(msg)
            q = np.array([joints[n][0] for n in self.joint_names], float)
        except (KeyError, ValueError) as exc:
            self._drop("malformed:joint_states", f"joint_states: {exc!r}")
            return
        if not np.all(np.isfinite(q)):
            self._drop("malformed:joint_states", "joint_states: non-finite position")
            return
        stamp = stamp_to_ns(msg.header.stamp)
        if stamp > self._now_ns() + self.future_tol_ns:
            # stamped on a clock that was just reset (a state sent before a simulator reset, received after it):
            # kept, it would sort after every new stamp and the self-filter would drop the new clock's joint states
            # as out of order until the new clock caught up (the whole arm became an obstacle for an episode)
            self._drop("joint_states:future", "joint_states: stamp ahead of now")
            return
        if self._joints and stamp <= self._joints[-1][0]:
            return  # out of order: keep the history sorted
        self._joints.append((stamp, q))

    def _body_spheres(self, stamp_ns: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The robot's spheres in base_frame at a frame's stamp, or None (counted) when they cannot be placed."""
        stamps = [t for t, _ in self._joints]
        i = bisect.bisect_left(stamps, stamp_ns)
        near = [j for j in (i - 1, i) if 0 <= j < len(stamps)]
        if not near:
            self.count("self_filter_no_joint_state")
            return None
        j = min(near, key=lambda k: abs(stamps[k] - stamp_ns))
        if abs(stamps[j] - stamp_ns) > self.joint_gap_ns:
            self.count("self_filter_no_joint_state")
            return None
        try:
            T = self.tf_buffer.lookup(self.base_frame, self.body_frame)
        except (LookupError, ValueError):
            self.count("self_filter_no_transform")
            return None
        centres, radii = self.body.at(self._joints[j][1])
        return centres @ T[:3, :3].T + T[:3, 3], radii

    def _restart(self) -> None:
        """ROS time jumped back (simulator reset): drop buffered frames, tracks and rate state of the old clock."""
        self.sync = SensorSync(*self._sync_args)
        self._pose_wait.clear()
        self._joints.clear()
        self.pipeline.reset()
        self._last_rx.clear()
        self._last_markers_ns = 0
        self._last_grid_ns = -self.grid_period_ns

    # ---- input validation -----------------------------------------------------------------------------------
    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _accept(self, sensor: str, stamp_ns: int) -> bool:
        """Reject stamps from the future or older than the age limit, and messages above max_rate_hz."""
        now = self._now_ns()
        if stamp_ns > now + self.future_tol_ns:
            return self._drop(f"future_stamp:{sensor}", f"{sensor}: stamp {(stamp_ns - now) * 1e-9:.3f} s ahead")
        if now - stamp_ns > self._max_age_ns.get(sensor, int(1e9)):
            return self._drop(f"too_old:{sensor}", f"{sensor}: stamp {(now - stamp_ns) * 1e-9:.3f} s old")
        # A token bucket: max_rate_hz on average with bursts of RATE_BURST. A frame delivered late and the next one on
        # time arrive back to back (the simulator's camera behind a slow render): jitter, not a flood.
        rx = time.monotonic_ns()
        tokens, last = self._last_rx.get(sensor, (RATE_BURST, rx))
        tokens = min(RATE_BURST, tokens + (rx - last) * 1e-9 * self.max_rate_hz)
        if tokens < 1.0:
            self._last_rx[sensor] = (tokens, rx)
            return self._drop(f"rate_limited:{sensor}", f"{sensor}: faster than {self.max_rate_hz} Hz")
        self._last_rx[sensor] = (tokens - 1.0, rx)
        return True

    def _drop(self, reason: str, detail: str) -> bool:
        self.count(reason)
        self.log_throttled(reason, f"dropped: {detail}")
        return False

    def _to_base(self, frame: str, stamp_ns: int, sensor: str) -> np.ndarray | None:
        """T_base_frame at the stamp (latest if the stamp is outside the TF history); None (counted) if unknown."""
        try:
            return self.tf_buffer.lookup_at_or_latest(self.base_frame, frame, stamp_ns)
        except (LookupError, ValueError) as exc:
            self._drop(f"unknown_frame:{sensor}", f"{sensor}: no transform {self.base_frame} <- {frame!r}: {exc}")
            return None

    # ---- callbacks ------------------------------------------------------------------------------------------
    def _on_cloud(self, msg: PointCloud2, topic: str) -> None:
        sensor = f"lidar:{topic}"
        self.tick(sensor)
        stamp = stamp_to_ns(msg.header.stamp)
        if not self._accept(sensor, stamp):
            return
        try:
            pts = pointcloud2_to_xyz(msg)
        except ValueError as exc:
            self._drop(f"malformed:{sensor}", str(exc))
            return
        self._add_points(sensor, pts, msg.header.frame_id, stamp)

    def _on_scan(self, msg: LaserScan, topic: str) -> None:
        sensor = f"scan:{topic}"
        self.tick(sensor)
        stamp = stamp_to_ns(msg.header.stamp)
        if not self._accept(sensor, stamp):
            return
        try:
            xy = laserscan_to_xy(msg)
        except ValueError as exc:
            self._drop(f"malformed:{sensor}", str(exc))
            return
        self._add_points(sensor, np.column_stack([xy, np.zeros(len(xy), np.float32)]), msg.header.frame_id, stamp)

    def _add_points(self, sensor: str, pts: np.ndarray, frame: str, stamp: int) -> None:
        finite = np.isfinite(pts[:, :3]).all(axis=1)
        if not finite.all():
            self.count(f"nonfinite_points:{sensor}", int((~finite).sum()))
            pts = pts[finite]
        if len(pts) == 0:
            self._drop(f"empty_cloud:{sensor}", f"{sensor}: no valid points")
            return
        T = self._to_base(frame, stamp, sensor)
        if T is None:
            return
        base = pts[:, :3] @ T[:3, :3].T.astype(np.float32) + T[:3, 3].astype(np.float32)
        self.sync.add(sensor, stamp, base, self._now_ns())
        self._poll()

    def _image_checks(self, msg: Image, sensor: str,
                      encodings: tuple[str, ...]) -> tuple[np.ndarray, CameraInfo] | None:
        info = self._camera_info.get(sensor)
        if info is None:
            self._drop(f"no_camera_info:{sensor}", f"{sensor}: no CameraInfo yet")
            return None
        if msg.width == 0 or msg.height == 0:
            self._drop(f"empty_image:{sensor}", f"{sensor}: zero-size image")
            return None
        if (msg.width, msg.height) != (info.width, info.height):
            self._drop(f"size_mismatch:{sensor}", f"{sensor}: image {msg.width}x{msg.height} vs CameraInfo "
                       f"{info.width}x{info.height}")
            return None
        if msg.encoding not in encodings:
            self._drop(f"bad_encoding:{sensor}", f"{sensor}: encoding {msg.encoding!r} not in {encodings}")
            return None
        try:
            return image_to_numpy(msg), info
        except ValueError as exc:
            self._drop(f"malformed:{sensor}", str(exc))
            return None

    def _on_image(self, msg: Image) -> None:
        self.tick("camera")
        stamp = stamp_to_ns(msg.header.stamp)
        if not self._accept("camera", stamp):
            return
        checked = self._image_checks(msg, "camera", ("rgb8", "bgr8"))
        if checked is None:
            return
        image, info = checked
        T = self._to_base(msg.header.frame_id, stamp, "camera")
        if T is None:
            return
        model = CameraModel(camera_info_to_matrix(info), int(msg.width), int(msg.height), np.linalg.inv(T))
        # A view on the message's data, in the driver's channel order (bgr8 too): no copy of a 1600x900 image.
        self.sync.add("camera", stamp, CameraFrame(image, model, bgr=msg.encoding == "bgr8"), self._now_ns())
        self._poll()

    def _on_depth(self, msg: Image) -> None:
        self.tick("depth")
        stamp = stamp_to_ns(msg.header.stamp)
        if not self._accept("depth", stamp):
            return
        checked = self._image_checks(msg, "depth", ("32FC1", "16UC1"))
        if checked is None:
            return
        depth, info = checked
        if msg.encoding == "16UC1":
            depth = depth.astype(np.float32) * 1e-3
        T = self._to_base(msg.header.frame_id, stamp, "depth")
        if T is None:
            return
        pts = depth_to_points(depth, camera_info_to_matrix(info), T, self.depth_stride, self.depth_max_range)
        self.sync.add("depth", stamp, (pts, T[:3, 3].copy()), self._now_ns())
        self._poll()

    def _on_tactile(self, msg: TactileState) -> None:
        self.tick("tactile")
        stamp = stamp_to_ns(msg.header.stamp)
        if not self._accept("tactile", stamp):
            return
        out = TactileState(header=msg.header)
        for pad in msg.pads:
            try:
                r = self.tactile.process(pad.name, pad.rows, pad.cols, np.asarray(pad.pressure), stamp)
            except ValueError as exc:
                self._drop("malformed:tactile", str(exc))
                continue
            pad.in_contact, pad.slip, pad.normal_force = r.in_contact, r.slip, r.normal_force
            pad.contact_location = Point(x=float(r.location[0]), y=float(r.location[1]), z=float(r.location[2]))
            out.pads.append(pad)
        self.contact_pub.publish(out)

    # ---- processing ---------------------------------------------------------------------------------------
    def _poll(self) -> None:
        self._release(self._now_ns())
        waiting = self.sync.pending or bool(self._pose_wait)
        if waiting and self._poll_timer.is_canceled():
            self._poll_timer.reset()
        elif not waiting and not self._poll_timer.is_canceled():
            self._poll_timer.cancel()

    def _release(self, now: int) -> None:
        """Process every frame the sync releases, in stamp order, once its tracking-frame pose is known."""
        self._pose_wait.extend(self.sync.poll(now))
        while self._pose_wait:  # in stamp order: the tracker must not see a frame after a later one
            bundle = self._pose_wait[0]
            if now - bundle.stamp_ns > self._max_age_ns[bundle.trigger]:
                self._pose_wait.popleft()
                self.count("stale_cycle")      # never publish old data as fresh
                continue
            T_world_base = None
            if self.tracking_frame:
                try:
                    T_world_base = self.tf_buffer.lookup(self.tracking_frame, self.base_frame, bundle.stamp_ns)
                except LookupError:
                    self.count("no_tracking_frame")  # no such frame at all: track in base_frame
                except ValueError as exc:
                    # The pose at the stamp is not in the tf history (yet): tracking this frame in another frame
                    # than the last would corrupt every track's velocity, so it waits for tf, as tf2's message
                    # filter does, and is dropped when it does not come.
                    if now - bundle.stamp_ns < self.tf_wait_ns:
                        return
                    self._pose_wait.popleft()
                    self._drop("tracking_pose_missing", f"frame: no {self.tracking_frame} pose at its stamp: {exc}")
                    continue
            self._pose_wait.popleft()
            try:
                self._process(bundle, now, T_world_base)
            except Exception as exc:
                self.count("processing_error")
                self.log_throttled("processing_error", f"cycle failed: {exc!r}", level="error")

    def _process(self, bundle, now: int, T_world_base: np.ndarray | None) -> None:
        frame = FrameInput(stamp_ns=bundle.stamp_ns, T_world_base=T_world_base)
        alive = 0
        for name, (_, payload) in bundle.data.items():
            if name.startswith("lidar:"):
                frame.clouds.append(payload)
                alive |= SENSOR_LIDAR
            elif name.startswith("scan:"):
                frame.scans.append(payload)
                alive |= SENSOR_LIDAR
            elif name == "depth":
                frame.depth.append(payload[0])
                frame.depth_origin = payload[1]
                alive |= SENSOR_DEPTH
            elif name == "camera":
                frame.cameras.append(payload)
                alive |= SENSOR_CAMERA
        if self.body is not None:
            frame.body_spheres = self._body_spheres(bundle.stamp_ns)
            if frame.body_spheres is None:
                # The robot cannot be placed in this frame (no joint state near its stamp: the first frame after a
                # simulator reset, a starved joint-state stream). Published, the whole arm was an obstacle inside
                # the corrector's clearance (-0.30 m) and the corrector pushed the arm away from itself, mid-grasp
                # too (ROS eval). Nothing is published instead: without fresh obstacles the corrector stops the arm.
                self._drop("self_filter_unplaced_frame", "frame: the robot's pose at its stamp is unknown")
                return
        start = time.perf_counter()
        result = self.pipeline.process(frame, with_grid=False)
        self.latency("cycle", (time.perf_counter() - start) * 1e3)
        header = make_header(self.base_frame, bundle.stamp_ns)
        out = ObstacleArray(header=header, sensors_alive=alive, degraded=bundle.degraded)
        for ob in result.obstacles:
            c = ob.cluster
            pred = [Point(x=float(x), y=float(y), z=float(c.center[2])) for x, y in ob.predicted]
            out.obstacles.append(Obstacle(
                id=ob.track_id, classification=c.classification, confidence=float(c.confidence),
                pose=Pose(position=Point(x=float(c.center[0]), y=float(c.center[1]), z=float(c.center[2])),
                          orientation=_yaw_quaternion(c.yaw)),
                size=Vector3(x=float(c.size[0]), y=float(c.size[1]), z=float(c.size[2])),
                velocity=Vector3(x=float(ob.velocity[0]), y=float(ob.velocity[1])), sensors=c.sensors,
                track_age=ob.age, prediction_dt=self.pipeline.cfg.tracker.prediction_dt, predicted_positions=pred))
        self.obstacle_pub.publish(out)
        self.latency("stamp_to_publish", (self._now_ns() - bundle.stamp_ns) * 1e-6)
        self.tick("obstacles")
        if result.parts is not None:
            self._publish_parts(result.parts, header)
        # Occupancy and markers come after the obstacles, which are the latency-critical output.
        if now - self._last_grid_ns >= self.grid_period_ns:
            grid = self.pipeline.occupancy(result)
            if grid is not None:
                self._last_grid_ns = now
                self._publish_grid(grid, header)
        if now - self._last_markers_ns >= self.marker_period_ns:
            self._last_markers_ns = now
            self._publish_markers(out)
        ground = result.segmentation.ground_status
        if ground != "fit":
            self.count(f"ground_from_mount:{ground}")    # the fit failed: the mount's plane was used
        worker = self.pipeline.detector_thread
        if worker is not None:                           # how often the people detector got a core
            self.set_status(DiagnosticStatus.OK, "ok", people_detector_runs=worker.runs,
                            people_detector_ms=f"{np.median(worker.run_ms):.0f}" if worker.run_ms else "")
        if bundle.degraded:
            self.set_status(DiagnosticStatus.WARN, f"degraded: stale {', '.join(bundle.stale)}",
                            degraded=True, stale=",".join(bundle.stale), ground=ground)
        else:
            self.set_status(DiagnosticStatus.OK, "ok", degraded=False, stale="", ground=ground)

    def _publish_grid(self, grid: np.ndarray, header) -> None:
        cfg = self.pipeline.cfg.occupancy
        msg = OccupancyGrid(header=header)
        msg.info.map_load_time = header.stamp
        msg.info.resolution = float(cfg.resolution)
        msg.info.width, msg.info.height = grid.shape[1], grid.shape[0]
        msg.info.origin.position = Point(x=-cfg.size_m / 2, y=-cfg.size_m / 2)
        msg.info.origin.orientation.w = 1.0
        msg.data = array.array("b", grid.astype(np.int8).tobytes())
        self.grid_pub.publish(msg)

    def _publish_parts(self, parts, header) -> None:
        out = DetectedPartArray(header=header)
        for part in parts:
            pose = PoseWithCovariance(pose=Pose(position=Point(x=float(part.position[0]), y=float(part.position[1]),
                                                               z=float(part.position[2])),
                                                orientation=_yaw_quaternion(part.yaw)))
            pose.covariance = part.covariance.astype(float).ravel()
            out.parts.append(DetectedPart(label=part.label, confidence=float(part.confidence), pose=pose,
                                          size=Vector3(x=float(part.size[0]), y=float(part.size[1]),
                                                       z=float(part.size[2]))))
        self.parts_pub.publish(out)

    def _publish_markers(self, obstacles: ObstacleArray) -> None:
        markers = MarkerArray(markers=[Marker(header=obstacles.header, action=Marker.DELETEALL)])
        for ob in obstacles.obstacles:
            r, g, b = _COLORS.get(ob.classification, (0.6, 0.6, 0.6))
            m = Marker(header=obstacles.header, ns="obstacles", id=int(ob.id), type=Marker.CUBE, action=Marker.ADD,
                       pose=ob.pose, scale=ob.size)
            m.color.r, m.color.g, m.color.b, m.color.a = r, g, b, 0.6
            m.lifetime.nanosec = 300_000_000
            markers.markers.append(m)
        self.marker_pub.publish(markers)

    def on_shutdown(self) -> None:
        """Stop listening to /tf and the people detector's thread before the node is destroyed."""
        self.tf_listener.destroy()
        self.pipeline.close()


def main(args: list[str] | None = None) -> None:
    """Entry point: run the perception fusion node."""
    run_node(PerceptionFusion, args, events_executor=True)  # C++ dispatch: less CPU per callback


if __name__ == "__main__":
    main()

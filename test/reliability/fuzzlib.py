"""Property-based fuzzing of the stack's inputs through real DDS (issue 22), shared by the test and the bench.

`message_strategy(type)` draws messages of any ROS type from its field table: every field takes sane, legal-but-
absurd (1e30, 1e5 m/s, 10k-character strings, nanosec >= 1e9, any int32 second) or non-finite values; stamps are
often "now", so messages get past the freshness checks into node logic. Types whose contents must agree (clouds,
scans, images, chunks, joint states, obstacles) also get plausible-but-hostile versions built to be consistent.

`FuzzStack` runs perception, policy and corrector (AMR, config/amr.yaml) plus an arm corrector in namespace `arm`
(config/arm.yaml) as separate processes under the supervisor, publishes drawn messages on every input topic of
every node, and watches every command that leaves the correctors: non-finite values or values beyond the limits
are unsafe commands; a node process that exits or restarts is a node exit.
"""

from __future__ import annotations

import importlib
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped, Twist
from hypothesis import strategies as st
from nav_msgs.msg import OccupancyGrid, Odometry
from physical_ai_stack.msg import ActionChunk, ObstacleArray
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import CameraInfo, Image, JointState, LaserScan, PointCloud2
from spin_thread import SpinThread
from std_msgs.msg import Float64MultiArray, String
from tf2_msgs.msg import TFMessage
from trajectory_msgs.msg import JointTrajectory

from physical_ai.bringup.processes import Supervisor
from physical_ai.bringup.stack import STACK, node_command, node_params, params_file
from physical_ai.convert import numpy_to_pointcloud2
from physical_ai_nodes._base import LATCHED_QOS

INT_BOUNDS = {"int8": (-2**7, 2**7 - 1), "uint8": (0, 2**8 - 1), "octet": (0, 255), "byte": (0, 255),
              "char": (0, 255), "int16": (-2**15, 2**15 - 1), "uint16": (0, 2**16 - 1),
              "int32": (-2**31, 2**31 - 1), "uint32": (0, 2**32 - 1), "int64": (-2**63, 2**63 - 1),
              "uint64": (0, 2**64 - 1)}
FRAMES = ["", "base_link", "odom", "map", "world", "lidar_link", "camera_color_optical_frame", "a b", "x" * 300]
ABSURD = [0.0, -0.0, math.nan, math.inf, -math.inf, 1e30, -1e30, 1e5, -1e5, 1e-300, 3.4e38]
ARM_JOINTS = [f"joint{i}" for i in range(1, 8)]


def now_stamp() -> Time:
    """The current wall time as a stamp (the fuzzed nodes run on wall time)."""
    sec, nanosec = divmod(time.time_ns(), 1_000_000_000)
    return Time(sec=sec, nanosec=nanosec)


def _floats(width: int) -> st.SearchStrategy[float]:
    return st.one_of(st.floats(-10.0, 10.0, width=width), st.sampled_from(ABSURD),
                     st.floats(allow_nan=True, allow_infinity=True, width=width))


def _stamps() -> st.SearchStrategy[Time]:
    return st.one_of(st.builds(now_stamp), st.builds(now_stamp), st.builds(
        Time, sec=st.integers(-2**31, 2**31 - 1), nanosec=st.integers(0, 2**32 - 1)))


def _message_class(type_name: str) -> type:
    pkg, name = type_name.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


def _field(ftype: str, name: str, depth: int) -> st.SearchStrategy[Any]:
    if ftype == "builtin_interfaces/Time":
        return _stamps()
    if ftype == "boolean":
        return st.booleans()
    if ftype in INT_BOUNDS:
        lo, hi = INT_BOUNDS[ftype]
        return st.one_of(st.integers(max(lo, 0), min(hi, 8)), st.integers(lo, hi))
    if ftype in ("float", "float32"):
        return _floats(32)
    if ftype in ("double", "float64"):
        return _floats(64)
    if ftype.startswith(("string", "wstring")):
        if name in ("frame_id", "child_frame_id"):
            return st.sampled_from(FRAMES)
        return st.one_of(st.sampled_from(["", "arm", "amr", "linear_x", "angular_z", "joint1", "gripper"]),
                         st.text(max_size=16), st.just("go " * 5000))
    if ftype.startswith("sequence<") or ftype.endswith("]"):
        if ftype.endswith("]"):
            inner, size = ftype[:ftype.index("[")], ftype[ftype.index("[") + 1:-1]
            fixed = int(size.lstrip("<=")) if size and not size.startswith("<=") else None
        else:
            inner, fixed = ftype[len("sequence<"):].split(",")[0].rstrip(">"), None
        if inner in ("uint8", "octet", "byte", "char"):
            data = st.binary(min_size=fixed or 0, max_size=fixed or 256)
            return data if fixed else st.one_of(data, st.just(bytes(100_000)))
        element = _field(inner, name, depth + 1)
        if fixed is not None:
            return st.lists(element, min_size=fixed, max_size=fixed)
        return st.lists(element, max_size=0 if depth > 3 else 4)
    if "/" in ftype:
        return message_strategy(_message_class(ftype), depth + 1)
    raise ValueError(f"no strategy for field type {ftype}")


def message_strategy(cls: type, depth: int = 0) -> st.SearchStrategy[Any]:
    """Any message of this type: every field drawn from sane, absurd and non-finite values."""
    fields = {name: _field(ftype, name, depth) for name, ftype in cls.get_fields_and_field_types().items()}
    generic = st.builds(cls, **fields)
    plausible = PLAUSIBLE.get(cls)
    return st.one_of(generic, plausible()) if plausible is not None and depth == 0 else generic


# ---- plausible but hostile versions of the types whose fields must agree -------------------------------------------

def _header(frames: list[str]) -> st.SearchStrategy[Any]:
    from std_msgs.msg import Header

    return st.builds(Header, stamp=_stamps(), frame_id=st.sampled_from(frames))


@st.composite
def _cloud(draw: Any) -> PointCloud2:
    n = draw(st.sampled_from([0, 1, 10, 1000, 20_000]))
    points = draw(st.sampled_from(["normal", "absurd"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    xyz = rng.normal(0.0, 5.0, (n, 3)).astype(np.float32)
    if points == "absurd" and n:
        xyz.reshape(-1)[rng.integers(0, xyz.size, max(1, xyz.size // 10))] = rng.choice(
            np.array([np.nan, np.inf, -np.inf, 1e30, -1e30], np.float32), max(1, xyz.size // 10))
    msg = numpy_to_pointcloud2(xyz, "lidar_link")
    msg.header = draw(_header(["lidar_link", "base_link", "", "nowhere"]))
    return msg


@st.composite
def _scan(draw: Any) -> LaserScan:
    n = draw(st.sampled_from([0, 1, 360, 2000]))
    ranges = draw(st.lists(st.one_of(st.floats(0.0, 30.0, width=32), st.sampled_from(ABSURD)), min_size=min(n, 8),
                           max_size=min(n, 8)))
    ranges = (ranges * (n // max(len(ranges), 1) + 1))[:n]
    return LaserScan(header=draw(_header(["lidar_link", "base_link", ""])), angle_min=draw(_floats(32)),
                     angle_max=draw(_floats(32)), angle_increment=draw(_floats(32)), range_min=draw(_floats(32)),
                     range_max=draw(_floats(32)), ranges=ranges)


@st.composite
def _image(draw: Any) -> Image:
    encoding = draw(st.sampled_from(["rgb8", "bgr8", "32FC1", "16UC1", "mono8", "bogus"]))
    width, height = draw(st.sampled_from([(0, 0), (4, 4), (64, 48), (640, 480), (3000, 2000)]))
    bpp = {"rgb8": 3, "bgr8": 3, "32FC1": 4, "16UC1": 2}.get(encoding, 1)
    step = width * bpp + draw(st.sampled_from([0, 0, 1, -1]))
    data = bytes(max(step, 0) * height) if width * height <= 640 * 480 else bytes(16)
    return Image(header=draw(_header(["camera_color_optical_frame", "camera_depth_optical_frame", ""])),
                 width=width, height=height, encoding=encoding, step=max(step, 0), data=data)


@st.composite
def _camera_info(draw: Any) -> CameraInfo:
    f = draw(st.one_of(st.floats(1.0, 2000.0), st.sampled_from(ABSURD)))
    width, height = draw(st.sampled_from([(640, 480), (64, 48), (0, 0), (100000, 100000)]))
    return CameraInfo(header=draw(_header(["camera_color_optical_frame", ""])), width=width, height=height,
                      k=[f, 0.0, width / 2, 0.0, f, height / 2, 0.0, 0.0, 1.0], p=[f, 0.0, 0.0, 0.0] * 3)


@st.composite
def _chunk(draw: Any) -> ActionChunk:
    names = draw(st.sampled_from([["linear_x", "angular_z"], ARM_JOINTS, [*ARM_JOINTS, "gripper"], ["linear_x"],
                                  ["linear_x", "linear_x"]]))
    horizon = draw(st.sampled_from([0, 1, 10, 50]))
    values = draw(st.lists(st.one_of(st.floats(-2.0, 2.0), st.sampled_from(ABSURD)), min_size=1, max_size=4))
    n = horizon * len(names) + draw(st.sampled_from([0, 0, 0, 1, -1]))
    return ActionChunk(header=draw(_header([""])), embodiment=draw(st.sampled_from(["amr", "arm", "", "vehicle"])),
                       action_names=names, start_time=draw(_stamps()), dt=draw(_floats(32)), horizon=horizon,
                       values=(values * (max(n, 0) // len(values) + 1))[:max(n, 0)])


@st.composite
def _joint_state(draw: Any) -> JointState:
    names = draw(st.sampled_from([ARM_JOINTS, [*ARM_JOINTS, "gripper"], ARM_JOINTS[:3], ["joint1"] * 7]))
    positions = draw(st.lists(st.one_of(st.floats(-3.0, 3.0), st.sampled_from(ABSURD)), min_size=len(names),
                              max_size=len(names)))
    return JointState(header=draw(_header([""])), name=names, position=positions)


@st.composite
def _obstacles(draw: Any) -> ObstacleArray:
    from physical_ai_stack.msg import Obstacle

    msg = ObstacleArray(header=draw(_header(["base_link", "odom", "world", ""])),
                        sensors_alive=draw(st.integers(0, 255)))
    n = draw(st.sampled_from([0, 1, 5, 2000]))
    speed, size, x = (draw(st.one_of(st.floats(-3.0, 3.0), st.sampled_from(ABSURD))) for _ in range(3))
    for i in range(n):
        o = Obstacle(id=i, classification=i % 5)
        o.pose.position.x, o.pose.position.y, o.pose.orientation.w = x, 0.1 * i, 1.0
        o.size.x = o.size.y = o.size.z = size
        o.velocity.y = speed
        msg.obstacles.append(o)
    return msg


PLAUSIBLE = {PointCloud2: _cloud, LaserScan: _scan, Image: _image, CameraInfo: _camera_info, ActionChunk: _chunk,
             JointState: _joint_state, ObstacleArray: _obstacles}

# ---- the stack under fuzz ---------------------------------------------------------------------------------------

AMR_NODES = ("perception_fusion", "policy_inference", "trajectory_correction")
ARM = "arm_correction"
# (topic, type): every input of every node (perception, policy, both correctors).
INPUTS: list[tuple[str, type]] = [
    ("/lidar/points", PointCloud2), ("/scan", LaserScan), ("/camera/color/image_raw", Image),
    ("/camera/color/camera_info", CameraInfo), ("/tf", TFMessage), ("/tf_static", TFMessage),
    ("/odom", Odometry), ("/perception/obstacles", ObstacleArray), ("/policy/instruction", String),
    ("/policy/action_chunk", ActionChunk), ("/cmd_vel_in", Twist), ("/perception/occupancy", OccupancyGrid),
    ("/goal_pose", PoseStamped),
    ("/arm/joint_states", JointState), ("/arm/policy/action_chunk", ActionChunk),
    ("/arm/perception/obstacles", ObstacleArray), ("/arm/trajectory_in", JointTrajectory), ("/arm/tf", TFMessage),
]


class FuzzStack:
    """The nodes under fuzz, a publisher per input and a watch on every command they send."""

    def __init__(self, log_dir: Path) -> None:
        specs = {spec.name: spec for spec in STACK}
        corrector = specs["trajectory_correction"]
        arm_cmd = node_command(corrector, params_file("arm"), namespace="arm",
                               overrides={"rate_hz": "250.0", "trajectory_in_topic": "trajectory_in"})
        arm_cmd[arm_cmd.index("__node:=trajectory_correction")] = f"__node:={ARM}"
        commands = [(specs[n], node_command(specs[n], params_file("amr"))) for n in AMR_NODES]
        commands.append((type(corrector)(ARM, respawn=corrector.respawn, required=corrector.required), arm_cmd))
        self.events: list[str] = []
        self.supervisor = Supervisor(commands, log_dir=log_dir, on_event=self.events.append)
        amr = node_params(params_file("amr"), "trajectory_correction")
        arm = node_params(params_file("arm"), "trajectory_correction")
        self.amr_limits = (float(amr["max_linear"]), float(amr["max_angular"]))
        self.arm_limits = (np.array(arm["position_lower"], float), np.array(arm["position_upper"], float))
        # The farthest each joint was reported beyond its bounds on /arm/joint_states: from there the corrector
        # brings it back inside at limited speed (issue 16), so its command may be out there too, never farther.
        self.arm_measured = (self.arm_limits[0].copy(), self.arm_limits[1].copy())
        self.unsafe: list[str] = []
        self.commands = {"amr": 0, "arm": 0}
        self.sent = 0
        self.supervisor.start()
        rclpy.init()
        self.node = rclpy.create_node("fuzzer")
        # /tf_static is subscribed transient local: a volatile publisher would not match it
        self.publishers = {(topic, kind): self.node.create_publisher(kind, topic, LATCHED_QOS if topic == "/tf_static"
                                                                     else 10) for topic, kind in INPUTS}
        self.node.create_subscription(Twist, "/cmd_vel", self._on_twist, 100)
        self.node.create_subscription(Float64MultiArray, "/arm/arm_controller/commands", self._on_arm, 100)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._spin = SpinThread(self.executor)
        self.pids: dict[str, int | None] = {}

    def _on_twist(self, msg: Twist) -> None:
        self.commands["amr"] += 1
        v, w = msg.linear.x, msg.angular.z
        others = (msg.linear.y, msg.linear.z, msg.angular.x, msg.angular.y)
        if not (math.isfinite(v) and math.isfinite(w)) or abs(v) > self.amr_limits[0] + 1e-9 \
                or abs(w) > self.amr_limits[1] + 1e-9 or any(others):
            self.unsafe.append(f"/cmd_vel {v} {w} {others}")

    def _note_measured(self, msg: JointState) -> None:
        if len(set(msg.name)) != len(msg.name) or len(msg.position) != len(msg.name) \
                or not all(math.isfinite(q) and abs(q) <= 1e10 for q in msg.position):
            return  # refused by every node's input validation
        lo, hi = self.arm_measured
        for name, q in zip(msg.name, msg.position, strict=True):
            if name in ARM_JOINTS:
                j = ARM_JOINTS.index(name)
                lo[j], hi[j] = min(lo[j], q), max(hi[j], q)

    def _on_arm(self, msg: Float64MultiArray) -> None:
        self.commands["arm"] += 1
        q = np.asarray(msg.data, float)
        lo, hi = self.arm_measured
        if q.shape != lo.shape or not np.isfinite(q).all() or (q < lo - 1e-9).any() or (q > hi + 1e-9).any():
            self.unsafe.append(f"arm command {q.tolist()}")

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        """Until every node runs and every input has a subscriber."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.supervisor.poll()
            if all(p.get_subscription_count() > 0 for p in self.publishers.values()):
                self.pids = self.current_pids()
                return
            time.sleep(0.2)
        missing = [t for (t, _), p in self.publishers.items() if p.get_subscription_count() == 0]
        raise AssertionError(f"no subscriber on {missing}; events {self.events}")

    def current_pids(self) -> dict[str, int | None]:
        return {name: self.supervisor.pid(name) for name in (*AMR_NODES, ARM)}

    def publish(self, topic: str, msg: Any) -> None:
        """Send one drawn message (and pace, so the nodes handle the stream rather than DDS dropping it)."""
        if topic == "/arm/joint_states":
            self._note_measured(msg)
        self.publishers[(topic, type(msg))].publish(msg)
        self.sent += 1
        self.supervisor.poll()
        time.sleep(0.005)

    def node_exits(self) -> list[str]:
        """Exits and restarts so far (a changed pid or a supervisor event)."""
        self.supervisor.poll()
        changed = [f"{n}: pid {self.pids[n]} -> {pid}" for n, pid in self.current_pids().items()
                   if pid != self.pids.get(n)]
        return changed + [e for e in self.events if "exited" in e]

    def close(self) -> None:
        self._spin.stop(timeout_s=5.0)
        self.node.destroy_node()
        rclpy.try_shutdown()
        self.supervisor.stop()

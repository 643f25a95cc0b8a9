"""What a dataset is made of: recorded topics -> dataset features, cleansing limits, anonymisation (one YAML file).

Defaults come from the robot's parameter file (`config/<robot>.yaml`: the topics its nodes use) and its policy spec
(`physical_ai.policy.defaults`: state names, obstacle tokens, action names); a mapping file overrides any field:

    robot: amr
    fps: 10                            # frames per second of the dataset
    max_age_s: 0.5                     # a frame whose latest sample of a feature is older is dropped (stale);
                                       # default: policy_inference's max_observation_age_s (what a policy accepts)
    image_max_age_s: 0.2               # the same for camera images
    action_offset_s: 0.05              # the action of frame t is the command in force at t + offset
    min_episode_frames: 20             # shorter episodes (or pieces of one) are dropped
    idle_gap_s: 2.0                    # no state message for this long splits an episode
    max_message_loss: 0.5              # an episode missing more of a topic's messages than this is dropped
                                       # (perception on a loaded 2-core robot computer loses ~25 % of its frames;
                                       # frames whose newest sample is too old are dropped by max_age_s anyway)
    state_topic: /odom                 # nav_msgs/Odometry (or sensor_msgs/JointState for arms)
    clock_topic: /clock                # a simulator's rosgraph_msgs/Clock: where recorded, it times headerless
                                       # messages (a node on sim time reads it when it sends); '' = not used
    pose_frame: map                    # odometry pose re-expressed in this frame via /tf ('' = as recorded)
    obstacles_topic: /perception/obstacles
    action_topic: /cmd_vel             # Twist, TwistStamped, Float64MultiArray or AckermannDriveStamped (what the
                                       # robot executed); or /policy/action_chunk (ActionChunk: the recorded
                                       # policy's plan before the corrector, the step in force at each frame)
    images: {observation.images.front: {topic: /camera/color/image_raw, width: 160, height: 120}}
    task_topic: /policy/instruction
    task: drive to the drop-off station
    reset_topic: /sim/reset
    success_topic: /sim/ground_truth   # simulator only: episode success label
    joint_limits: {}                   # joint name -> [lower, upper]: frames beyond them are dropped
    anonymise: {people: blur, detector: ssd, detections_topic: /perception/obstacles, margin_m: 0.15,
                text: {/policy/instruction: scrub}, identifiers: [], source_paths: hash, key_env: PHYSAI_ANON_KEY}
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from physical_ai.data.lerobot_format import DatasetError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
TEXT_POLICIES = ("keep", "scrub", "hash", "remove")


@dataclass(frozen=True)
class ImageSource:
    """One camera feature: the Image topic and the dataset resolution."""

    topic: str
    width: int = 160
    height: int = 120


@dataclass(frozen=True)
class AnonymiseConfig:
    """People in images and identifiers in text.

    Attributes:
        people: `blur` (strong Gaussian blur), `mask` (solid fill) or `off`.
        detector: image person detector for people no LiDAR detection covers: `ssd` (perception's Open Images SSD),
            `hog` or `off`.
        detector_tile_px: `ssd`: side of the square tiles across the image's middle rows it also looks at (450 for
            1600x900 street images); 0 = the whole image only [px].
        detections_topic: the stack's obstacle tracks (ObstacleArray) whose people are projected into images.
        margin_m: added around each projected person box [m].
        person_height_m: height a person's box is extended to (a LiDAR sees only part of a close person) [m].
        person_width_m: smallest footprint side of a person's box [m].
        max_detection_gap_s: detections further than this in time from an image are not used for it [s].
        camera_info_topic: intrinsics of the images ('' = `<image topic dir>/camera_info`).
        text: topic -> `keep`, `scrub` (identifier-like words replaced by a keyed hash), `hash` or `remove`.
        identifiers: words always replaced by their keyed hash (site names, people's names, robot names).
        source_paths: recording paths in the dataset and its manifest: `hash` or `keep`.
        key_env: environment variable holding the hash key (absent: a random key per build, not stored).
    """

    people: str = "blur"
    detector: str = "ssd"
    detector_tile_px: int = 0
    detections_topic: str = "/perception/obstacles"
    margin_m: float = 0.1
    person_height_m: float = 1.95
    person_width_m: float = 0.6
    max_detection_gap_s: float = 0.3
    camera_info_topic: str = ""
    text: dict[str, str] = field(default_factory=lambda: {"/policy/instruction": "scrub"})
    identifiers: tuple[str, ...] = ()
    source_paths: str = "hash"
    key_env: str = "PHYSAI_ANON_KEY"


@dataclass(frozen=True)
class DatasetMapping:
    """Topics -> features, cleansing limits and anonymisation of one dataset build (see the module docstring)."""

    robot: str
    fps: int = 10
    max_age_s: float = 0.5
    image_max_age_s: float = 0.2
    action_offset_s: float = 0.05
    min_episode_frames: int = 20
    idle_gap_s: float = 2.0
    max_message_loss: float = 0.5
    state_topic: str = "/odom"
    clock_topic: str = "/clock"
    pose_frame: str = "map"
    obstacles_topic: str = "/perception/obstacles"
    action_topic: str = "/cmd_vel"
    images: dict[str, ImageSource] = field(default_factory=dict)
    task_topic: str = "/policy/instruction"
    task: str = ""
    reset_topic: str = "/sim/reset"
    success_topic: str = "/sim/ground_truth"
    joint_limits: dict[str, tuple[float, float]] = field(default_factory=dict)
    anonymise: AnonymiseConfig = field(default_factory=AnonymiseConfig)

    def __post_init__(self) -> None:
        if not 1 <= self.fps <= 1000:
            raise DatasetError(f"mapping fps {self.fps}: must be 1-1000")
        for name in ("max_age_s", "image_max_age_s", "idle_gap_s"):
            if not getattr(self, name) > 0:
                raise DatasetError(f"mapping {name} {getattr(self, name)}: must be > 0")
        if not 0.0 <= self.max_message_loss <= 1.0:
            raise DatasetError(f"mapping max_message_loss {self.max_message_loss}: must be 0-1")
        if self.anonymise.people not in ("blur", "mask", "off"):
            raise DatasetError(f"mapping anonymise.people {self.anonymise.people!r}: blur | mask | off")
        if self.anonymise.detector not in ("ssd", "hog", "off"):
            raise DatasetError(f"mapping anonymise.detector {self.anonymise.detector!r}: ssd | hog | off")
        for topic, policy in self.anonymise.text.items():
            if policy not in TEXT_POLICIES:
                raise DatasetError(f"mapping anonymise.text[{topic}] {policy!r}: one of {TEXT_POLICIES}")

    def topics(self) -> set[str]:
        """Every topic the build decodes."""
        out = {self.state_topic, self.clock_topic, self.action_topic, "/tf", "/tf_static", self.reset_topic,
               self.task_topic, self.success_topic, self.obstacles_topic, self.anonymise.detections_topic}
        for image in self.images.values():
            out |= {image.topic, self.camera_info_topic(image.topic)}
        return {t for t in out if t}

    def camera_info_topic(self, image_topic: str) -> str:
        """CameraInfo topic of an image topic."""
        return self.anonymise.camera_info_topic or image_topic.rsplit("/", 1)[0] + "/camera_info"

    def to_json(self) -> dict[str, Any]:
        """Plain dict (manifest, report)."""
        return asdict(self)


def default_mapping(robot: str) -> DatasetMapping:
    """The mapping for one of our robots from its parameter file's topics."""
    path = CONFIG_DIR / f"{robot}.yaml"
    if not path.is_file():
        raise DatasetError(f"no parameter file {path} for robot {robot!r} (give a --mapping file)")
    params = yaml.safe_load(path.read_text())
    policy = params.get("policy_inference", {}).get("ros__parameters", {})
    corrector = params.get("trajectory_correction", {}).get("ros__parameters", {})
    image_topic = policy.get("image_topic", "/camera/color/image_raw")
    camera = {"amr": "front", "vehicle": "front", "arm": "overhead"}.get(robot, "camera")
    common: dict[str, Any] = {"robot": robot, "images": {f"observation.images.{camera}": ImageSource(image_topic)},
                              "max_age_s": float(policy.get("max_observation_age_s", 0.5)),
                              "task_topic": policy.get("instruction_topic", "/policy/instruction"),
                              "task": policy.get("instruction", ""),
                              "obstacles_topic": policy.get("obstacles_topic", "/perception/obstacles")}
    if robot == "arm":
        return DatasetMapping(**common, state_topic=policy.get("joint_states_topic", "/joint_states"),
                              pose_frame="", action_topic="/arm_controller/commands", fps=20)
    if robot == "vehicle":
        return DatasetMapping(**common, state_topic=policy.get("odom_topic", "/odom"),
                              pose_frame=policy.get("pose_frame", ""), action_topic="/ackermann_cmd")
    return DatasetMapping(**common, state_topic=policy.get("odom_topic", "/odom"),
                          pose_frame=policy.get("pose_frame", "map"),
                          action_topic=corrector.get("cmd_vel_topic", "/cmd_vel"))


def load_mapping(robot: str, path: str | Path | None = None) -> DatasetMapping:
    """The robot's default mapping, overridden by the YAML file at `path` (unknown keys are an error)."""
    mapping = default_mapping(robot)
    if path is None:
        return mapping
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise DatasetError(f"mapping {path}: unreadable: {exc}") from exc
    known = {f.name for f in fields(DatasetMapping)}
    unknown = set(raw) - known
    if unknown:
        raise DatasetError(f"mapping {path}: unknown keys {sorted(unknown)} (known: {sorted(known)})")
    if "images" in raw:
        raw["images"] = {k: ImageSource(**v) for k, v in (raw["images"] or {}).items()}
    if "anonymise" in raw:
        anon = dict(raw["anonymise"] or {})
        unknown = set(anon) - {f.name for f in fields(AnonymiseConfig)}
        if unknown:
            raise DatasetError(f"mapping {path}: unknown anonymise keys {sorted(unknown)}")
        if "identifiers" in anon:
            anon["identifiers"] = tuple(anon["identifiers"])
        raw["anonymise"] = replace(mapping.anonymise, **anon)
    if "joint_limits" in raw:
        raw["joint_limits"] = {k: (float(v[0]), float(v[1])) for k, v in raw["joint_limits"].items()}
    raw.pop("robot", None)
    try:
        return replace(mapping, **raw)
    except TypeError as exc:
        raise DatasetError(f"mapping {path}: {exc}") from exc

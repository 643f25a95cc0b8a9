"""One recording -> cleansed episodes at a fixed frame rate, every dropped item counted with its reason.

Splitting. A recording is cut into episodes at: a simulator reset (`reset_topic`; at the new episode's first state
message), the clock jumping back (a state message stamped before the previous one), a task change (a new
instruction), and an idle gap (no state message for `idle_gap_s`).

Resampling. Frames are at t0 + k / fps over an episode; each feature is the newest message stamped at or before the
frame (as a running policy sees it), the action the command in force at `action_offset_s` after it. A sample older
than `max_age_s` (`image_max_age_s` for images) is stale: that tolerance is the resampling tolerance.

Drops (each counted by reason, in frames, pieces of episodes or episodes):
- `warmup`: frames at an episode's start before every input has arrived;
- `stale:<topic>`, `non_finite:<feature>`, `joint_limit:<joint>`, `bad_message:<topic>`: frames;
- `too_short`: pieces of episodes (left between dropped frames) shorter than `min_episode_frames`;
- `message_loss:<topic>`: whole episodes missing more than `max_message_loss` of a topic's messages (counted from
  the topic's own median period).
A frame dropped inside an episode splits it (a policy's chunks must not jump over missing time).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from physical_ai import convert
from physical_ai.data.mapping import DatasetMapping
from physical_ai.data.mcap_read import Message
from physical_ai.policy.observation import ObservationError, assemble_state, pad_tokens
from physical_ai.policy.spec import PolicyConfig
from physical_ai.tf import TransformBuffer

NS = 1_000_000_000
ACTION_FIELDS = {  # action name -> attribute path in each command type
    "geometry_msgs/msg/Twist": {"linear_x": "linear.x", "linear_y": "linear.y", "angular_z": "angular.z"},
    "geometry_msgs/msg/TwistStamped": {"linear_x": "twist.linear.x", "linear_y": "twist.linear.y",
                                       "angular_z": "twist.angular.z"},
    "ackermann_msgs/msg/AckermannDriveStamped": {"steering_angle": "drive.steering_angle", "speed": "drive.speed"},
}


@dataclass
class Episode:
    """A cleansed episode: per-frame arrays (frames first), source images per camera, task and facts."""

    frames: dict[str, np.ndarray]
    images: dict[str, list[Message]]            # camera key -> the Image message of each frame
    image_times_ns: list[int]                   # frame times (for matching detections to images)
    task: str
    meta: dict[str, Any]
    tf: TransformBuffer
    messages: list[Message]                     # the episode's messages (detections, camera info for masking)


@dataclass
class CleanseResult:
    """Episodes of one recording and what was dropped."""

    episodes: list[Episode] = field(default_factory=list)
    drops: Counter = field(default_factory=Counter)
    splits: Counter = field(default_factory=Counter)
    frames_in: int = 0
    positions: dict[int, int] = field(default_factory=dict)  # id(message) -> its position in the recording


def stamp_of(m: Message) -> int:
    """The message's time: its header stamp, else its log time."""
    return m.stamp_ns if m.stamp_ns is not None else m.log_time_ns


def _attr(msg: Any, path: str) -> float:
    for part in path.split("."):
        msg = getattr(msg, part)
    return float(msg)


def action_vector(m: Message, names: tuple[str, ...]) -> np.ndarray:
    """A recorded command as the spec's action vector (Twist, TwistStamped, Ackermann, Float64MultiArray)."""
    if m.schema.endswith("Float64MultiArray"):
        data = np.asarray(m.msg.data, np.float64)
        if len(data) != len(names):
            raise ValueError(f"{m.topic}: {len(data)} values for actions {list(names)}")
        return data
    fields = ACTION_FIELDS.get(m.schema)
    if fields is None:
        raise ValueError(f"{m.topic}: command type {m.schema} not supported as an action")
    missing = [n for n in names if n not in fields]
    if missing:
        raise ValueError(f"{m.topic}: actions {missing} not in a {m.schema}")
    return np.array([_attr(m.msg, fields[n]) for n in names])


def split_episodes(messages: list[Message], mapping: DatasetMapping, splits: Counter | None = None
                   ) -> list[list[Message]]:
    """Cut a recording's messages (file order) into episodes (see the module docstring); /tf_static goes to all.

    A reset takes effect at the first state message of the new episode (stamped before the last one: the clock
    jumped back; or after the reset: it did not), not at the reset message itself: messages of the ending episode
    still in flight when the reset was recorded (its last ground truth, with the success) stay with it.
    `splits`, if given, counts the cuts by reason: reset, clock_jump_back, idle_gap, task_change.
    """
    episodes: list[list[Message]] = [[]]
    statics: list[Message] = []
    last_state = None
    reset_at: int | None = None
    task = None
    idle = int(mapping.idle_gap_s * NS)
    for m in messages:
        if m.topic == "/tf_static":
            statics.append(m)
            episodes[-1].append(m)
            continue
        reason = ""
        if m.topic == mapping.reset_topic:
            reset_at = m.log_time_ns
        elif m.topic == mapping.task_topic:
            text = str(getattr(m.msg, "data", ""))
            reason = "task_change" if task is not None and text != task else ""
            task = text
        elif m.topic == mapping.state_topic:
            t = stamp_of(m)
            if reset_at is not None and (last_state is None or t < last_state or t > reset_at):
                reason, reset_at = "reset", None
            elif last_state is not None and t < last_state:
                reason = "clock_jump_back"
            elif last_state is not None and t - last_state > idle:
                reason = "idle_gap"
            last_state = t
        if reason and any(x.topic == mapping.state_topic for x in episodes[-1]):
            if splits is not None:
                splits[reason] += 1
            episodes.append(list(statics))
        episodes[-1].append(m)
    return [e for e in episodes if any(x.topic == mapping.state_topic for x in e)]


def message_loss(times_ns: np.ndarray) -> float:
    """Fraction of a topic's messages missing, from gaps longer than 1.5 median periods."""
    if len(times_ns) < 3:
        return 0.0
    gaps = np.diff(np.sort(times_ns))
    period = float(np.median(gaps))
    if period <= 0:
        return 0.0
    missing = np.sum(np.maximum(np.round(gaps[gaps > 1.5 * period] / period) - 1, 0))
    return float(missing / (len(times_ns) + missing))


class _Series:
    """Messages of one topic sorted by time, for newest-at-or-before lookups."""

    def __init__(self, messages: list[Message], by_log_time: bool = False) -> None:
        key = (lambda m: m.log_time_ns) if by_log_time else stamp_of
        self.messages = sorted(messages, key=key)
        self.times = np.array([key(m) for m in self.messages], np.int64)

    def at(self, t_ns: int) -> Message | None:
        i = int(np.searchsorted(self.times, t_ns, side="right")) - 1
        return self.messages[i] if i >= 0 else None


def cleanse_recording(messages: list[Message], mapping: DatasetMapping, spec: PolicyConfig) -> CleanseResult:
    """Split, resample and cleanse a recording's decoded messages (see the module docstring)."""
    result = CleanseResult(positions={id(m): i for i, m in enumerate(messages)})
    verdicts = success_verdicts(messages, mapping)
    for index, episode in enumerate(split_episodes(messages, mapping, result.splits)):
        _cleanse_episode(episode, index, mapping, spec, result, verdicts)
    return result


def success_verdicts(messages: list[Message], mapping: DatasetMapping) -> list[tuple[int, int, bool]]:
    """(first, last) file positions and final verdict of each run of success-label messages of one episode.

    A run ends where the labels' clock jumps back, or at a reset once a label is stamped clearly after it (labels of
    the ending episode still in flight when the reset was recorded stay in its run); a run's verdict is its latest
    message's `task_success`. Episodes are matched to runs by file position (`verdict_for`), which does not depend
    on how a reset interleaved with the last messages of the episode before it.
    """
    runs: list[list[Any]] = []
    last = reset_at = None
    for position, m in enumerate(messages):
        if m.topic == mapping.reset_topic:
            reset_at = m.log_time_ns
        if m.topic != mapping.success_topic:
            continue
        t = stamp_of(m)
        if last is None or t < last - NS // 2 or (reset_at is not None and t > reset_at + NS):
            reset_at = None
            runs.append([position, position, m])
        runs[-1][1] = position
        if t >= stamp_of(runs[-1][2]):
            runs[-1][2] = m
        last = t
    return [(a, b, bool(getattr(m.msg, "task_success", False))) for a, b, m in runs]


def verdict_for(episode: list[Message], positions: dict[int, int], verdicts: list[tuple[int, int, bool]]
                ) -> bool | None:
    """The verdict of the run of success-label messages around the middle of an episode (None: no labels)."""
    if not verdicts:
        return None
    middle = positions[id(episode[len(episode) // 2])]
    return min(verdicts, key=lambda v: 0 if v[0] <= middle <= v[1] else min(abs(v[0] - middle),
                                                                             abs(v[1] - middle)))[2]


def _tf_buffer(messages: list[Message]) -> TransformBuffer:
    buffer = TransformBuffer(cache_time_s=1e9)
    for m in messages:
        if m.topic not in ("/tf", "/tf_static"):
            continue
        for ts in m.msg.transforms:
            T = convert.transform_to_matrix(ts.transform)
            stamp = int(ts.header.stamp.sec) * NS + int(ts.header.stamp.nanosec)
            buffer.set_transform(ts.header.frame_id, ts.child_frame_id, stamp, T, static=m.topic == "/tf_static")
    return buffer


def _cleanse_episode(messages: list[Message], index: int, mapping: DatasetMapping, spec: PolicyConfig,
                     result: CleanseResult, verdicts: list[tuple[int, int, bool]]) -> None:
    by_topic: dict[str, list[Message]] = {}
    for m in messages:
        by_topic.setdefault(m.topic, []).append(m)
    obs = spec.observation
    state_msgs = by_topic.get(mapping.state_topic, [])
    for topic in (mapping.state_topic, mapping.obstacles_topic if obs.obstacles is not None else "",
                  *(im.topic for im in mapping.images.values())):
        msgs = by_topic.get(topic, [])
        if topic and msgs and message_loss(np.array([stamp_of(m) for m in msgs])) > mapping.max_message_loss:
            result.drops[f"message_loss:{topic}"] += 1
            return
    tf = _tf_buffer(messages)
    series = {t: _Series(ms, by_log_time=t == mapping.action_topic) for t, ms in by_topic.items()}
    t_start, t_end = stamp_of(min(state_msgs, key=stamp_of)), stamp_of(max(state_msgs, key=stamp_of))
    step = NS // mapping.fps
    times = np.arange(t_start, t_end + 1, step, dtype=np.int64)
    result.frames_in += len(times)
    task_msgs = by_topic.get(mapping.task_topic, [])
    task = str(task_msgs[-1].msg.data) if task_msgs else mapping.task
    rows: list[dict[str, Any] | None] = []
    started = False
    for t in times:
        row, reason = _frame(int(t), series, tf, mapping, spec)
        if row is None and not started:
            result.drops["warmup"] += 1
            continue
        started = True
        if row is None:
            result.drops[reason] += 1
        rows.append(row)
    success = verdict_for(messages, result.positions, verdicts)
    # runs of consecutive valid frames become episodes
    run: list[dict[str, Any]] = []
    for row in [*rows, None]:
        if row is not None:
            run.append(row)
            continue
        if not run:
            continue
        if len(run) < mapping.min_episode_frames:
            result.drops["too_short"] += 1
        else:
            frames = {k: np.stack([r[k] for r in run]) for k in run[0] if not k.startswith("image:")}
            images = {k.removeprefix("image:"): [r[k] for r in run] for k in run[0] if k.startswith("image:")}
            meta: dict[str, Any] = {"recording_episode": index, "start_s": round(run[0]["_t"] / NS, 3)}
            if success is not None:
                meta["success"] = success
            frames.pop("_t")
            result.episodes.append(Episode(frames, images, [r["_t"] for r in run], task, meta, tf, messages))
        run = []


def _frame(t: int, series: dict[str, _Series], tf: TransformBuffer, mapping: DatasetMapping,
           spec: PolicyConfig) -> tuple[dict[str, Any] | None, str]:
    """One frame's features at time t, or (None, the drop reason)."""
    obs = spec.observation
    row: dict[str, Any] = {"_t": t}
    max_age = int(mapping.max_age_s * NS)

    def latest(topic: str, age: int) -> Message | None:
        s = series.get(topic)
        m = s.at(t) if s is not None else None
        return m if m is not None and t - stamp_of(m) <= age else None

    state = latest(mapping.state_topic, max_age)
    if state is None:
        return None, f"stale:{mapping.state_topic}"
    try:
        if obs.state is not None:
            if state.schema.endswith("Odometry"):
                pose, twist = convert.odometry_to_arrays(state.msg)
                if mapping.pose_frame and state.msg.header.frame_id != mapping.pose_frame:
                    pose = tf.lookup(mapping.pose_frame, state.msg.header.frame_id, stamp_of(state)) @ pose
                values = assemble_state(obs.state.names, odom=(pose, twist))
            else:
                joints = convert.joint_state_to_dict(state.msg)
                for name, (lo, hi) in mapping.joint_limits.items():
                    if name in joints and not lo <= joints[name][0] <= hi:
                        return None, f"joint_limit:{name}"
                values = assemble_state(obs.state.names, joints=joints)
            if not np.isfinite(values).all():
                return None, "non_finite:observation.state"
            row["observation.state"] = values.astype(np.float32)
    except (ValueError, LookupError, ObservationError) as exc:
        return None, f"bad_message:{mapping.state_topic}" if "not finite" not in str(exc) else \
            "non_finite:observation.state"
    if obs.obstacles is not None:
        ob = latest(mapping.obstacles_topic, max_age)
        if ob is None:
            return None, f"stale:{mapping.obstacles_topic}"
        values = convert.obstacle_features(ob.msg, obs.obstacles.features.names)
        if not np.isfinite(values).all():
            return None, "non_finite:observation.obstacles"
        row["observation.obstacles"], row["observation.obstacles_mask"] = pad_tokens(values, obs.obstacles,
                                                                                   "obstacles")
    s = series.get(mapping.action_topic)
    cmd = s.at(t + int(mapping.action_offset_s * NS)) if s is not None else None
    if cmd is None or t + int(mapping.action_offset_s * NS) - cmd.log_time_ns > max_age:
        return None, f"stale:{mapping.action_topic}"
    try:
        action = action_vector(cmd, spec.action.names)
    except (ValueError, AttributeError):
        return None, f"bad_message:{mapping.action_topic}"
    if not np.isfinite(action).all():
        return None, "non_finite:action"
    row["action"] = action.astype(np.float32)
    for key, source in mapping.images.items():
        image = latest(source.topic, int(mapping.image_max_age_s * NS))
        if image is None:
            return None, f"stale:{source.topic}"
        row[f"image:{key}"] = image
    return row, ""

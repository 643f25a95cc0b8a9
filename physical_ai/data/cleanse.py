"""One recording -> cleansed episodes at a fixed frame rate, every dropped item counted with its reason.

Splitting. A recording is cut into episodes at: a simulator reset (`reset_topic`; at the new episode's first state
message), the clock jumping back (a state message stamped before the previous one), a task change (a new
instruction), and an idle gap (no state message for `idle_gap_s`).

Clocks. Times are the header stamps' (simulation time under a simulator). A recorder logs receive times, usually
on the system clock (ours, `ros2 bag record`), and may keep send times; those (else the log times) are moved onto
the stamps' clock (`align_to_stamps`) before they are used: for headerless messages (a Twist command) and for when
a command was given. Under a simulator the recorded /clock (`clock_topic`) gives each send time the simulation time
its sender's clock read; otherwise the state topic's send times and stamps map one clock onto the other.

Resampling. Frames are at t0 + k / fps over an episode; each feature is the newest message stamped at or before the
frame (as a running policy sees it), the action the command in force (sent last) at `action_offset_s` after it. A
sample older than `max_age_s` (`image_max_age_s` for images) is stale: that tolerance is the resampling tolerance.

Drops (each counted by reason, in frames, pieces of episodes or episodes):
- `warmup`: frames at an episode's start before every input has arrived;
- `stale:<topic>`, `non_finite:<feature>`, `joint_limit:<joint>`, `bad_message:<topic>`: frames;
- `too_short`: pieces of episodes (left between dropped frames) shorter than `min_episode_frames`;
- `message_loss:<topic>`: whole episodes missing more than `max_message_loss` of a topic's messages (counted from
  the topic's own median period, over the episode's time span).
A frame dropped inside an episode splits it (a policy's chunks must not jump over missing time).
"""

from __future__ import annotations

import bisect
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
LATE_RESET_NS = NS // 2  # a reset this close to a clock jump back (on either side) is that jump's
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


def align_to_stamps(messages: list[Message], reference_topic: str, clock_topic: str = "") -> None:
    """Set every message's `aligned_ns`: its send time moved onto the clock of `reference_topic`'s header stamps.

    Where `clock_topic` (rosgraph_msgs/Clock, a simulator's /clock) was recorded with send times, a message's time
    runs on from the newest clock sent at or before it (`_align_to_clock`): what a node on simulation time reads
    when it sends, and the simulation time at which the simulator, stepping in small chunks, takes up a command. This
    holds through a simulator's stalls, where the state topic's sparser messages do not: interpolated between two
    odometry messages around a 60 ms stall, a command was placed up to 43 ms off its clock time (recorded ROS runs
    under load), and a frame's action became a command from outside its window.

    Recorders log on the system clock (ros2 bag record's default, and ours) while a simulated robot stamps its
    messages in simulation time, which starts again at every reset and runs slower than the wall clock on a loaded
    machine; a headerless message (a Twist on /cmd_vel) has nothing but its recorder times. Where the recorder kept
    every message's send time (`publish_time_ns`, the publisher's clock) it is used rather than the log (receive)
    time: a busy recorder takes messages tens of milliseconds late and unevenly across topics, the send time is not
    delayed (it is the sending host's clock: across hosts, their clocks must be synchronised). The reference (the
    state topic, stamped when published) maps these times to stamps: linearly between two reference messages on one
    clock; from the nearest one before (else after) at rate 1 where the stamps jump back between them (a reset) or
    at either end. A recording logged on the stamps' clock maps to itself.
    """
    sent = all(m.publish_time_ns > 0 for m in messages)  # one clock for all: never mix send and receive times
    if sent and clock_topic and _align_to_clock(messages, clock_topic):
        return
    refs = np.array([i for i, m in enumerate(messages) if m.topic == reference_topic and m.stamp_ns is not None],
                    np.int64)
    if not len(refs):
        return
    times = np.array([m.publish_time_ns if sent else m.log_time_ns for m in messages], np.int64)
    ref_time, ref_stamp = times[refs], np.array([messages[i].stamp_ns for i in refs], np.int64)
    if np.all(np.diff(ref_time) >= 0):  # the last reference sent at or before each message
        before = np.searchsorted(ref_time, times, side="right") - 1
    else:  # a recorder logging on the simulation clock (it jumps back at resets): the last one in the file
        before = np.searchsorted(refs, np.arange(len(messages)), side="right") - 1
    after = before + 1
    has_before, has_after = before >= 0, after < len(refs)
    b, a = np.clip(before, 0, len(refs) - 1), np.clip(after, 0, len(refs) - 1)
    t0, s0, t1, s1 = ref_time[b], ref_stamp[b], ref_time[a], ref_stamp[a]
    between = has_before & has_after & (s1 >= s0) & (t1 > t0)
    rate = np.where(between, (s1 - s0) / np.maximum(t1 - t0, 1), 1.0)
    aligned = np.where(has_before | between, s0 + np.round((times - t0) * rate).astype(np.int64), s1 - (t1 - times))
    for m, t in zip(messages, aligned.tolist(), strict=True):
        m.aligned_ns = t


def _align_to_clock(messages: list[Message], clock_topic: str) -> bool:
    """Align by the recorded clock (see `align_to_stamps`); False where it was not recorded.

    Between two recorded clocks a message's time runs on at rate 1 from the earlier one, up to the later one: a
    recorder drops best-effort /clock messages when busy (or keeps them at a lower rate), and a gap must not hold a
    message's time back by its length; across a stall the error stays within one of the simulator's steps.
    """
    clocks = sorted((m.publish_time_ns, reading) for m in messages
                    if m.topic == clock_topic and (reading := _clock_reading(m.msg)) is not None)
    if not clocks:
        return False
    sent = np.array([c[0] for c in clocks], np.int64)
    reading = np.array([c[1] for c in clocks], np.int64)
    times = np.array([m.publish_time_ns for m in messages], np.int64)
    i = np.searchsorted(sent, times, side="right") - 1
    b, a = np.maximum(i, 0), np.minimum(i + 1, len(clocks) - 1)
    run_on = reading[b] + (times - sent[b])
    # capped at the next clock, unless that one starts a new episode (the clock jumped back: a reset)
    capped = np.where((a > b) & (reading[a] >= reading[b]), np.minimum(run_on, reading[a]), run_on)
    # sent before the first clock: that clock less the time to it (a simulator publishes /clock from its start)
    aligned = np.where(i >= 0, capped, reading[0] - (sent[0] - times))
    for m, t in zip(messages, aligned.tolist(), strict=True):
        m.aligned_ns = t
    return True


def _clock_reading(msg: Any) -> int | None:
    """A rosgraph_msgs/Clock's time [ns]; None for anything else or an invalid time."""
    try:
        return convert.stamp_to_ns(msg.clock) if msg.clock.sec >= 0 else None
    except (AttributeError, TypeError, ValueError):
        return None


def _attr(msg: Any, path: str) -> float:
    for part in path.split("."):
        msg = getattr(msg, part)
    return float(msg)


def action_vector(m: Message, names: tuple[str, ...], t_ns: int | None = None) -> np.ndarray:
    """A recorded command as the spec's action vector (Twist, TwistStamped, Ackermann, Float64MultiArray).

    An ActionChunk (a policy's plan, before the corrector) gives its step in force at `t_ns` (on the stamps' clock).
    """
    if m.schema.endswith("ActionChunk"):
        return _chunk_step(m, names, t_ns)
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


def _chunk_step(m: Message, names: tuple[str, ...], t_ns: int | None) -> np.ndarray:
    chunk = m.msg
    missing = [n for n in names if n not in chunk.action_names]
    if missing:
        raise ValueError(f"{m.topic}: actions {missing} not in the chunk's {list(chunk.action_names)}")
    if t_ns is None or not chunk.dt > 0:
        raise ValueError(f"{m.topic}: a chunk step needs a time and a positive dt")
    dt_ns = round(float(chunk.dt) * 1e6) * 1000    # dt is a float32: 0.1 s would read as 100 000 001 ns
    k = (t_ns - convert.stamp_to_ns(chunk.start_time)) // dt_ns
    if not 0 <= k < chunk.horizon:
        raise LookupError(f"{m.topic}: no step of this chunk is in force at {t_ns} ns")
    values = np.asarray(chunk.values, np.float64).reshape(chunk.horizon, len(chunk.action_names))
    return values[k, [list(chunk.action_names).index(n) for n in names]]


def resets_with_clock_jump(messages: list[Message], mapping: DatasetMapping) -> dict[int, int]:
    """Resets shown by the state's clock jumping back: file position -> that of the first state after the jump.

    The reset comes from another publisher than the state, so it may be recorded a little before the jump (with
    the ending episode's last states, still stamped on its clock, after it) or a little after (with the new
    episode's first states before it). A reset is the jump's when the nearest jump on its side in file order is
    within `LATE_RESET_NS` of it, both on the clock (either side: a reset recorded after the jump was sent before
    it, and its send time aligns onto the old clock; a recorder logging on the simulation clock logs one recorded
    before it on the new one) and in the stamps of the states recorded between them.
    """
    positions: list[int] = []
    stamps: list[int] = []
    jumps: list[int] = []  # indices into positions/stamps of the first state after each jump
    for position, m in enumerate(messages):
        if m.topic == mapping.state_topic:
            if stamps and m.time_ns < stamps[-1]:
                jumps.append(len(stamps))
            positions.append(position)
            stamps.append(m.time_ns)
    starts = [positions[j] for j in jumps]
    out = {}
    for position, m in enumerate(messages):
        if m.topic != mapping.reset_topic:
            continue
        k = bisect.bisect_right(starts, position)  # jumps[k]: the next one; jumps[k - 1]: the previous one
        if k < len(jumps):
            j = jumps[k]
            before, after = stamps[j - 1], stamps[j]
            between = stamps[bisect.bisect_right(positions, position):j]  # still in flight on the old clock
            if min(abs(m.time_ns - before), abs(m.time_ns - after)) <= LATE_RESET_NS and \
                    min(between, default=before) >= before - LATE_RESET_NS:
                out[position] = positions[j]
                continue
        if k > 0:
            j = jumps[k - 1]
            between = stamps[j:bisect.bisect_right(positions, position)]  # the new episode's first states
            # on the new clock, or on the old one: sent before the jump (its send time aligned), recorded after it
            near = min(abs(m.time_ns - stamps[j]), abs(m.time_ns - stamps[j - 1]))
            if near <= LATE_RESET_NS and max(between) <= stamps[j] + LATE_RESET_NS:
                out[position] = positions[j]
    return out


def split_episodes(messages: list[Message], mapping: DatasetMapping, splits: Counter | None = None
                   ) -> list[list[Message]]:
    """Cut a recording's messages (file order) into episodes (see the module docstring).

    A reset shown by the state's clock jumping back (`resets_with_clock_jump`, recorded before or after the jump)
    cuts at the jump. Any other reset (a simulator whose clock does not restart) cuts at the first state message
    stamped after it: messages of the ending episode still in flight when the reset was recorded (its last ground
    truth, with the success) stay with it.
    /tf_static is latched: every episode starts with the static transforms in force, and one recorded since the
    last state message goes with the next state message's episode (a simulator publishes the new start pose's
    map -> odom as it resets, before the new episode's first state; the ending episode keeps its own). States
    still in flight after a reset (stamped on the old clock) leave it for the new episode.
    `splits`, if given, counts the cuts by reason: reset, clock_jump_back, idle_gap, task_change.
    """
    with_jump = resets_with_clock_jump(messages, mapping)
    episodes: list[list[Message]] = [[]]
    statics: list[Message] = []      # every /tf_static so far (a newer transform of a frame replaces the older)
    pending: list[Message] = []      # /tf_static recorded since the last state message
    cuts: Counter = Counter()
    last_state = None
    reset_at: int | None = None      # a reset without a clock jump: cut at the first state stamped after this
    jump_due = False                 # a reset recorded before its clock jump
    last_cut = ""
    task = None
    idle = int(mapping.idle_gap_s * NS)
    for position, m in enumerate(messages):
        if m.topic == "/tf_static":
            pending.append(m)
            continue
        reason = ""
        if m.topic == mapping.reset_topic:
            if position not in with_jump:
                reset_at = m.time_ns
            elif with_jump[position] > position:
                jump_due = True
            elif last_cut == "clock_jump_back":  # recorded after the jump it caused
                cuts["clock_jump_back"] -= 1
                cuts["reset"] += 1
                last_cut = "reset"
        elif m.topic == mapping.task_topic:
            text = str(getattr(m.msg, "data", ""))
            reason = "task_change" if task is not None and text != task else ""
            task = text
        elif m.topic == mapping.state_topic:
            t = m.time_ns
            if last_state is not None and t < last_state:
                reason = "reset" if jump_due or reset_at is not None else "clock_jump_back"
                jump_due = False
            elif reset_at is not None and (last_state is None or t > reset_at):
                reason = "reset"
            elif last_state is not None and t - last_state > idle:
                reason = "idle_gap"
            if reason:
                reset_at = None
            last_state = t
        if reason and any(x.topic == mapping.state_topic for x in episodes[-1]):
            cuts[reason] += 1
            last_cut = reason
            episodes.append(list(statics))
        if m.topic == mapping.state_topic and (reason or (reset_at is None and not jump_due)):
            statics += pending
            episodes[-1] += pending
            pending = []
        episodes[-1].append(m)
    if splits is not None:
        splits.update(+cuts)
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

    def __init__(self, messages: list[Message], by_aligned: bool = False) -> None:
        key = (lambda m: m.aligned_ns) if by_aligned else (lambda m: m.time_ns)
        self.messages = sorted(messages, key=key)
        self.times = np.array([key(m) for m in self.messages], np.int64)

    def at(self, t_ns: int) -> Message | None:
        i = int(np.searchsorted(self.times, t_ns, side="right")) - 1
        return self.messages[i] if i >= 0 else None


def cleanse_recording(messages: list[Message], mapping: DatasetMapping, spec: PolicyConfig) -> CleanseResult:
    """Split, resample and cleanse a recording's decoded messages (see the module docstring)."""
    result = CleanseResult(positions={id(m): i for i, m in enumerate(messages)})
    align_to_stamps(messages, mapping.state_topic, mapping.clock_topic)
    messages = [m for m in messages if m.topic != mapping.clock_topic]  # it only times the others (hundreds per s)
    verdicts = success_verdicts(messages, mapping)
    for index, episode in enumerate(split_episodes(messages, mapping, result.splits)):
        _cleanse_episode(episode, index, mapping, spec, result, verdicts)
    return result


def success_verdicts(messages: list[Message], mapping: DatasetMapping) -> list[tuple[int, int, bool]]:
    """(first, last) file positions and final verdict of each run of success-label messages of one episode.

    A run ends where the labels' clock jumps back, or at a reset once a label is stamped clearly after it (labels of
    the ending episode still in flight when the reset was recorded stay in its run; a reset recorded after the
    state's clock jumped, where the labels' clock has jumped too, ends nothing more); a run's verdict is its latest
    message's `task_success`. Episodes are matched to runs by file position (`verdict_for`), which does not depend
    on how a reset interleaved with the last messages of the episode before it.
    """
    runs: list[list[Any]] = []
    last = reset_at = None
    with_jump = resets_with_clock_jump(messages, mapping)
    for position, m in enumerate(messages):
        # a reset recorded after its clock jump, where the labels' clock has jumped too, ends nothing more
        if m.topic == mapping.reset_topic and not (runs and runs[-1][0] >= with_jump.get(position, position + 1)):
            reset_at = m.time_ns
        if m.topic != mapping.success_topic:
            continue
        t = m.time_ns
        if last is None or t < last - NS // 2 or (reset_at is not None and t > reset_at + NS):
            reset_at = None
            runs.append([position, position, m])
        runs[-1][1] = position
        if t >= runs[-1][2].time_ns:
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
    t_start, t_end = min(m.time_ns for m in state_msgs), max(m.time_ns for m in state_msgs)
    for topic in (mapping.state_topic, mapping.obstacles_topic if obs.obstacles is not None else "",
                  *(im.topic for im in mapping.images.values())):
        # only over the episode's own span: a message of the episode before, stamped on its clock and recorded
        # after the reset, would read as a gap of many seconds
        times = np.array([m.time_ns for m in by_topic.get(topic, []) if t_start <= m.time_ns <= t_end], np.int64)
        if topic and len(times) and message_loss(times) > mapping.max_message_loss:
            result.drops[f"message_loss:{topic}"] += 1
            return
    tf = _tf_buffer(messages)
    series = {t: _Series(ms, by_aligned=t == mapping.action_topic) for t, ms in by_topic.items()}
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
        return m if m is not None and t - m.time_ns <= age else None

    state = latest(mapping.state_topic, max_age)
    if state is None:
        return None, f"stale:{mapping.state_topic}"
    try:
        if obs.state is not None:
            if state.schema.endswith("Odometry"):
                pose, twist = convert.odometry_to_arrays(state.msg)
                if mapping.pose_frame and state.msg.header.frame_id != mapping.pose_frame:
                    pose = tf.lookup(mapping.pose_frame, state.msg.header.frame_id, state.time_ns) @ pose
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
    t_action = t + int(mapping.action_offset_s * NS)
    cmd = s.at(t_action) if s is not None else None
    # A chunk is as fresh as its plan reaches (checked by its step); a command is the one sent last.
    if cmd is None or (not cmd.schema.endswith("ActionChunk") and t_action - cmd.aligned_ns > max_age):
        return None, f"stale:{mapping.action_topic}"
    try:
        action = action_vector(cmd, spec.action.names, t_action)
    except LookupError:     # a chunk that has run out (or not begun): the policy had no plan for this frame
        return None, f"stale:{mapping.action_topic}"
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

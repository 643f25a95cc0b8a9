"""MCAP recording of ROS 2 topics, readable by `ros2 bag play` (rosbag2_storage_mcap) and Foxglove.

Messages are stored as the CDR bytes that came off the wire (no re-serialisation), with `ros2msg` schemas: the
message definition followed by the definition of every nested type, each after a separator line and a
`MSG: pkg/Type` line, as rosbag2 writes them. Definitions are read from the installed `share/<pkg>/msg/*.msg`.
Each channel carries its publishers' `offered_qos_profiles` in rosbag2's YAML form, so `ros2 bag play` offers
what was offered (a latched /tf_static replays transient-local).

The file is chunked (`chunk_size`) and zstd-compressed. It survives how recordings end:
- a clean stop (SIGINT, SIGTERM, node shutdown) finishes it with its summary and index: the messages are written
  by a thread of their own, so a signal (KeyboardInterrupt lands in the main thread) never interrupts a write
  half-way, which left an index pointing past a chunk's data;
- after SIGKILL or a power cut, every chunk completed before it is on disk (chunks go to the OS as they close)
  and `repair` (`physai recording repair`) rebuilds an indexed file from them; only the open chunk is lost.
"""

from __future__ import annotations

import io
import os
import queue
import re
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard
from mcap.exceptions import McapError
from mcap.stream_reader import StreamReader, breakup_chunk
from mcap.writer import CompressionType, Writer

_SEPARATOR = "=" * 80
BATCH_PERIOD_S = 0.05  # the writer thread wakes at most this often [s] (close() waits at most this much more)
_PRIMITIVES = {"bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32",
               "int64", "uint64", "string", "wstring"}
_ARRAY_SUFFIX = re.compile(r"(<=\d+)?(\[[^\]]*\])?$")


def _share_dirs() -> list[Path]:
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    prefixes.append(sys.prefix)
    return [Path(p) / "share" for p in prefixes]


def message_definition(msg_type: str) -> str:
    """The .msg text of `pkg/msg/Type` (or `pkg/Type`); raises LookupError when it is not installed."""
    pkg, name = _split(msg_type)
    for share in _share_dirs():
        path = share / pkg / "msg" / f"{name}.msg"
        if path.is_file():
            return path.read_text()
    raise LookupError(f"definition of {pkg}/msg/{name} not found under AMENT_PREFIX_PATH or {_share_dirs()}")


def ros2msg_schema(msg_type: str) -> str:
    """The full `ros2msg` schema text of a type: its definition, then each nested type's, depth first."""
    pkg, name = _split(msg_type)
    main = message_definition(f"{pkg}/{name}")
    parts = [main.rstrip("\n")]
    seen = {f"{pkg}/{name}"}
    queue = _dependencies(main, pkg)
    while queue:
        dep = queue.pop(0)
        if dep in seen:
            continue
        seen.add(dep)
        text = message_definition(dep)
        parts.append(f"{_SEPARATOR}\nMSG: {dep}\n{text.rstrip()}")
        queue.extend(_dependencies(text, dep.split("/")[0]))
    return "\n".join(parts) + "\n"


def _split(msg_type: str) -> tuple[str, str]:
    pieces = msg_type.split("/")
    if len(pieces) == 3 and pieces[1] == "msg":
        return pieces[0], pieces[2]
    if len(pieces) == 2:
        return pieces[0], pieces[1]
    raise ValueError(f"not a message type name: {msg_type!r} (expected pkg/msg/Type)")


def _dependencies(definition: str, own_pkg: str) -> list[str]:
    deps = []
    for line in definition.splitlines():
        code = line.split("#", 1)[0].strip()
        if not code or "=" in code:  # blank, comment or constant
            continue
        base = _ARRAY_SUFFIX.sub("", code.split()[0])
        if base in _PRIMITIVES:
            continue
        if base == "Header":
            deps.append("std_msgs/Header")
        else:
            deps.append(base if "/" in base else f"{own_pkg}/{base}")
    return deps


# rmw's names of QoS policy values, as rosbag2 (metadata version >= 9) writes them
_POLICY_NAMES = {
    "history": {0: "system_default", 1: "keep_last", 2: "keep_all"},
    "reliability": {0: "system_default", 1: "reliable", 2: "best_effort", 3: "unknown", 4: "best_available"},
    "durability": {0: "system_default", 1: "transient_local", 2: "volatile", 3: "unknown", 4: "best_available"},
    "liveliness": {0: "system_default", 1: "automatic", 3: "manual_by_topic", 4: "unknown", 5: "best_available"},
}


def offered_qos_yaml(profiles: Iterable[Any]) -> str:
    """rosbag2's `offered_qos_profiles` YAML for publishers' QoS profiles (rclpy `QoSProfile`s).

    One list entry per publisher: history, depth, reliability, durability, deadline, lifespan, liveliness,
    liveliness_lease_duration ({sec, nsec}) and avoid_ros_namespace_conventions, enums by rmw's names.
    """
    lines: list[str] = []
    for qos in profiles:
        entries = [("history", _policy("history", qos.history)), ("depth", str(int(qos.depth))),
                   ("reliability", _policy("reliability", qos.reliability)),
                   ("durability", _policy("durability", qos.durability))]
        durations = {"deadline": qos.deadline, "lifespan": qos.lifespan,
                     "liveliness_lease_duration": qos.liveliness_lease_duration}
        for i, (key, value) in enumerate(entries):
            lines.append(f"{'- ' if i == 0 else '  '}{key}: {value}")
        for key in ("deadline", "lifespan"):
            lines += _duration_lines(key, durations[key])
        lines.append(f"  liveliness: {_policy('liveliness', qos.liveliness)}")
        lines += _duration_lines("liveliness_lease_duration", durations["liveliness_lease_duration"])
        lines.append(f"  avoid_ros_namespace_conventions: {'true' if qos.avoid_ros_namespace_conventions else 'false'}")
    return "\n".join(lines) + ("\n" if lines else "")


def _policy(kind: str, value: Any) -> str:
    return _POLICY_NAMES[kind].get(int(getattr(value, "value", value)), "unknown")


def _duration_lines(key: str, duration: Any) -> list[str]:
    ns = int(getattr(duration, "nanoseconds", duration))
    if ns < 0 or ns >= 2**63 - 1:  # rmw's "infinite": RMW_DURATION_INFINITE
        sec, nsec = 9223372036, 854775807
    else:
        sec, nsec = divmod(ns, 1_000_000_000)
    return [f"  {key}:", f"    sec: {sec}", f"    nsec: {nsec}"]


class _DirectStream:
    """A write-only file for the MCAP writer whose writes go straight to the OS (no user-space buffer).

    The writer emits a closed chunk with its message indexes in a few writes; unbuffered, they are in the page
    cache at once and survive the process being killed.
    """

    def __init__(self, path: Path) -> None:
        self._raw = io.FileIO(path, "w")
        self._position = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data)
        while view:
            written = self._raw.write(view)
            view = view[written:]
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        """Nothing is buffered."""

    def close(self) -> None:
        self._raw.close()

    @property
    def closed(self) -> bool:
        return self._raw.closed


@dataclass
class RecorderStats:
    """What a recorder has done so far."""

    received: int = 0           # handed to `write` (queued or dropped)
    messages: int = 0           # written to the file
    bytes_in: int = 0           # CDR bytes written
    dropped: int = 0            # refused because the write queue was over its byte limit (or after close)
    per_topic: Counter[str] = field(default_factory=Counter)


class McapRecorder:
    """Writes serialized ROS 2 messages to a chunked, zstd-compressed MCAP file on a writer thread.

    `write` only queues (safe from any thread, cheap in a subscription callback); `close` drains the queue and
    finishes the file. A queue holding more than `max_queue_bytes` (a disk that cannot keep up) drops new messages
    and counts them in `stats.dropped`, rather than growing without bound.
    """

    def __init__(self, path: str | os.PathLike[str], chunk_size: int = 1 << 20, compression: str = "zstd",
                 max_queue_bytes: int = 256 << 20) -> None:
        """Open the file and start the writer thread.

        Args:
            path: output .mcap file (its folder is created).
            chunk_size: uncompressed bytes per chunk; what a SIGKILL can lose at most [bytes].
            compression: "zstd", "lz4" or "none".
            max_queue_bytes: largest backlog of unwritten messages [bytes].
        """
        types = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}
        if compression not in types:
            raise ValueError(f"compression: {compression!r} not one of {sorted(types)}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._stream = _DirectStream(self.path)
        self._writer = Writer(self._stream, chunk_size=chunk_size, compression=types[compression])
        self._writer.start(profile="ros2", library="physical_ai_stack")
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, int] = {}
        self._lock = threading.Lock()  # registration (any thread) vs. the writer thread's writes
        self._queue: queue.SimpleQueue[tuple[str, bytes, int, int] | None] = queue.SimpleQueue()
        self._queued_bytes = 0
        self._backlog_lock = threading.Lock()
        self._max_queue_bytes = max_queue_bytes
        self._accepting = True
        self.stats = RecorderStats()
        self._thread = threading.Thread(target=self._run, name="mcap-writer", daemon=True)
        self._thread.start()

    @property
    def messages(self) -> int:
        """Messages written so far."""
        return self.stats.messages

    def add_topic(self, topic: str, msg_type: str, offered_qos_yaml: str = "") -> None:
        """Register a topic of type `pkg/msg/Type` (idempotent) with its publishers' QoS (rosbag2 YAML)."""
        with self._lock:
            if topic in self._channels:
                return
            if msg_type not in self._schemas:
                pkg, name = _split(msg_type)
                self._schemas[msg_type] = self._writer.register_schema(
                    name=f"{pkg}/msg/{name}", encoding="ros2msg", data=ros2msg_schema(msg_type).encode())
            metadata = {"offered_qos_profiles": offered_qos_yaml} if offered_qos_yaml else {}
            self._channels[topic] = self._writer.register_channel(
                topic=topic, message_encoding="cdr", schema_id=self._schemas[msg_type], metadata=metadata)

    def write(self, topic: str, data: bytes, log_time_ns: int, publish_time_ns: int | None = None) -> bool:
        """Queue one CDR-serialized message of a registered topic; False when dropped (backlog full, closed)."""
        size = len(data)
        with self._backlog_lock:
            self.stats.received += 1
            if not self._accepting or self._queued_bytes + size > self._max_queue_bytes:
                self.stats.dropped += 1
                return False
            self._queued_bytes += size
            # queued under the lock: nothing can follow close()'s end marker, so every accepted message is written
            self._queue.put((topic, data, log_time_ns, log_time_ns if publish_time_ns is None else publish_time_ns))
        return True

    def _run(self) -> None:
        sequence = 0
        while True:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            finished = batch[-1] is None  # close() queues None last and accepts nothing after it
            written = 0
            with self._lock:
                for topic, data, log_time, publish_time in batch[:-1] if finished else batch:
                    self._writer.add_message(channel_id=self._channels[topic], log_time=log_time, data=data,
                                             publish_time=publish_time, sequence=sequence)
                    sequence += 1
                    written += len(data)
                    self.stats.per_topic[topic] += 1
                self.stats.messages += len(batch) - finished
                self.stats.bytes_in += written
            with self._backlog_lock:
                self._queued_bytes -= written
            if finished:
                return
            # Let messages gather: one wake-up of this thread per batch rather than one per message (at ~500
            # messages/s each wake-up was a thread switch and a GIL hand-over).
            time.sleep(BATCH_PERIOD_S)

    def close(self) -> None:
        """Write what is queued, then finish the file (summary, statistics, index); idempotent."""
        with self._backlog_lock:
            closing, self._accepting = self._accepting, False
            if closing:
                self._queue.put(None)
        self._thread.join()
        if not closing:
            return
        with self._lock:
            self._writer.finish()
            self._stream.close()


@dataclass(frozen=True)
class RepairResult:
    """What `repair` recovered."""

    messages: int
    chunks: int
    channels: int
    complete: bool              # the input already ended with a summary (nothing was lost)
    error: str                  # why reading stopped early ('' when it did not)


def repair(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> RepairResult:
    """Rebuild an indexed MCAP from a recording cut short (SIGKILL, power loss, full disk).

    Reads records in file order and keeps every complete chunk's schemas, channels (with their metadata) and
    messages; stops at the first truncated or corrupt record (the chunk that was being written). The output is
    a new, finished file with a summary and statistics; the input is not modified.
    """
    source, target = Path(source), Path(target)
    if source.resolve() == target.resolve():
        raise ValueError("repair writes a new file: the output must differ from the input")
    writer = Writer(str(target), compression=CompressionType.ZSTD)
    schema_ids: dict[int, int] = {}
    channel_ids: dict[int, int] = {}
    pending_channels: dict[int, Any] = {}
    messages = chunks = 0
    complete, error = False, ""
    from mcap.records import Channel, Chunk, DataEnd, Footer, Header, Message, Schema

    with open(source, "rb") as f:
        reader = StreamReader(f, emit_chunks=True, validate_crcs=True)
        started = False
        try:
            for record in reader.records:
                if isinstance(record, Header):
                    writer.start(profile=record.profile, library=record.library)
                    started = True
                elif isinstance(record, Chunk):
                    for item in breakup_chunk(record, validate_crc=True):
                        if isinstance(item, Schema) and item.id not in schema_ids:
                            schema_ids[item.id] = writer.register_schema(item.name, item.encoding, item.data)
                        elif isinstance(item, Channel) and item.id not in channel_ids:
                            pending_channels[item.id] = item
                        elif isinstance(item, Message):
                            _register(writer, item.channel_id, pending_channels, channel_ids, schema_ids)
                            writer.add_message(channel_ids[item.channel_id], item.log_time, item.data,
                                               item.publish_time, item.sequence)
                            messages += 1
                    chunks += 1
                elif isinstance(record, Schema) and record.id not in schema_ids:
                    schema_ids[record.id] = writer.register_schema(record.name, record.encoding, record.data)
                elif isinstance(record, Channel) and record.id not in channel_ids:
                    pending_channels[record.id] = record
                elif isinstance(record, Message):
                    _register(writer, record.channel_id, pending_channels, channel_ids, schema_ids)
                    writer.add_message(channel_ids[record.channel_id], record.log_time, record.data,
                                       record.publish_time, record.sequence)
                    messages += 1
                elif isinstance(record, (DataEnd, Footer)):
                    complete = True
                    break
        except (McapError, EOFError, ValueError, KeyError, OSError, struct.error, zstandard.ZstdError) as exc:
            # the first truncated or corrupt record: the chunk being written when the recording was cut
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if not started:
            raise ValueError(f"{source}: not an MCAP file (no header)")
    for channel_id in list(pending_channels):  # channels announced in the last complete chunk, without messages
        _register(writer, channel_id, pending_channels, channel_ids, schema_ids)
    writer.finish()
    return RepairResult(messages=messages, chunks=chunks, channels=len(channel_ids), complete=complete, error=error)


def _register(writer: Writer, channel_id: int, pending: dict[int, Any], channel_ids: dict[int, int],
              schema_ids: dict[int, int]) -> None:
    if channel_id in channel_ids:
        return
    channel = pending.pop(channel_id, None)
    if channel is None:
        raise KeyError(f"message on channel {channel_id} before its channel record")
    schema = schema_ids.get(channel.schema_id, 0)
    channel_ids[channel_id] = writer.register_channel(channel.topic, channel.message_encoding, schema,
                                                      dict(channel.metadata))

"""Reading ROS 2 MCAP recordings for ingest: every readable message, or a clear error naming the file.

Recordings are read front to back (the MCAP stream reader), never through the summary index: a file whose index
is missing (unindexed, or a recorder stopped before it wrote the summary) or wrong (a last chunk lost while the
index still points into it) is read in full. Messages are decoded with the `ros2msg` schemas stored in the file
(`mcap_ros2`), so no message package needs to be installed. Chunk CRCs are checked.

What can go wrong, and what happens (`RecordingError` always names the file and says what was read before):
- not an MCAP file, or a corrupted record / chunk (bad CRC, undecompressible): `RecordingError`;
- truncated (the file ends inside a record, or before the footer: a recorder killed mid-write): `RecordingError`,
  unless `salvage=True`, which keeps every message of the complete chunks before the damage and says so in
  `ReadResult.notes` (`physai recording repair` rewrites such a file);
- the summary claims more messages than the file holds: read what is there, the shortfall in `ReadResult`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Log times going back by more than this are a clock jump (a recorder on the simulation clock, at a reset); less is
# receive times of different topics written in callback order (ours and rosbag2's log the middleware's receive time)
CLOCK_JUMP_BACK_NS = 1_000_000_000


class RecordingError(ValueError):
    """A recording cannot be used; the message names the file and the damage."""


@dataclass
class Message:
    """One decoded message: topic, schema name, log time [ns], header stamp [ns] (None without a header).

    `publish_time_ns` is the record's publish time: the publisher's send time where the recorder kept it (ours, and
    rosbag2's since Jazzy), else 0 or the log time. `index` is the message's position in the file; a message of a
    `lazy` topic holds only its header (its payload, e.g. an image, is decoded again by `read_selected` when
    needed). `aligned_ns` is the send time (else the log time) moved onto the clock of the header stamps
    (`cleanse.align_to_stamps`): a recorder may log on the system clock while the robot's messages are stamped in
    simulation time.
    """

    topic: str
    schema: str
    log_time_ns: int
    stamp_ns: int | None
    msg: Any
    index: int = -1
    aligned_ns: int | None = None
    publish_time_ns: int = 0

    @property
    def time_ns(self) -> int:
        """The message's time on the stamps' clock: its header stamp, else its aligned time, else its log time."""
        if self.stamp_ns is not None:
            return self.stamp_ns
        return self.aligned_ns if self.aligned_ns is not None else self.log_time_ns


@dataclass
class ReadResult:
    """Messages of the wanted topics, in file order, with facts about the file."""

    path: Path
    messages: list[Message] = field(default_factory=list)
    topics: dict[str, str] = field(default_factory=dict)          # every channel: topic -> schema name
    counts: dict[str, int] = field(default_factory=dict)          # messages read per topic (all topics)
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)  # channel metadata per topic
    indexed: bool = False
    claimed_messages: int | None = None                           # the summary's statistics, if any
    read_messages: int = 0
    notes: list[str] = field(default_factory=list)
    duration_s: float = 0.0                                       # recorded time, clock jumps back excluded


def header_stamp_ns(msg: Any) -> int | None:
    """A decoded message's header stamp in ns, or None when it has no header."""
    header = getattr(msg, "header", None)
    stamp = getattr(header, "stamp", None)
    if stamp is None:
        return None
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def read_recording(path: str | Path, topics: Iterable[str] | None = None, salvage: bool = False,
                   decode: Callable[[str], bool] | None = None, lazy: Iterable[str] = ()) -> ReadResult:
    """Read (and decode) the messages of `topics` (None: all) from an MCAP file.

    Args:
        path: the recording.
        topics: topics to decode; others are only counted.
        salvage: on truncation keep the complete messages before it instead of raising.
        decode: optional predicate over topic names, overriding `topics`.
        lazy: topics whose messages keep only their header in memory (images: a long recording's would not fit).

    Raises:
        RecordingError: naming the file and the damage (see the module docstring).
    """
    from mcap.exceptions import McapError
    from mcap.records import Channel, Footer, Header, Schema, Statistics, SummaryOffset
    from mcap.records import Message as McapMessage
    from mcap.stream_reader import CRCValidationError, StreamReader
    from mcap_ros2.decoder import DecoderFactory

    path = Path(path)
    if not path.is_file():
        raise RecordingError(f"{path}: recording missing")
    wanted = set(topics) if topics is not None else None
    keep = decode or (lambda t: wanted is None or t in wanted)
    lazy = set(lazy)
    result = ReadResult(path=path)
    schemas: dict[int, Any] = {}
    channels: dict[int, Any] = {}
    decoders: dict[int, Callable[[bytes], Any] | None] = {}
    factory = DecoderFactory()
    last_ns = None  # the newest log time of the present stretch
    recorded_ns = 0  # time covered, summed over the stretches between clock jumps back (simulator resets)
    finished = started = False
    with open(path, "rb") as f:
        reader = StreamReader(f, validate_crcs=True, record_size_limit=1 << 30)
        try:
            for record in reader.records:
                if isinstance(record, Header):
                    started = True
                elif isinstance(record, Schema):
                    schemas[record.id] = record
                elif isinstance(record, Channel):
                    channels[record.id] = record
                    schema = schemas.get(record.schema_id)
                    result.topics[record.topic] = schema.name if schema else ""
                    result.metadata[record.topic] = dict(record.metadata)
                    result.counts.setdefault(record.topic, 0)
                elif isinstance(record, McapMessage):
                    channel = channels.get(record.channel_id)
                    if channel is None:
                        raise RecordingError(f"{path}: message on unknown channel {record.channel_id} "
                                             f"(corrupted file) after {result.read_messages} messages")
                    result.read_messages += 1
                    result.counts[channel.topic] += 1
                    if last_ns is None or record.log_time < last_ns - CLOCK_JUMP_BACK_NS:
                        last_ns = record.log_time  # the first message, or the clock jumped back (a reset)
                    elif record.log_time > last_ns:
                        recorded_ns += record.log_time - last_ns
                        last_ns = record.log_time
                    if not keep(channel.topic):
                        continue
                    if record.channel_id not in decoders:
                        decoders[record.channel_id] = factory.decoder_for(channel.message_encoding,
                                                                          schemas.get(channel.schema_id))
                    decoder = decoders[record.channel_id]
                    if decoder is None:
                        raise RecordingError(f"{path}: topic {channel.topic}: no decoder for encoding "
                                             f"{channel.message_encoding!r}")
                    try:
                        msg = decoder(record.data)
                    except Exception as exc:  # a damaged message payload: the decoder's own error type varies
                        raise RecordingError(f"{path}: topic {channel.topic}: message {result.read_messages} does "
                                             f"not decode ({type(exc).__name__}: {exc}): corrupted") from exc
                    if channel.topic in lazy:
                        msg = _Header(getattr(msg, "header", None))
                    result.messages.append(Message(channel.topic, result.topics[channel.topic], record.log_time,
                                                   header_stamp_ns(msg), msg, result.read_messages - 1,
                                                   publish_time_ns=record.publish_time))
                elif isinstance(record, Statistics):
                    result.claimed_messages = int(record.message_count)
                elif isinstance(record, SummaryOffset):
                    result.indexed = True
                elif isinstance(record, Footer):
                    finished = True
                    result.indexed = result.indexed or record.summary_start != 0
        except RecordingError:
            raise
        except CRCValidationError as exc:
            raise RecordingError(f"{path}: corrupted (CRC mismatch: {exc}) after {result.read_messages} "
                                 f"messages") from exc
        except (McapError, struct.error, EOFError, ValueError, OSError) as exc:
            kind = "truncated or corrupted" if started else "not an MCAP file"
            detail = f"{path}: {kind} ({type(exc).__name__}: {exc}) after {result.read_messages} messages"
            if not salvage or kind == "not an MCAP file":
                raise RecordingError(detail + ("; --salvage keeps them" if result.read_messages else "")) from exc
            result.notes.append(f"salvaged: {detail}")
    if not finished and not result.notes:
        detail = f"{path}: truncated (no footer: the recorder did not finish) after {result.read_messages} messages"
        if not salvage:
            raise RecordingError(detail + "; --salvage keeps them, `physai recording repair` rewrites the file")
        result.notes.append(f"salvaged: {detail}")
    if result.claimed_messages is not None and result.claimed_messages > result.read_messages:
        result.notes.append(f"the index claims {result.claimed_messages} messages, the file holds "
                            f"{result.read_messages} (lost when the recording was stopped)")
    if not result.indexed:
        result.notes.append("unindexed (no summary section): read front to back")
    result.duration_s = recorded_ns / 1e9
    return result


@dataclass
class _Header:
    """What a lazy message keeps: its header."""

    header: Any


def read_selected(path: str | Path, indices: Iterable[int]) -> Iterator[Message]:
    """Decode again the messages at these file positions (`Message.index`), in file order.

    Raises:
        RecordingError: the file changed or is damaged before the last wanted message.
    """
    from mcap.records import Channel, Schema
    from mcap.records import Message as McapMessage
    from mcap.stream_reader import StreamReader
    from mcap_ros2.decoder import DecoderFactory

    wanted = set(indices)
    last = max(wanted, default=-1)
    schemas: dict[int, Any] = {}
    channels: dict[int, Any] = {}
    decoders: dict[int, Any] = {}
    factory = DecoderFactory()
    position = -1
    with open(path, "rb") as f:
        try:
            for record in StreamReader(f, record_size_limit=1 << 30).records:
                if isinstance(record, Schema):
                    schemas[record.id] = record
                elif isinstance(record, Channel):
                    channels[record.id] = record
                elif isinstance(record, McapMessage):
                    position += 1
                    if position in wanted:
                        channel = channels[record.channel_id]
                        if record.channel_id not in decoders:
                            decoders[record.channel_id] = factory.decoder_for(channel.message_encoding,
                                                                              schemas.get(channel.schema_id))
                        msg = decoders[record.channel_id](record.data)
                        yield Message(channel.topic, schemas[channel.schema_id].name, record.log_time,
                                      header_stamp_ns(msg), msg, position, publish_time_ns=record.publish_time)
                    if position >= last:
                        return
        except Exception as exc:  # the first pass read this file; anything now is a change or damage
            raise RecordingError(f"{path}: re-reading message {position}: {type(exc).__name__}: {exc}") from exc
    if position < last:
        raise RecordingError(f"{path}: ended at message {position}, before message {last} (changed since read?)")

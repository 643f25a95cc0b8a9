"""`physai recording info|check|repair`: inspect, verify and recover MCAP recordings.

physai recording info run.mcap          # per topic: type, messages, rate, bytes (like `ros2 bag info`)
physai recording check run.mcap         # the reference reader's checks; exit 1 when any fails
physai recording repair run.mcap        # after SIGKILL / power loss: run.repaired.mcap from complete chunks
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mcap.exceptions import McapError
from mcap.reader import NonSeekingReader, SeekingReader

from physical_ai.recording import repair


@dataclass(frozen=True)
class TopicInfo:
    """One channel of a recording."""

    topic: str
    schema: str
    messages: int
    bytes: int
    qos: str


@dataclass(frozen=True)
class RecordingInfo:
    """Summary of a recording, read through its index."""

    path: Path
    size_bytes: int
    duration_s: float
    messages: int
    chunks: int
    compression: str
    topics: tuple[TopicInfo, ...]

    @property
    def mb_per_s(self) -> float:
        """File size per recorded second [MB/s] (10^6 bytes)."""
        return self.size_bytes / 1e6 / self.duration_s if self.duration_s > 0 else float("nan")


def check_recording(path: str | Path) -> list[str]:
    """Problems found reading `path` as the reference MCAP readers do; [] when it is valid and complete.

    Checks: the file has a summary with statistics; the indexed reader (chunk indexes) and the linear reader
    (file order) each return exactly `statistics.message_count` messages, and per channel the counts in
    `channel_message_counts`; every message's channel has a schema.
    """
    problems: list[str] = []
    try:
        with open(path, "rb") as f:
            summary = SeekingReader(f).get_summary()
            if summary is None or summary.statistics is None:
                return ["no summary/statistics: the file was not finished (run `physai recording repair`)"]
            stats = summary.statistics
            indexed: Counter[int] = Counter(channel.id for _, channel, _ in SeekingReader(f).iter_messages())
        with open(path, "rb") as f:
            linear: Counter[int] = Counter(channel.id for _, channel, _ in NonSeekingReader(f).iter_messages())
    except (McapError, OSError, ValueError, KeyError) as exc:
        return [f"unreadable: {type(exc).__name__}: {exc}"]
    for name, counts in (("indexed", indexed), ("linear", linear)):
        total = sum(counts.values())
        if total != stats.message_count:
            problems.append(f"{name} read: {total} messages, statistics say {stats.message_count}")
        for channel_id, expected in stats.channel_message_counts.items():
            if counts.get(channel_id, 0) != expected:
                topic = summary.channels[channel_id].topic if channel_id in summary.channels else channel_id
                problems.append(f"{name} read: {counts.get(channel_id, 0)} messages on {topic}, statistics say "
                                f"{expected}")
    for channel in summary.channels.values():
        if channel.schema_id and channel.schema_id not in summary.schemas:
            problems.append(f"{channel.topic}: schema {channel.schema_id} missing")
    return problems


def recording_info(path: str | Path) -> RecordingInfo:
    """Per-topic counts and sizes from the summary (bytes: uncompressed CDR, read from the chunks)."""
    path = Path(path)
    with open(path, "rb") as f:
        reader = SeekingReader(f)
        summary = reader.get_summary()
        if summary is None or summary.statistics is None:
            raise ValueError(f"{path}: no summary (not finished; run `physai recording repair {path}`)")
        sizes: Counter[int] = Counter()
        for _, channel, message in reader.iter_messages():
            sizes[channel.id] += len(message.data)
    stats = summary.statistics
    topics = tuple(sorted(
        (TopicInfo(topic=c.topic, schema=summary.schemas[c.schema_id].name if c.schema_id in summary.schemas else "",
                   messages=stats.channel_message_counts.get(c.id, 0), bytes=sizes[c.id],
                   qos=c.metadata.get("offered_qos_profiles", "")) for c in summary.channels.values()),
        key=lambda t: -t.bytes))
    compression = {i.compression or "none" for i in summary.chunk_indexes} or {"none"}
    return RecordingInfo(path=path, size_bytes=path.stat().st_size,
                         duration_s=(stats.message_end_time - stats.message_start_time) / 1e9,
                         messages=stats.message_count, chunks=stats.chunk_count,
                         compression=",".join(sorted(compression)), topics=topics)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`physai recording info|check|repair FILE`."""
    sub = parser.add_subparsers(dest="action", required=True)
    for action, text in (("info", "topics, messages, rates and sizes"),
                         ("check", "verify the file as the reference MCAP readers read it")):
        sub.add_parser(action, help=text).add_argument("file")
    fix = sub.add_parser("repair", help="rebuild an indexed file from the complete chunks of a cut-short recording")
    fix.add_argument("file")
    fix.add_argument("--output", default=None, help="default: <file>.repaired.mcap")


def run(args: argparse.Namespace) -> int:
    """Run the chosen action."""
    path = Path(args.file)
    if args.action == "repair":
        target = Path(args.output) if args.output else path.with_suffix(".repaired.mcap")
        result = repair(path, target)
        state = "was already complete" if result.complete else f"was cut short ({result.error or 'no summary'})"
        print(f"{path} {state}: recovered {result.messages} messages in {result.chunks} chunks on "
              f"{result.channels} channels -> {target}")
        problems = check_recording(target)
        for problem in problems:
            print(f"  {problem}")
        return 1 if problems else 0
    if args.action == "check":
        problems = check_recording(path)
        print(f"{path}: " + ("ok" if not problems else "; ".join(problems)))
        return 1 if problems else 0
    info = recording_info(path)
    print(f"{info.path}: {info.size_bytes / 1e6:.1f} MB, {info.duration_s:.1f} s ({info.mb_per_s:.2f} MB/s), "
          f"{info.messages} messages, {info.chunks} chunks ({info.compression})")
    for t in info.topics:
        rate = t.messages / info.duration_s if info.duration_s > 0 else float("nan")
        latched = " transient_local" if "durability: transient_local" in t.qos else ""
        print(f"  {t.topic:<36} {t.schema:<36} {t.messages:>7} msgs {rate:7.1f} Hz {t.bytes / 1e6:9.2f} MB{latched}")
    return 0

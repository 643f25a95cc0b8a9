"""MCAP recording of ROS 2 topics, readable by `ros2 bag play` (rosbag2_storage_mcap) and Foxglove.

Messages are stored as the CDR bytes that came off the wire (no re-serialisation), with `ros2msg` schemas: the
message definition followed by the definition of every nested type, each after a separator line and a
`MSG: pkg/Type` line, as rosbag2 writes them. Definitions are read from the installed `share/<pkg>/msg/*.msg`.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from pathlib import Path

from mcap.writer import CompressionType, Writer

_SEPARATOR = "=" * 80
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


class McapRecorder:
    """Writes serialized ROS 2 messages to an MCAP file; thread-safe."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self._path, "wb")  # closed in close()
        self._writer = Writer(self._file, compression=CompressionType.ZSTD)
        self._writer.start(profile="ros2", library="physical_ai_stack")
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, int] = {}
        self._lock = threading.Lock()
        self.messages = 0

    def add_topic(self, topic: str, msg_type: str, offered_qos_yaml: str = "") -> None:
        """Register a topic of type `pkg/msg/Type` (idempotent)."""
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

    def write(self, topic: str, data: bytes, log_time_ns: int, publish_time_ns: int | None = None) -> None:
        """Append one CDR-serialized message of a registered topic."""
        with self._lock:
            self._writer.add_message(channel_id=self._channels[topic], log_time=log_time_ns, data=data,
                                     publish_time=log_time_ns if publish_time_ns is None else publish_time_ns,
                                     sequence=self.messages)
            self.messages += 1

    def close(self) -> None:
        """Finish the file (writes the summary section that makes it seekable)."""
        with self._lock:
            if self._file.closed:
                return
            self._writer.finish()
            self._file.close()

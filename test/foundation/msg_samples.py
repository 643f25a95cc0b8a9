"""Deterministic, fully populated sample messages for wire tests, and a subscriber process that echoes hashes.

Run as a script (`python msg_samples.py TOPIC_PREFIX pkg/msg/Type ...`) it subscribes to every type on
TOPIC_PREFIX/<pkg>_<Type> (reliable, transient local) and prints `<pkg/msg/Type> <sha256 of its repr>` per message
received (not of the CDR bytes: their padding is not deterministic), exiting once each type has arrived (or 30 s).
"""

from __future__ import annotations

import hashlib
import importlib
import sys

from rosidl_parser import definition as d

PROJECT_TYPES = ["ActionChunk", "CorrectionStatus", "DetectedPart", "DetectedPartArray", "Obstacle", "ObstacleArray",
                 "SimGroundTruth", "TactilePad", "TactileState", "WorldModelPrediction"]
ALL_TYPES = [f"physical_ai_stack/msg/{name}" for name in PROJECT_TYPES] + [
    "tf2_msgs/msg/TFMessage", "ackermann_msgs/msg/AckermannDriveStamped"]


def message_class(type_name: str) -> type:
    pkg, _, name = type_name.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


def topic_of(prefix: str, type_name: str) -> str:
    pkg, _, name = type_name.split("/")
    return f"{prefix}/{pkg}_{name}"


def _value(slot: d.AbstractType, k: int):
    if isinstance(slot, d.BasicType):
        if slot.typename == "boolean":
            return k % 2 == 1
        if slot.typename in ("float", "double"):
            return 0.25 * k + 0.5
        if slot.typename == "octet":
            return bytes([k % 256])
        if slot.typename == "char":
            return chr(ord("a") + k % 26)
        return k % 100 + 1
    if isinstance(slot, d.AbstractGenericString):
        return f"s{k}-é"
    if isinstance(slot, d.NamespacedType):
        return filled(getattr(importlib.import_module(".".join(slot.namespaces)), slot.name), k)
    if isinstance(slot, d.Array):
        return [_value(slot.value_type, k + i) for i in range(slot.size)]
    if isinstance(slot, d.AbstractSequence):
        return [_value(slot.value_type, k + i) for i in range(3)]
    raise TypeError(f"no sample value for {slot}")


def filled(cls: type, k: int = 1):
    """An instance of `cls` with every field (recursively) set to a value derived from k."""
    msg = cls()
    for i, (name, slot) in enumerate(zip(cls.get_fields_and_field_types(), cls.SLOT_TYPES, strict=True)):
        setattr(msg, name, _value(slot, k + 7 * i))
    return msg


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _echo(prefix: str, type_names: list[str]) -> int:
    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    rclpy.init()
    node = rclpy.create_node("msg_echo")
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    pending = set(type_names)

    def on_message(type_name: str, msg) -> None:
        print(type_name, digest(repr(msg).encode()), flush=True)
        pending.discard(type_name)

    subs = [node.create_subscription(message_class(t), topic_of(prefix, t), lambda m, t=t: on_message(t, m), qos)
            for t in type_names]
    deadline = node.get_clock().now().nanoseconds + 30_000_000_000
    while pending and node.get_clock().now().nanoseconds < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    del subs
    node.destroy_node()
    rclpy.shutdown()
    return 0 if not pending else 1


if __name__ == "__main__":
    sys.exit(_echo(sys.argv[1], sys.argv[2:]))

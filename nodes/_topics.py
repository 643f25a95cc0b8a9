"""Helpers for nodes that subscribe to topics found in the graph at run time (recorder, Foxglove bridge)."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy


def message_class(type_name: str) -> type:
    """The Python class of a ROS type name `pkg/msg/Type`; raises ImportError/AttributeError/ValueError if unknown."""
    pieces = type_name.split("/")
    if len(pieces) != 3:
        raise ValueError(f"not a message type name: {type_name!r} (expected pkg/msg/Type)")
    pkg, kind, name = pieces
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


def matching_qos(publishers: Iterable[Any], depth: int) -> QoSProfile:
    """A subscription QoS that matches every publisher (`TopicEndpointInfo`s) of a topic.

    Best effort if any publisher is (a reliable subscriber would not match it); transient local only if all are
    (so /tf_static's latched samples arrive, and a volatile publisher still matches).
    """
    infos = list(publishers)
    best_effort = any(i.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for i in infos)
    latched = bool(infos) and all(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for i in infos)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)

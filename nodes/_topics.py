"""Helpers for nodes that subscribe to topics found in the graph at run time (recorder, Foxglove bridge)."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy


def message_class(type_name: str) -> type:
    """The Python class of a ROS type name `pkg/msg/Type`; raises ImportError/AttributeError/ValueError if unknown.

    Type names come from the graph, i.e. from any peer: only a generated ROS interface package is imported (found
    without running it: a `msg` subpackage and rosidl type support files beside it), never an arbitrary module
    whose import has side effects.
    """
    pieces = type_name.split("/")
    if len(pieces) != 3 or pieces[1] != "msg" or not all(p.isidentifier() for p in pieces):
        raise ValueError(f"not a message type name: {type_name!r} (expected pkg/msg/Type)")
    pkg, kind, name = pieces
    spec = importlib.util.find_spec(pkg)  # locating a top-level package does not execute it
    location = Path(next(iter(spec.submodule_search_locations or ()), "")) if spec is not None else None
    if location is None or not (location / "msg" / "__init__.py").is_file() \
            or not any(location.glob("*rosidl_typesupport*")):
        raise ImportError(f"{type_name}: {pkg!r} is not a ROS interface package")
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

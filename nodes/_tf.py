"""tf and tf_static over rclpy: a listener that fills a `TransformBuffer`, and a publisher for both topics.

tf2_ros is not available from the PyPI wheels; these follow its wire conventions (tf2_msgs/TFMessage, tf reliable
depth 100, tf_static reliable transient-local carrying the whole static set) so they interoperate with it.

The topic names are relative: in the root namespace they are /tf and /tf_static as tf2_ros uses them; in a robot's
namespace (/robot1/tf, /robot1/tf_static) each robot has a transform tree of its own with the usual frame names
(map, odom, base_link), as Nav2's multi-robot bring-up remaps them. Tools outside the namespace remap too
(`rviz2 --ros-args -r /tf:=/robot1/tf -r /tf_static:=/robot1/tf_static`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from geometry_msgs.msg import TransformStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from tf2_msgs.msg import TFMessage

from physical_ai.convert import make_transform_stamped, stamp_to_ns, transform_to_matrix
from physical_ai.tf import TransformBuffer

TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE,
                    history=HistoryPolicy.KEEP_LAST)
TF_STATIC_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL, history=HistoryPolicy.KEEP_LAST)
TF_STATIC_PUB_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                               durability=DurabilityPolicy.TRANSIENT_LOCAL, history=HistoryPolicy.KEEP_LAST)

# Dynamic transforms stamped further ahead of the node's clock are from before a clock reset (a simulator reset: an
# old-episode sample delivered after the buffer was cleared would stay its newest sample, and every lookup on the
# new clock would fail as extrapolation until it ages out of the cache) [s].
TF_FUTURE_TOLERANCE_S = 0.5

TransformSpec = TransformStamped | tuple[str, str, int, np.ndarray]


class TfListener:
    """Subscribes /tf and /tf_static and writes every transform into `buffer`.

    Malformed transforms (non-unit quaternion, NaN, loops) are dropped, logged and counted as `tf_rejected`, and
    dynamic ones stamped more than TF_FUTURE_TOLERANCE_S ahead of the node's clock as `tf_future`, when the node
    has the PhysaiNode `count` method.
    """

    def __init__(self, node: Node, buffer: TransformBuffer, tf_topic: str = "tf",
                 tf_static_topic: str = "tf_static") -> None:
        self.node = node
        self.buffer = buffer
        on_time_reset = getattr(node, "on_time_reset", None)
        if on_time_reset is not None:  # PhysaiNode: a simulator reset starts a new history
            on_time_reset(buffer.clear_history)
        self._subscriptions = [
            node.create_subscription(TFMessage, tf_topic, lambda msg: self._on_message(msg, False), TF_QOS),
            node.create_subscription(TFMessage, tf_static_topic, lambda msg: self._on_message(msg, True),
                                     TF_STATIC_QOS),
        ]

    def _on_message(self, msg: TFMessage, static: bool) -> None:
        latest_ns = self.node.get_clock().now().nanoseconds + int(TF_FUTURE_TOLERANCE_S * 1e9)
        for transform in msg.transforms:
            stamp = stamp_to_ns(transform.header.stamp)
            if not static and stamp > latest_ns:
                self._reject(transform, "tf_future", f"stamped {(stamp - latest_ns) * 1e-9 + TF_FUTURE_TOLERANCE_S:.3f}"
                             " s ahead of this node's clock (from before a clock reset?)")
                continue
            try:
                self.buffer.set_transform(transform.header.frame_id, transform.child_frame_id, stamp,
                                          transform_to_matrix(transform.transform), static=static)
            except ValueError as exc:
                self._reject(transform, "tf_rejected", str(exc))

    def _reject(self, transform: TransformStamped, counter: str, why: str) -> None:
        text = f"dropped transform {transform.header.frame_id} -> {transform.child_frame_id}: {why}"
        if hasattr(self.node, "log_throttled"):  # a PhysaiNode: counted, logged without rclpy's costly throttle
            self.node.count(counter)
            self.node.log_throttled(counter, text, 5.0)
        else:
            self.node.get_logger().warning(text, throttle_duration_sec=5.0)

    def destroy(self) -> None:
        """Remove the subscriptions from the node."""
        for subscription in self._subscriptions:
            self.node.destroy_subscription(subscription)
        self._subscriptions = []


class TfPublisher:
    """Publishes dynamic transforms on /tf and latched static ones on /tf_static.

    Static transforms accumulate: each `publish_static` republishes the whole set (keyed by child frame), since a
    transient-local topic of depth 1 only replays the last message to late joiners.
    """

    def __init__(self, node: Node, tf_topic: str = "tf", tf_static_topic: str = "tf_static") -> None:
        self.node = node
        self._tf_pub = node.create_publisher(TFMessage, tf_topic, TF_QOS)
        self._static_pub = node.create_publisher(TFMessage, tf_static_topic, TF_STATIC_PUB_QOS)
        self._static: dict[str, TransformStamped] = {}

    def publish(self, transforms: Iterable[TransformSpec]) -> None:
        """Publish transforms on /tf; each is a TransformStamped or (parent, child, stamp_ns, T_4x4)."""
        self._tf_pub.publish(TFMessage(transforms=[_stamped(t) for t in transforms]))

    def publish_static(self, transforms: Iterable[TransformSpec]) -> None:
        """Add or replace static transforms and republish the whole static set on /tf_static."""
        for transform in transforms:
            stamped = _stamped(transform)
            self._static[stamped.child_frame_id] = stamped
        self._static_pub.publish(TFMessage(transforms=list(self._static.values())))


def _stamped(transform: TransformSpec) -> TransformStamped:
    if isinstance(transform, TransformStamped):
        return transform
    parent, child, stamp_ns, T = transform
    return make_transform_stamped(parent, child, stamp_ns, T)

"""foxglove_bridge: a live view of the stack in Foxglove (open the WebSocket `ws://host:port` as a data source).

Each configured topic is offered to Foxglove clients as a channel with message encoding `cdr` and a `ros2msg`
schema (the same schema text the MCAP recorder writes), so Foxglove decodes the messages itself. Messages are
forwarded as the CDR bytes that came off the wire (raw subscriptions, no deserialisation). A topic is subscribed
over DDS only while at least one client subscribes to its channel, so an idle bridge costs nothing, and a
per-topic rate cap keeps point clouds and images from swamping a browser. Topics that appear later (a node
started after the bridge) are offered when the next graph scan finds them.

Both names of the protocol are accepted: the SDK's server (which only completes `foxglove.sdk.v1` handshakes)
listens on loopback behind a small proxy on the public port that also accepts `foxglove.websocket.v1`, the name
the official `@foxglove/ws-protocol` client library and older Foxglove/Lichtblick releases use
(physical_ai/ws_subprotocol_proxy.py).

The proxy is also the door: by default only local tools get in (native clients, and pages served from this
machine); a browser page from elsewhere, such as https://app.foxglove.dev, needs its Origin in `allowed_origins`.
With `token` set, clients must add `?token=<token>` to the URL (or send `Authorization: Bearer <token>`).
`max_connections` caps open connections. Refusals are counted on /diagnostics (`refused.<reason>`).

Known limitation (foxglove-sdk 0.30.3): a client that subscribes within a millisecond of a *new* channel's
advertisement can get "Unknown channel ID" back; the subscription then has to be made again (in the Foxglove app:
re-select the topic). Channels that exist when the client connects are not affected.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import foxglove
from diagnostic_msgs.msg import DiagnosticStatus
from foxglove import Channel, Schema
from foxglove.websocket import ChannelView, Client
from rclpy.qos import DurabilityPolicy

from physical_ai.recording import ros2msg_schema
from physical_ai.ws_subprotocol_proxy import LOCAL_ORIGINS, SubprotocolProxy
from physical_ai_nodes._base import PhysaiNode, run_node
from physical_ai_nodes._topics import matching_qos, message_class

DEFAULT_TOPICS = [
    "tf", "tf_static", "odom", "joint_states", "scan", "lidar/points", "camera/color/image_raw",
    "perception/obstacles", "perception/markers", "perception/occupancy", "policy/action_chunk",
    "policy/world_model", "correction/status", "cmd_vel", "sim/ground_truth", "/diagnostics",
]


class _SubscriptionListener:
    """Foxglove server callbacks (on the server's own thread): note the change and wake the node's executor."""

    def __init__(self, wake: Any) -> None:
        self._wake = wake
        self._lock = threading.Lock()
        self._new: set[str] = set()

    def on_subscribe(self, client: Client, channel: ChannelView) -> None:
        with self._lock:
            self._new.add(channel.topic)
        self._wake.trigger()

    def on_unsubscribe(self, client: Client, channel: ChannelView) -> None:
        self._wake.trigger()

    def take_new(self) -> set[str]:
        """Topics that gained a client subscription since the last call."""
        with self._lock:
            new, self._new = self._new, set()
        return new


class FoxgloveBridge(PhysaiNode):
    """Serves the stack's topics to Foxglove over WebSocket."""

    def __init__(self) -> None:
        super().__init__("foxglove_bridge")
        self._wanted = {self.resolve_topic_name(t) for t in self.param(
            "topics", DEFAULT_TOPICS, "Topics offered to Foxglove (relative names are in the node's namespace, the "
            "robot's); those not published yet are offered once they appear")}
        host = self.param("host", "127.0.0.1", "Address to listen on (0.0.0.0: every interface)")
        port = self.param("port", 8765, "WebSocket port (0: any free port, logged)", (0, 65535))
        max_rate_hz = self.param("max_rate_hz", 10.0, "Most messages forwarded per topic per second [Hz]",
                                 (0.1, 1000.0))
        self._unlimited = {self.resolve_topic_name(t) for t in self.param(
            "unlimited_topics", ["tf", "tf_static", "/diagnostics"], "Topics exempt from max_rate_hz: several "
            "publishers share them, and dropping one message drops another node's frames or status")}
        origins = [o for o in self.param(
            "allowed_origins", list(LOCAL_ORIGINS), "Browser Origins let in (fnmatch patterns, e.g. "
            "'https://app.foxglove.dev'); requests without an Origin (native clients) always pass") if o]
        token = self.param("token", "", "Secret clients must present as ?token= or 'Authorization: Bearer' "
                           "('' = none)")
        max_connections = self.param("max_connections", 16, "Most client connections open at once", (1, 10000))
        period = self.param("discovery_period_s", 2.0, "How often to look for new topics [s]", (0.1, 60.0))
        self._min_interval_ns = int(1e9 / max_rate_hz)
        self._channels: dict[str, Channel] = {}
        self._classes: dict[str, type] = {}
        self._dds_subscriptions: dict[str, tuple[Any, bool]] = {}  # topic -> (subscription, latched)
        self._last_sent_ns: dict[str, int] = {}
        self._skipped: set[str] = set()
        self._fg_context = foxglove.Context()  # our own channels and server, not the SDK's global ones
        self._listener = _SubscriptionListener(self.create_guard_condition(self._sync_subscriptions))
        try:
            # The SDK's server on loopback; clients reach it through the proxy, which accepts both subprotocols.
            self._server = foxglove.start_server(name="physical_ai_stack", host="127.0.0.1", port=0,
                                                 context=self._fg_context, server_listener=self._listener)
            self._proxy = SubprotocolProxy(host, port, self._server.port, allowed_origins=origins, token=token,
                                           max_connections=max_connections).start()
        except (RuntimeError, ValueError, OSError) as exc:
            raise RuntimeError(f"cannot serve Foxglove WebSocket on {host}:{port}: {exc}") from exc
        self.create_timer(period, self._discover)
        self._discover()
        self.get_logger().info(f"Foxglove live view on ws://{host}:{self._proxy.port} "
                               f"(open it in Foxglove: Open connection > Foxglove WebSocket)")
        self.set_status(DiagnosticStatus.OK, "serving", url=f"ws://{host}:{self._proxy.port}")

    def _discover(self) -> None:
        """Advertise a channel for each wanted topic that now has a publisher."""
        for topic, types in self.get_topic_names_and_types():
            if topic not in self._wanted or topic in self._channels or topic in self._skipped:
                continue
            if len(types) != 1:
                self.count("topics_skipped_multiple_types")
                continue
            if not self.get_publishers_info_by_topic(topic):  # only subscribers so far
                continue
            try:
                self._classes[topic] = message_class(types[0])
                pkg, _, name = types[0].split("/")
                schema = Schema(name=f"{pkg}/msg/{name}", encoding="ros2msg",
                                data=ros2msg_schema(types[0]).encode())
            except (ImportError, AttributeError, LookupError, ValueError) as exc:
                self.count("topics_skipped_unknown_type")
                self.get_logger().warning(f"not offering {topic} ({types[0]}): {exc}")
                self._skipped.add(topic)
                continue
            self._channels[topic] = Channel(topic, schema=schema, message_encoding="cdr", context=self._fg_context)
        self.set_status(DiagnosticStatus.OK, "serving", topics_offered=len(self._channels),
                        **{f"refused.{reason}": n for reason, n in dict(self._proxy.refused).items()})
        self._sync_subscriptions()

    def _sync_subscriptions(self) -> None:
        """Subscribe over DDS to exactly the topics some client watches (runs in the executor thread)."""
        new_clients = self._listener.take_new()
        for topic, channel in self._channels.items():
            watched = channel.has_sinks()
            current = self._dds_subscriptions.get(topic)
            if current is not None and (not watched or (current[1] and topic in new_clients)):
                # Unwatched, or a new client on a latched topic: resubscribing replays the latched samples.
                self.destroy_subscription(current[0])
                del self._dds_subscriptions[topic]
                current = None
            if watched and current is None:
                qos = matching_qos(self.get_publishers_info_by_topic(topic), depth=10)
                sub = self.create_subscription(self._classes[topic], topic,
                                               lambda data, t=topic: self._forward(t, data), qos, raw=True)
                self._dds_subscriptions[topic] = (sub, qos.durability == DurabilityPolicy.TRANSIENT_LOCAL)

    def _forward(self, topic: str, data: bytes) -> None:
        now = time.monotonic_ns()  # the cap protects the browser's bandwidth: wall time, whatever the sim clock
        if topic not in self._unlimited and now - self._last_sent_ns.get(topic, -self._min_interval_ns) \
                < self._min_interval_ns:
            self.count(f"dropped_rate_cap:{topic}")
            return
        self._last_sent_ns[topic] = now
        self._channels[topic].log(data, log_time=self.get_clock().now().nanoseconds)
        self.tick("forwarded")

    def on_shutdown(self) -> None:
        """Stop the server so clients see the connection close and the port is released."""
        self._proxy.stop()
        self._server.stop()


def main(args: list[str] | None = None) -> None:
    """Run the Foxglove bridge node."""
    run_node(FoxgloveBridge, args)


if __name__ == "__main__":
    main()

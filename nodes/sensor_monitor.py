"""sensor_monitor: watches sensor topics and reports their rate, age and staleness on /diagnostics.

The smallest real node following the package conventions (`nodes/_base.py`): validated parameters from
`config/sensor_monitor.yaml`, sensor-data QoS inputs, counted drops, node-clock time (so `use_sim_time` works) and
a clean SIGINT shutdown. Each entry of `topics` is "topic:pkg/msg/Type", e.g. "scan:sensor_msgs/msg/LaserScan"
(a relative name is in the node's namespace).
"""

from __future__ import annotations

import importlib
from typing import Any

from diagnostic_msgs.msg import DiagnosticStatus

from physical_ai.convert import stamp_to_ns
from physical_ai_nodes._base import PhysaiNode, run_node


def parse_topic_spec(spec: str) -> tuple[str, type]:
    """Split "topic:pkg/msg/Type" (a relative topic is in the node's namespace) and import the message class.

    Raises:
        ValueError: a malformed entry or a type that cannot be imported.
    """
    topic, sep, type_name = spec.rpartition(":")
    parts = type_name.split("/")
    if not sep or not topic.strip("/") or len(parts) != 3 or parts[1] != "msg":
        raise ValueError(f"topic entry {spec!r} must look like 'topic:pkg/msg/Type'")
    try:
        return topic, getattr(importlib.import_module(f"{parts[0]}.msg"), parts[2])
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"topic entry {spec!r}: cannot import message type {type_name}: {exc}") from None


class SensorMonitor(PhysaiNode):
    """Subscribes the configured sensor topics and publishes their health on /diagnostics."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("sensor_monitor", **kwargs)
        specs = self.param("topics", ["scan:sensor_msgs/msg/LaserScan"],
                           "Sensor topics to watch, each 'topic:pkg/msg/Type'")
        self.stale_after_s = self.param("stale_after_s", 0.5, "A topic is stale after this long without data [s]",
                                        (0.01, 60.0))
        self.max_age_s = self.param("max_age_s", 0.2, "Header stamps older than this on arrival are counted [s]",
                                    (0.001, 60.0))
        self._last_receipt_ns: dict[str, int | None] = {}
        for spec in specs:
            topic, msg_type = parse_topic_spec(spec)
            self._last_receipt_ns[topic] = None
            self.sensor_subscription(msg_type, topic, lambda msg, t=topic: self._on_message(t, msg))
        self.create_timer(min(self.stale_after_s / 2.0, 0.5), self._check_stale)
        self.get_logger().info(f"monitoring {', '.join(self._last_receipt_ns)}")

    def _on_message(self, topic: str, msg: Any) -> None:
        now_ns = self.get_clock().now().nanoseconds
        self._last_receipt_ns[topic] = now_ns
        self.tick(topic)
        header = getattr(msg, "header", None)
        if header is None:
            return
        stamp_ns = stamp_to_ns(header.stamp)
        if stamp_ns == 0:
            self.count(f"unstamped:{topic}")
            return
        age_ms = (now_ns - stamp_ns) / 1e6
        self.latency(topic, age_ms)
        if age_ms > self.max_age_s * 1e3:
            self.count(f"old:{topic}")

    def _check_stale(self) -> None:
        now_ns = self.get_clock().now().nanoseconds
        stale = [topic for topic, last in self._last_receipt_ns.items()
                 if last is None or now_ns - last > self.stale_after_s * 1e9]
        values = {f"stale.{topic}": topic in stale for topic in self._last_receipt_ns}
        if stale:
            self.set_status(DiagnosticStatus.WARN, f"stale: {', '.join(stale)}", **values)
        else:
            self.set_status(DiagnosticStatus.OK, "all sensors fresh", **values)


def main(args: list[str] | None = None) -> None:
    """Run the sensor monitor node."""
    run_node(SensorMonitor, args)


if __name__ == "__main__":
    main()

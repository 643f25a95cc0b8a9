"""recorder: writes every topic (or a chosen list) to an MCAP file that `ros2 bag play` and Foxglove open.

Topics are discovered while running, so nodes started later are recorded too. Each subscription matches its
publishers' reliability and durability (a reliable subscriber would not match a best-effort sensor stream; a
volatile one would miss /tf_static).
"""

from __future__ import annotations

from typing import Any

from physical_ai.recording import McapRecorder
from physical_ai_nodes._base import PhysaiNode, run_node
from physical_ai_nodes._topics import matching_qos, message_class


class Recorder(PhysaiNode):
    """Records topics to MCAP."""

    def __init__(self) -> None:
        super().__init__("recorder")
        output = self.param("output", "recording.mcap", "MCAP file to write")
        self._topics = {self.resolve_topic_name(t) for t in self.param(
            "topics", [""], "Topics to record (relative names are in the node's namespace); [''] records every "
            "topic") if t}
        self._exclude = {self.resolve_topic_name(t) for t in self.param(
            "exclude", ["/rosout", "/parameter_events"], "Topics never recorded") if t}
        period = self.param("discovery_period_s", 0.5, "How often to look for new topics [s]", (0.05, 10.0))
        self._recorder = McapRecorder(output)
        self._recorded: dict[str, Any] = {}
        self.create_timer(period, self._discover)
        self._discover()
        self.get_logger().info(f"recording to {output}")

    def _discover(self) -> None:
        for topic, types in self.get_topic_names_and_types():
            if topic in self._recorded or topic in self._exclude or (self._topics and topic not in self._topics):
                continue
            if len(types) != 1:
                self.count("topics_skipped_multiple_types")
                continue
            infos = self.get_publishers_info_by_topic(topic)
            if not infos:  # only subscribers so far: match the QoS once a publisher appears
                continue
            try:
                msg_class = message_class(types[0])
                self._recorder.add_topic(topic, types[0])
            except (ImportError, AttributeError, LookupError, ValueError) as exc:
                self.count("topics_skipped_unknown_type")
                self.get_logger().warning(f"not recording {topic} ({types[0]}): {exc}")
                self._exclude.add(topic)
                continue
            self._recorded[topic] = self.create_subscription(
                msg_class, topic, lambda data, t=topic: self._on_message(t, data), matching_qos(infos, depth=100),
                raw=True)

    def _on_message(self, topic: str, data: bytes) -> None:
        self._recorder.write(topic, data, self.get_clock().now().nanoseconds)
        self.tick("messages")

    def on_shutdown(self) -> None:
        """Close the file so it is complete and indexed."""
        self._recorder.close()
        self.get_logger().info(f"recorded {self._recorder.messages} messages")


def main(args: list[str] | None = None) -> None:
    """Run the recorder node."""
    run_node(Recorder, args)


if __name__ == "__main__":
    main()

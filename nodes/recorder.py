"""recorder: writes the stack's topics to a chunked, zstd-compressed MCAP file (`ros2 bag play`, Foxglove).

Topics are discovered while running, so nodes started later are recorded too. Each subscription matches its
publishers' reliability and durability (a reliable subscriber would not match a best-effort sensor stream; a
volatile one would miss /tf_static), and the publishers' QoS profiles are stored per channel as rosbag2 stores
them. Raw camera images (sensor_msgs/Image) are most of a recording's size and are left out unless
`record_images` is true or the topic is listed in `topics`; `rate_limits` keeps bulky streams (a dense LiDAR
cloud) at a lower rate. Log times are receive times on the system clock (ros2 bag record's default), also under
use_sim_time. The file is finished on SIGINT, SIGTERM or shutdown;
after a SIGKILL, `physai recording repair` recovers every completed chunk (physical_ai/recording.py).
"""

from __future__ import annotations

import os
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.parameter import Parameter
from rclpy.subscription import MessageInfo

from physical_ai.recording import McapRecorder, offered_qos_yaml
from physical_ai_nodes._base import PhysaiNode, run_node
from physical_ai_nodes._topics import matching_qos, message_class

RAW_IMAGE_TYPE = "sensor_msgs/msg/Image"


class Recorder(PhysaiNode):
    """Records topics to MCAP."""

    def __init__(self) -> None:
        super().__init__("recorder")
        # Receive times on the system clock, as `ros2 bag record` stamps them by default (message headers keep their
        # stamps): following /clock cost a callback per simulator tick (> 2 kHz, most of the recorder's CPU) and
        # its log times jumped back at every simulator reset.
        self.set_parameters([Parameter("use_sim_time", Parameter.Type.BOOL, False)])
        output = self.param("output", "recording.mcap", "MCAP file to write [path]", read_only=True)
        self._topics = {self.resolve_topic_name(t) for t in self.param(
            "topics", [""], "Topics to record (relative names are in the node's namespace); [''] records every "
            "topic (raw images only with record_images)", read_only=True) if t}
        self._exclude = {self.resolve_topic_name(t) for t in self.param(
            "exclude", ["/rosout", "/parameter_events"], "Topics never recorded", read_only=True) if t}
        self._record_images = self.param("record_images", False, "Also record sensor_msgs/Image topics when "
                                         "recording every topic (~20-30 MB/s per 640x480 RGB-D camera at 15 Hz)",
                                         read_only=True)
        chunk_kib = self.param("chunk_size_kib", 1024, "Uncompressed size of an MCAP chunk: the most a SIGKILL "
                               "loses [KiB]", (16, 65536), read_only=True)
        compression = self.param("compression", "zstd", "Chunk compression: zstd | lz4 | none", read_only=True)
        backlog_mib = self.param("max_backlog_mib", 256, "Unwritten messages held at most; beyond, new ones are "
                                 "dropped and counted (a disk that cannot keep up) [MiB]", (1, 65536), read_only=True)
        self._min_interval_ns: dict[str, int] = {}
        for entry in self.param("rate_limits", [""], "Topics kept at most this often: 'topic=Hz' (e.g. a dense LiDAR "
                                "cloud at 2 Hz), by the node's clock; [''] keeps every message", read_only=True):
            topic, _, hz = entry.partition("=")
            if not entry:
                continue
            try:
                self._min_interval_ns[self.resolve_topic_name(topic.strip())] = int(1e9 / float(hz))
            except (ValueError, ZeroDivisionError):
                raise SystemExit(f"recorder: rate_limits entry {entry!r}: expected 'topic=Hz' with Hz > 0") from None
        self._last_kept_ns: dict[str, int] = {}
        period = self.param("discovery_period_s", 0.5, "How often to look for new topics [s]", (0.05, 10.0))
        try:
            self._recorder = McapRecorder(output, chunk_size=chunk_kib * 1024, compression=compression,
                                          max_queue_bytes=backlog_mib << 20)
        except (OSError, ValueError) as exc:
            raise SystemExit(f"recorder: cannot record to {output}: {exc}") from None
        self._started = (time.monotonic(), time.process_time())
        self._recorded: dict[str, Any] = {}
        self._skipped_images: set[str] = set()
        self.create_timer(period, self._discover)
        self._discover()
        self.get_logger().info(f"recording to {output} ({compression}, {chunk_kib} KiB chunks"
                               f"{'' if self._record_images else ', raw images only when listed in topics'})")

    def _wanted(self, topic: str, msg_type: str) -> bool:
        if topic in self._exclude or (self._topics and topic not in self._topics):
            return False
        if msg_type == RAW_IMAGE_TYPE and not self._record_images and topic not in self._topics:
            if topic not in self._skipped_images:
                self._skipped_images.add(topic)
                self.get_logger().info(f"not recording raw images on {topic} (record_images: false)")
            return False
        return True

    def _discover(self) -> None:
        for topic, types in self.get_topic_names_and_types():
            if topic in self._recorded or topic in self._exclude:
                continue
            if len(types) != 1:
                self.count("topics_skipped_multiple_types")
                continue
            if not self._wanted(topic, types[0]):
                continue
            infos = self.get_publishers_info_by_topic(topic)
            if not infos:  # only subscribers so far: match the QoS once a publisher appears
                continue
            try:
                msg_class = message_class(types[0])
                self._recorder.add_topic(topic, types[0], offered_qos_yaml(i.qos_profile for i in infos))
            except (ImportError, AttributeError, LookupError, ValueError) as exc:
                self.count("topics_skipped_unknown_type")
                self.get_logger().warning(f"not recording {topic} ({types[0]}): {exc}")
                self._exclude.add(topic)
                continue
            self._recorded[topic] = self.create_subscription(
                msg_class, topic, lambda data, info, t=topic: self._on_message(t, data, info),
                matching_qos(infos, depth=100), raw=True)
        stats = self._recorder.stats
        level = DiagnosticStatus.WARN if stats.dropped else DiagnosticStatus.OK
        self.set_status(level, "recording" if not stats.dropped else "dropping: the disk does not keep up",
                        topics=len(self._recorded), written=stats.messages, dropped=stats.dropped,
                        file_mb=f"{_size_mb(self._recorder.path):.1f}",
                        raw_images_skipped=",".join(sorted(self._skipped_images)))

    def _on_message(self, topic: str, data: bytes, info: MessageInfo) -> None:
        # As rosbag2 does since Jazzy: logged when the middleware received it (not when this busy process got to
        # it), with the publisher's send time as the publish time; the system clock (use_sim_time is off).
        now = info["received_timestamp"] or time.time_ns()
        interval = self._min_interval_ns.get(topic)
        if interval is not None:
            last = self._last_kept_ns.get(topic)
            if last is not None and 0 <= now - last < interval:
                self.count(f"rate_limited:{topic}")
                return
            self._last_kept_ns[topic] = now
        # 0 where the middleware gives no send time: the dataset build then aligns the whole file by log times
        if not self._recorder.write(topic, data, now, info["source_timestamp"]):
            self.count("dropped_backlog")

    def on_shutdown(self) -> None:
        """Finish the file (summary, statistics, index) so every reader opens it."""
        for subscription in self._recorded.values():
            self.destroy_subscription(subscription)
        self._recorder.close()
        stats = self._recorder.stats
        wall, cpu = time.monotonic() - self._started[0], time.process_time() - self._started[1]
        self.get_logger().info(f"recorded {stats.messages} of {stats.received} messages ({stats.dropped} dropped: "
                               f"backlog) to {self._recorder.path} ({_size_mb(self._recorder.path):.1f} MB); CPU "
                               f"{cpu:.1f} s in {wall:.1f} s = {100 * cpu / max(wall, 1e-9):.1f} % of one core")


def _size_mb(path: os.PathLike[str]) -> float:
    try:
        return os.path.getsize(path) / 1e6
    except OSError:
        return float("nan")


def main(args: list[str] | None = None) -> None:
    """Run the recorder node.

    In the events executor: at the AMR's ~500 messages/s, SingleThreadedExecutor's per-callback overhead was most of
    the recorder's CPU (bench/recorder_bench.py).
    """
    run_node(Recorder, args, events_executor=True)


if __name__ == "__main__":
    main()

"""Recorder CPU and file size at the AMR's configured rates (issue 15 item 1: recorder <= 10 % of one core).

A publisher process plays the AMR stack's topics at the rates of config/amr.yaml, with messages of the sizes the
stack sends: the 16 x 1800-ray LiDAR cloud (28.8k points: x, y, z, intensity, ring) at 10 Hz and its 720-beam scan,
joint states and the corrector's cmd_vel and status at 100 Hz (the status every cycle, as the e2e bench sets it),
odom and /tf at 50 Hz, the simulator's ground truth at 20 Hz, both camera infos at 15 Hz, perception's obstacles and
400 x 400 occupancy grid at the LiDAR's 10 Hz, its markers at 5 Hz, action chunks at 2 Hz and /diagnostics. Cloud,
scan and grid contents vary frame to frame (noisy ranges, moving obstacles) so that compression works as on real
data; raw camera images are not published (the recorder does not subscribe to them by default). The recorder runs
as deployed (`python -m physical_ai_nodes.recorder` with config/amr.yaml's recorder section: zstd chunks, the cloud
thinned to 2 Hz), its CPU read from /proc over the measurement window.

BENCH recorder.amr.cpu_pct           the recorder, % of one core
BENCH recorder.amr.cpu_pct.baseline  in the same run, a bare subscriber taking the same topics as serialized
                                     bytes with the same executor and QoS and discarding them: what receiving them
                                     costs before anything is recorded
BENCH recorder.amr.mb_per_s          file size per recorded second [MB/s]
BENCH recorder.amr.kept_pct          messages in the file / messages sent, over the topics it does not thin, %: a
                                     recorder that cannot keep up shows here, not as a low CPU figure
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WARMUP_S = 3.0
MEASURE_S = 30.0
# (topic, type, Hz, sensor QoS (best effort)); the recorder's rate limit on lidar/points is config/amr.yaml's
TOPICS = [
    ("/lidar/points", "sensor_msgs/msg/PointCloud2", 10.0, True),
    ("/scan", "sensor_msgs/msg/LaserScan", 10.0, True),
    ("/joint_states", "sensor_msgs/msg/JointState", 100.0, True),
    ("/odom", "nav_msgs/msg/Odometry", 50.0, True),
    ("/tf", "tf2_msgs/msg/TFMessage", 50.0, False),
    ("/sim/ground_truth", "physical_ai_stack/msg/SimGroundTruth", 20.0, False),
    ("/camera/color/camera_info", "sensor_msgs/msg/CameraInfo", 15.0, True),
    ("/camera/depth/camera_info", "sensor_msgs/msg/CameraInfo", 15.0, True),
    ("/cmd_vel", "geometry_msgs/msg/Twist", 100.0, False),
    ("/correction/status", "physical_ai_stack/msg/CorrectionStatus", 100.0, False),
    ("/perception/obstacles", "physical_ai_stack/msg/ObstacleArray", 10.0, False),
    ("/perception/occupancy", "nav_msgs/msg/OccupancyGrid", 10.0, False),
    ("/perception/markers", "visualization_msgs/msg/MarkerArray", 5.0, False),
    ("/policy/action_chunk", "physical_ai_stack/msg/ActionChunk", 2.0, False),
    ("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", 5.0, False),
]
VARIANTS = 20  # distinct frames per bulky topic, cycled


def bench(name: str, value: float, unit: str) -> None:
    """Print one BENCH line."""
    print(f"BENCH {name} {value:.4g} {unit}", flush=True)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process [s] from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sample_messages(topic: str, rng: np.random.Generator) -> list:
    """VARIANTS messages of the topic, of the sizes the AMR stack sends."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
    from geometry_msgs.msg import TransformStamped, Twist
    from nav_msgs.msg import OccupancyGrid, Odometry
    from physical_ai_stack.msg import ActionChunk, CorrectionStatus, Obstacle, ObstacleArray, SimGroundTruth
    from tf2_msgs.msg import TFMessage
    from visualization_msgs.msg import Marker, MarkerArray

    from physical_ai.convert import (
        make_camera_info,
        make_header,
        make_joint_state,
        numpy_to_laserscan,
        numpy_to_pointcloud2,
    )

    out = []
    for k in range(VARIANTS):
        if topic == "/lidar/points":
            rings, columns = 16, 1800
            azimuth = np.tile(np.linspace(-np.pi, np.pi, columns, endpoint=False), rings)
            elevation = np.repeat(np.radians(np.linspace(-15, 15, rings)), columns)
            ranges = (6.0 + 3.0 * np.cos(2 * azimuth + 0.1 * k) + rng.normal(0, 0.01, azimuth.size))
            ranges = np.minimum(ranges, 0.5 / np.maximum(np.sin(-elevation), 1e-3))  # the floor below the sensor
            cos_e = np.cos(elevation)
            out.append(numpy_to_pointcloud2(
                {"x": (ranges * cos_e * np.cos(azimuth)).astype(np.float32),
                 "y": (ranges * cos_e * np.sin(azimuth)).astype(np.float32),
                 "z": (ranges * np.sin(elevation)).astype(np.float32),
                 "intensity": rng.uniform(0, 100, azimuth.size).astype(np.float32),
                 "ring": np.repeat(np.arange(rings, dtype=np.uint16), columns)}, "lidar_link"))
        elif topic == "/scan":
            ranges = 5.0 + 2.0 * np.cos(np.linspace(0, 4 * np.pi, 720) + 0.1 * k) + rng.normal(0, 0.01, 720)
            out.append(numpy_to_laserscan(ranges.astype(np.float32), -np.pi, 2 * np.pi / 720, 0.1, 20.0, "base_scan"))
        elif topic == "/joint_states":
            out.append(make_joint_state(["left_wheel", "right_wheel"], rng.normal(size=2), rng.normal(size=2)))
        elif topic == "/odom":
            msg = Odometry(header=make_header("odom"), child_frame_id="base_link")
            msg.pose.pose.position.x, msg.twist.twist.linear.x = float(k), 1.0
            out.append(msg)
        elif topic == "/tf":
            tf = TransformStamped(header=make_header("odom"), child_frame_id="base_link")
            tf.transform.translation.x = float(k)
            out.append(TFMessage(transforms=[tf]))
        elif topic == "/sim/ground_truth":
            out.append(SimGroundTruth(header=make_header("map")))
        elif topic.endswith("camera_info"):
            out.append(make_camera_info(640, 480, np.array([[525.0, 0, 320], [0, 525.0, 240], [0, 0, 1]]), "camera"))
        elif topic == "/cmd_vel":
            msg = Twist()
            msg.linear.x = 1.0 - 0.01 * k
            out.append(msg)
        elif topic == "/correction/status":
            out.append(CorrectionStatus(header=make_header("base_link")))
        elif topic == "/perception/obstacles":
            obstacles = [Obstacle(id=i, classification=Obstacle.CLASS_PERSON if i == 0 else Obstacle.CLASS_UNKNOWN)
                         for i in range(12)]
            for i, o in enumerate(obstacles):
                o.pose.position.x, o.pose.position.y = float(i), 0.1 * k
            out.append(ObstacleArray(header=make_header("odom"), obstacles=obstacles))
        elif topic == "/perception/occupancy":
            grid = np.zeros((400, 400), np.int8)
            for _ in range(30):  # obstacles and their inflation
                x, y = rng.integers(0, 380, 2)
                grid[y:y + rng.integers(3, 20), x:x + rng.integers(3, 20)] = 100
            grid[:, :40] = -1  # unknown behind a wall
            msg = OccupancyGrid(header=make_header("odom"))
            msg.info.width = msg.info.height = 400
            msg.info.resolution = 0.05
            msg.data = grid.ravel().tolist()
            out.append(msg)
        elif topic == "/perception/markers":
            out.append(MarkerArray(markers=[Marker(header=make_header("odom"), id=i, ns="obstacles", type=Marker.CUBE)
                                            for i in range(24)]))
        elif topic == "/policy/action_chunk":
            out.append(ActionChunk(header=make_header("base_link")))
        elif topic == "/diagnostics":
            status = [DiagnosticStatus(name=f"node{i}", values=[KeyValue(key=f"count.k{j}", value=str(j * k))
                                                               for j in range(8)]) for i in range(5)]
            out.append(DiagnosticArray(header=make_header(), status=status))
    return out


def serialized_samples(rng: np.random.Generator) -> dict[str, list[bytes]]:
    """Per topic, its sample messages as CDR bytes (published as they are: the publisher's cost stays small)."""
    from rclpy.serialization import serialize_message

    return {topic: [serialize_message(m) for m in sample_messages(topic, rng)] for topic, *_ in TOPICS}


def rate_limited_topics() -> set[str]:
    """The topics config/amr.yaml's recorder thins (`rate_limits`)."""
    from physical_ai.bringup.stack import node_params, params_file

    entries = node_params(params_file("amr"), "recorder").get("rate_limits", [])
    return {"/" + e.partition("=")[0].strip().lstrip("/") for e in entries if e}


class Player:
    """Publishes the serialized samples at their rates from one thread (absolute deadlines: no drift)."""

    def __init__(self, node, samples: dict[str, list[bytes]]) -> None:
        from rclpy.qos import QoSProfile, qos_profile_sensor_data

        from physical_ai_nodes._topics import message_class

        self._pubs = {topic: node.create_publisher(message_class(kind), topic,
                                                   qos_profile_sensor_data if sensor else QoSProfile(depth=10))
                      for topic, kind, _, sensor in TOPICS}
        self._samples = samples
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = dict.fromkeys(self._pubs, 0)

    def subscribed(self) -> bool:
        """Every topic has a subscriber."""
        return all(p.get_subscription_count() > 0 for p in self._pubs.values())

    def unsubscribed(self) -> bool:
        """No topic has a subscriber."""
        return all(p.get_subscription_count() == 0 for p in self._pubs.values())

    def start(self) -> None:
        """Start publishing."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop publishing (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        start = time.monotonic()
        due = {topic: start for topic in self._pubs}
        period = {topic: 1.0 / hz for topic, _, hz, _ in TOPICS}
        while not self._stop.is_set():
            topic = min(due, key=due.get)
            wait = due[topic] - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            variants = self._samples[topic]
            self._pubs[topic].publish(variants[self.sent[topic] % len(variants)])
            self.sent[topic] += 1
            due[topic] += period[topic]


def sink_main() -> None:
    """The baseline process: subscribe to every TOPICS entry as serialized bytes, discard them."""
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.qos import QoSProfile, qos_profile_sensor_data

    from physical_ai_nodes._base import make_executor, use_shipped_fastdds_profile
    from physical_ai_nodes._topics import message_class

    use_shipped_fastdds_profile()
    rclpy.init()
    node = rclpy.create_node("recorder_bench_sink")
    for topic, kind, _, sensor in TOPICS:
        node.create_subscription(message_class(kind), topic, lambda data: None,
                                 qos_profile_sensor_data if sensor else QoSProfile(depth=100), raw=True)
    executor = make_executor(events=True)  # as the recorder's run_node
    executor.add_node(node)
    try:
        while rclpy.ok():
            executor.spin_once(timeout_sec=0.2)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass


def measure(proc: subprocess.Popen, seconds: float) -> float:
    """CPU % of one core of `proc` over the next `seconds`."""
    cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
    time.sleep(seconds)
    cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
    if proc.poll() is not None:
        raise RuntimeError(f"{proc.args} died: {proc.communicate()[0][-2000:]}")
    return 100.0 * (cpu1 - cpu0) / (t1 - t0)


def wait_subscribed(player: Player, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Until every topic has a subscriber (the recorder discovers topics as they appear)."""
    deadline = time.monotonic() + timeout
    while not player.subscribed():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{proc.args} never subscribed to every topic: "
                               f"{proc.communicate(timeout=5)[0][-2000:] if proc.poll() is not None else ''}")
        time.sleep(0.1)


def stop(proc: subprocess.Popen) -> str:
    """SIGINT, then wait; its output."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=60)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0]


def main() -> int:
    """Play the AMR's topics into the bare subscriber, then into the recorder; print the figures."""
    if "--sink" in sys.argv:
        sink_main()
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=MEASURE_S, help="measurement window per process [s]")
    parser.add_argument("--smoke", action="store_true", help="a few seconds each: checks the bench runs")
    args = parser.parse_args()
    seconds, warmup = (2.0, 1.0) if args.smoke else (args.seconds, WARMUP_S)
    import rclpy

    from physical_ai.bringup.stack import params_file
    from physical_ai.recording_tools import check_recording, recording_info
    from physical_ai_nodes._base import use_shipped_fastdds_profile

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
    use_shipped_fastdds_profile()
    samples = serialized_samples(np.random.default_rng(0))
    rclpy.init()
    node = rclpy.create_node("recorder_bench_player")
    player = Player(node, samples)
    out = Path(tempfile.mkdtemp(prefix="physai_recorder_bench_")) / "amr.mcap"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    try:
        player.start()
        sink = subprocess.Popen([sys.executable, __file__, "--sink"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        try:
            wait_subscribed(player, sink)
            time.sleep(warmup)
            baseline = measure(sink, seconds)
        finally:
            player.stop()
            stop(sink)
        deadline = time.monotonic() + 10.0
        while not player.unsubscribed() and time.monotonic() < deadline:  # the sink's subscriptions are gone
            time.sleep(0.1)
        # The recorder subscribes before the play starts, so the file must hold every message sent (the thinned
        # cloud aside).
        recorder = subprocess.Popen([sys.executable, "-m", "physical_ai_nodes.recorder", "--ros-args",
                                     "--params-file", str(params_file("amr")), "-p", f"output:={out}"],
                                    env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            wait_subscribed(player, recorder)
            time.sleep(1.0)  # the subscriptions matched on both sides
            sent0 = dict(player.sent)
            player.start()
            time.sleep(warmup)
            cpu = measure(recorder, seconds)
            player.stop()
            time.sleep(1.0)  # the last ones arrive
        finally:
            log = stop(recorder)
    finally:
        player.stop()
        node.destroy_node()
        rclpy.try_shutdown()
    problems = check_recording(out)
    if problems:
        print(f"recording {out} failed the readers' checks: {problems}\n{log[-2000:]}")
        return 1
    info = recording_info(out)
    recorded = {t.topic: t.messages for t in info.topics}
    sent = {topic: player.sent[topic] - sent0[topic] for topic in player.sent}
    thinned = rate_limited_topics()
    hz = {topic: rate for topic, _, rate, _ in TOPICS}
    full = [t for t in sent if t not in thinned and t != "/diagnostics"]  # the recorder reports there too
    print(f"{sum(hz for _, _, hz, _ in TOPICS):.0f} messages/s played on {len(TOPICS)} topics; CPU measured over "
          f"{seconds:.0f} s each; recording {info.size_bytes / 1e6:.1f} MB over {info.duration_s:.1f} s, "
          f"{info.messages} messages of {sum(sent.values())} sent; thinned "
          + ", ".join(f"{t} {recorded.get(t, 0) / (sent[t] / hz[t]):.1f} Hz" for t in sorted(thinned)))
    lost = {t: sent[t] - recorded.get(t, 0) for t in full if recorded.get(t, 0) != sent[t]}
    if lost:
        print(f"not in the file (sent - recorded, per topic): {lost}")
    print(next((line for line in log.splitlines() if "]: recorded " in line), "(no summary from the recorder)"))
    bench("recorder.amr.cpu_pct", cpu, "%")
    bench("recorder.amr.cpu_pct.baseline", baseline, "%")
    bench("recorder.amr.mb_per_s", info.mb_per_s, "MB/s")
    bench("recorder.amr.kept_pct", 100.0 * sum(recorded.get(t, 0) for t in full) / sum(sent[t] for t in full), "%")
    print(f"(% of one core; this machine has {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Foundation benchmarks: message<->numpy conversion time and DDS latency/loss between two processes.

Prints `BENCH <name> <value> <unit>` lines (medians over many repetitions for conversions; p50/p99 over every
message of a >= 10 s stream for DDS), each beside a baseline measured in the same run:
- conversions beside a naive per-point/per-byte Python implementation (sensor_msgs_py style), timed on a
  subsample and scaled to the full size;
- DDS with the shipped profile (config/fastdds.xml) beside the same stream with Fast DDS defaults.

    .venv/bin/python bench/foundation_bench.py [--duration 10] [--skip-dds] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

N_POINTS = 130_000
IMAGE_SHAPE = (480, 640, 3)


def report(name: str, value: float, unit: str) -> None:
    print(f"BENCH {name} {value:.4f} {unit}", flush=True)


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


# ---- conversions ------------------------------------------------------------------------------------------------
def _naive_cloud_read(msg, n: int) -> np.ndarray:
    """sensor_msgs_py-style: struct.unpack_from per point, into a list, then an array."""
    fmt = "<ffff"
    rows = [struct.unpack_from(fmt, msg.data, i * msg.point_step) for i in range(n)]
    return np.array(rows, np.float32)


def _naive_cloud_write(xyzi: np.ndarray) -> bytes:
    buffer = bytearray(16 * len(xyzi))
    for i, (x, y, z, intensity) in enumerate(xyzi.tolist()):
        struct.pack_into("<ffff", buffer, 16 * i, x, y, z, intensity)
    return bytes(buffer)


def bench_conversions(smoke: bool = False) -> None:
    from sensor_msgs.msg import Image

    from physical_ai import convert
    from physical_ai.memory import keep_large_buffers

    def n(repeats: int) -> int:
        return 2 if smoke else repeats

    rng = np.random.default_rng(0)
    xyzi = rng.normal(size=(N_POINTS, 4)).astype(np.float32)
    columns = {name: xyzi[:, i].copy() for i, name in enumerate(("x", "y", "z", "intensity"))}
    image = rng.integers(0, 255, IMAGE_SHAPE, dtype=np.uint8)

    # Built and dropped each time, as a driver does; first with glibc's default allocator settings.
    from_cloud_untuned = median_ms(lambda: convert.numpy_to_pointcloud2(columns, "lidar", 1), n(100))
    from_image_untuned = median_ms(lambda: convert.numpy_to_image(image, "rgb8", "camera", 1), n(200))
    keep_large_buffers()

    cloud = convert.numpy_to_pointcloud2(columns, "lidar", 1)
    assert np.array_equal(convert.pointcloud2_to_xyz(cloud, ("intensity",)), xyzi)
    report("msg.pointcloud2_130k.to_numpy_ms",
           median_ms(lambda: convert.pointcloud2_to_xyz(cloud, ("intensity",)), n(200)), "ms")
    report("msg.pointcloud2_130k.structured_view_ms", median_ms(lambda: convert.pointcloud2_to_numpy(cloud), n(200)),
           "ms")
    sub = 5000
    report("msg.pointcloud2_130k.to_numpy.baseline_ms",
           median_ms(lambda: _naive_cloud_read(cloud, sub), n(5), 1) * N_POINTS / sub, "ms")
    report("msg.pointcloud2_130k.from_numpy_ms",
           median_ms(lambda: convert.numpy_to_pointcloud2(columns, "lidar", 1), n(200)), "ms")
    report("msg.pointcloud2_130k.from_numpy.default_malloc_ms", from_cloud_untuned, "ms")
    report("msg.pointcloud2_130k.from_numpy.baseline_ms",
           median_ms(lambda: _naive_cloud_write(xyzi[:sub]), n(5), 1) * N_POINTS / sub, "ms")

    image_msg = convert.numpy_to_image(image, "rgb8", "camera", 1)
    assert np.array_equal(convert.image_to_numpy(image_msg), image)
    report("msg.image_640x480.to_numpy_ms", median_ms(lambda: convert.image_to_numpy(image_msg), n(500)), "ms")
    report("msg.image_640x480.to_numpy.baseline_ms",
           median_ms(lambda: np.array(list(image_msg.data), np.uint8).reshape(IMAGE_SHAPE), n(5), 1), "ms")
    report("msg.image_640x480.from_numpy_ms",
           median_ms(lambda: convert.numpy_to_image(image, "rgb8", "camera", 1), n(500)), "ms")
    report("msg.image_640x480.from_numpy.default_malloc_ms", from_image_untuned, "ms")

    def naive_image_write() -> None:
        msg = Image(height=480, width=640, encoding="rgb8", step=640 * 3)
        msg.data = image.reshape(-1).tolist()

    report("msg.image_640x480.from_numpy.baseline_ms", median_ms(naive_image_write, n(5), 1), "ms")


# ---- DDS streams ------------------------------------------------------------------------------------------------
def _stream_message(kind: str):
    from physical_ai import convert

    rng = np.random.default_rng(1)
    if kind == "image":
        return convert.numpy_to_image(rng.integers(0, 255, IMAGE_SHAPE, dtype=np.uint8), "rgb8", "camera")
    return convert.numpy_to_pointcloud2(rng.normal(size=(N_POINTS, 4)).astype(np.float32), "lidar")


def _role_publisher(kind: str, rate_hz: float, duration_s: float) -> None:
    import rclpy
    from rclpy.qos import qos_profile_sensor_data

    from physical_ai.memory import keep_large_buffers

    keep_large_buffers()
    rclpy.init()
    node = rclpy.create_node("bench_pub")
    msg = _stream_message(kind)
    publisher = node.create_publisher(type(msg), "/bench/stream", qos_profile_sensor_data)
    deadline = time.monotonic() + 20.0
    while publisher.get_subscription_count() < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    period = 1.0 / rate_hz
    warmup = int(rate_hz)  # one second, not measured
    count = warmup + int(duration_s * rate_hz)
    next_time = time.monotonic() + 0.5
    for i in range(count):
        time.sleep(max(0.0, next_time - time.monotonic()))
        next_time += period
        msg.header.frame_id = str(i - warmup)
        msg.header.stamp = node.get_clock().now().to_msg()
        publisher.publish(msg)
    print(json.dumps({"published": count - warmup}), flush=True)
    node.destroy_node()
    rclpy.shutdown()


def _role_subscriber(kind: str) -> None:
    """Receive until a line arrives on stdin, then print the latencies.

    Not stopped by a signal: rclpy's SIGINT shutdown of a subscriber busy receiving once took over 30 s on a loaded
    machine and failed the smoke run.
    """
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data

    from physical_ai.memory import keep_large_buffers

    keep_large_buffers()
    rclpy.init()
    node = rclpy.create_node("bench_sub")
    latencies: list[float] = []
    seen: set[int] = set()

    def on_message(msg) -> None:
        now_ns = time.time_ns()
        seq = int(msg.header.frame_id)
        if seq >= 0:
            latencies.append((now_ns - (msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec)) / 1e6)
            seen.add(seq)

    node.create_subscription(type(_stream_message(kind)), "/bench/stream", on_message, qos_profile_sensor_data)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    print("ready", flush=True)
    while not stop.is_set():
        executor.spin_once(timeout_sec=0.1)
    print(json.dumps({"latencies_ms": latencies, "received": len(seen)}), flush=True)
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown()


def _result_line(proc: subprocess.Popen, timeout_s: float) -> str:
    """The subscriber's JSON line, read within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if select.select([proc.stdout], [], [], 0.5)[0]:
            line = proc.stdout.readline()
            if line.startswith("{"):
                return line
            if not line:
                break                                        # the subscriber exited without a result
    raise RuntimeError(f"the DDS subscriber gave no result within {timeout_s:.0f} s")


def _run_stream(kind: str, rate_hz: float, duration_s: float, shipped_profile: bool) -> dict[str, float]:
    env = dict(os.environ)
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    if shipped_profile:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(ROOT / "config" / "fastdds.xml")
    # a domain no other local process uses: under make test the benchmarks before this one share the test's domain
    from physical_ai.training.ros_eval import private_domain_id

    env["ROS_DOMAIN_ID"] = str(private_domain_id())
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    command = [sys.executable, __file__, "--role"]
    subscriber = subprocess.Popen([*command, "sub", "--kind", kind], env=env, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
    try:
        assert subscriber.stdout.readline().strip() == "ready"
        publisher = subprocess.run([*command, "pub", "--kind", kind, "--rate", str(rate_hz),
                                    "--duration", str(duration_s)], env=env, capture_output=True, text=True,
                                   timeout=duration_s + 60)
        published = json.loads(publisher.stdout.strip().splitlines()[-1])["published"]
        time.sleep(1.0)
        subscriber.stdin.write("stop\n")
        subscriber.stdin.flush()
        result = json.loads(_result_line(subscriber, 60.0))
        subscriber.wait(timeout=30)
    finally:
        if subscriber.poll() is None:
            subscriber.kill()
            subscriber.wait()
    latencies = np.array(result["latencies_ms"]) if result["latencies_ms"] else np.array([np.nan])
    return {"p50": float(np.percentile(latencies, 50)), "p99": float(np.percentile(latencies, 99)),
            "loss": 100.0 * (1.0 - result["received"] / published), "n": float(published)}


def bench_dds(duration_s: float) -> None:
    print(f"# load average before the DDS runs: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
    cases = [("image_640x480_30hz", "image", 30.0), ("pointcloud_130k_10hz", "cloud", 10.0)]
    for name, kind, rate in cases:
        for shipped, suffix in ((True, ""), (False, ".default")):
            stats = _run_stream(kind, rate, duration_s, shipped)
            report(f"dds.{name}{suffix}.p50_ms", stats["p50"], "ms")
            report(f"dds.{name}{suffix}.p99_ms", stats["p99"], "ms")
            report(f"dds.{name}{suffix}.loss_pct", stats["loss"], "%")
            print(f"# dds.{name}{suffix}: {int(stats['n'])} messages over {duration_s:.0f} s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per DDS stream [s]")
    parser.add_argument("--skip-dds", action="store_true", help="conversions only")
    parser.add_argument("--role", choices=("pub", "sub"), help=argparse.SUPPRESS)
    parser.add_argument("--kind", choices=("image", "cloud"), help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=10.0, help=argparse.SUPPRESS)
    parser.add_argument("--smoke", action="store_true", help="two repetitions, 1 s streams; figures not meaningful")
    args = parser.parse_args()
    if args.role == "pub":
        _role_publisher(args.kind, args.rate, args.duration)
        return 0
    if args.role == "sub":
        _role_subscriber(args.kind)
        return 0
    bench_conversions(args.smoke)
    if not args.skip_dds:
        bench_dds(1.0 if args.smoke else args.duration)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Policy inference benchmark: torch vs ONNX latency for the arm model, and control stalls with async inference.

BENCH policy.torch.p50_ms       Policy.infer (preprocessing + model), batch 1, torch.set_num_threads(1)
BENCH policy.onnx.p50_ms        the same through onnxruntime, intra_op_num_threads=1
BENCH policy.onnx_vs_torch.speedup  torch p50 / onnx p50 (the baseline is torch, measured in the same run)
BENCH policy.async.control_stall_ms  longest gap between consecutive correction-node commands beyond the control
                                     period while the policy node requests chunks at full rate (arrival times as
                                     the middleware stamps them on reception), beside the same with the policy
                                     paused; lost commands from the publication sequence numbers, read at
                                     depth 10 as a driver reads them
Uses models/arm_pick/ when present, else a randomly initialised model of the same architecture (said below).
"""

from __future__ import annotations

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

REPS = 400


def latency_bench(workdir: Path, reps: int = REPS) -> Path:
    """Measure torch and onnx p50/p99 (interleaved, so both see the same machine load); return the checkpoint."""
    import torch

    from physical_ai.policy.defaults import default_config
    from physical_ai.policy.export import export_onnx
    from physical_ai.policy.model import build_model, count_parameters, save_checkpoint
    from physical_ai.policy.policy import make_policy

    torch.set_num_threads(1)
    shipped = ROOT / "models" / "arm_pick"
    if (shipped / "config.json").is_file() and (shipped / "model.safetensors").is_file():
        checkpoint, source = shipped, "shipped models/arm_pick"
    else:
        checkpoint = workdir / "arm_random"
        config = default_config("arm", name="arm_random")
        save_checkpoint(build_model(config, seed=0), config, checkpoint)
        source = "randomly initialised arm model (models/arm_pick absent), same default architecture"
    onnx_path = workdir / "arm.onnx"
    _, error = export_onnx(checkpoint, onnx_path)
    torch_policy = make_policy("torch", checkpoint, num_threads=1)
    onnx_policy = make_policy("onnx", checkpoint, onnx_path=onnx_path, num_threads=1)
    params = count_parameters(torch_policy.model)
    print(f"model: {source}; {params} parameters ({params * 4 / 1e6:.2f} MB float32); export max error {error:.1e}")
    rng = np.random.default_rng(0)
    obs = {"image": rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
           "state": rng.normal(size=len(torch_policy.config.observation.state.names)),
           "instruction": "pick the red cube and put it in the bin"}
    spec = torch_policy.config.observation
    for group, count in (("parts", 2), ("obstacles", 3)):  # token widths come from the checkpoint's spec
        tokens = getattr(spec, group)
        if tokens is not None:
            obs[group] = rng.normal(size=(count, len(tokens.features.names)))
    obs = {k: v for k, v in obs.items() if k in torch_policy.config.observation.groups()}
    for _ in range(min(30, reps)):
        torch_policy.infer(obs)
        onnx_policy.infer(obs)
    times: dict[str, list[float]] = {"torch": [], "onnx": []}
    for _ in range(reps):
        for name, policy in (("torch", torch_policy), ("onnx", onnx_policy)):
            start = time.perf_counter()
            policy.infer(obs)
            times[name].append((time.perf_counter() - start) * 1e3)
    p50 = {k: float(np.percentile(v, 50)) for k, v in times.items()}
    p99 = {k: float(np.percentile(v, 99)) for k, v in times.items()}
    inputs = ", ".join(sorted(obs))
    print(f"{reps} interleaved repetitions each; inputs {inputs}"
          + (" (640x480 camera image resized to the model input)" if "image" in obs else ""))
    print(f"BENCH policy.torch.p50_ms {p50['torch']:.3f} ms")
    print(f"BENCH policy.torch.p99_ms {p99['torch']:.3f} ms")
    print(f"BENCH policy.onnx.p50_ms {p50['onnx']:.3f} ms")
    print(f"BENCH policy.onnx.p99_ms {p99['onnx']:.3f} ms")
    print(f"BENCH policy.onnx_vs_torch.speedup {p50['torch'] / p50['onnx']:.2f} x")
    return checkpoint


def _control_period_s() -> float | None:
    """The correction node's control period from config/arm.yaml (a *rate_hz or *period_s parameter)."""
    from physical_ai.bringup.stack import node_params

    section = node_params(ROOT / "config" / "arm.yaml", "trajectory_correction")
    for key, value in section.items():
        if key in ("control_rate_hz", "rate_hz", "loop_rate_hz"):
            return 1.0 / float(value)
        if key in ("control_period_s", "period_s"):
            return float(value)
    return None


def stall_bench(checkpoint: Path, duration_s: float = 20.0) -> None:
    """Run policy_inference (full rate) + trajectory_correction on fake arm drivers; report command gaps."""
    if not (ROOT / "nodes" / "trajectory_correction.py").is_file():
        print("BENCH policy.async.control_stall_ms missing - (nodes/trajectory_correction.py not present)")
        return
    period = _control_period_s()
    if period is None:
        print("BENCH policy.async.control_stall_ms missing - (no control rate in config/arm.yaml "
              "trajectory_correction section)")
        return
    import rclpy
    from physical_ai_stack.msg import DetectedPart, DetectedPartArray, ObstacleArray
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Float64MultiArray
    from trajectory_msgs.msg import JointTrajectory

    from physical_ai import convert
    from physical_ai.bringup.stack import DRIVER_RT_PRIORITY, LOOP_RT_PRIORITY, can_use_sched_fifo
    from physical_ai.policy.spec import load_config
    from physical_ai_nodes._base import COMMAND_QOS, STATE_QOS

    env = dict(os.environ, ROS_DOMAIN_ID=str(150 + os.getpid() % 50), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               FASTDDS_DEFAULT_PROFILES_FILE=str(ROOT / "config" / "fastdds.xml"))
    os.environ.update(env)
    config = load_config(checkpoint)
    chunk_s = config.chunk_length * config.dt
    params = str(ROOT / "config" / "arm.yaml")
    # The corrector and the driver run as deployed on a robot (README, "Real-time priority"): SCHED_FIFO for the
    # corrector process with its loop thread above it, and for this process, which plays the driver and measures
    # the gaps. The policy node keeps normal scheduling (its inference thread is niced on top).
    realtime = can_use_sched_fifo()
    rt_prefix = ["chrt", "-f", str(DRIVER_RT_PRIORITY)] if realtime else []
    rt_params = ["-p", f"rt_priority:={LOOP_RT_PRIORITY}"] if realtime else []
    print(f"corrector and driver scheduling: {'SCHED_FIFO' if realtime else 'normal (SCHED_FIFO not permitted)'}")
    procs = [
        subprocess.Popen([sys.executable, "-m", "physical_ai_nodes.policy_inference", "--ros-args", "--params-file",
                          params, "-p", f"checkpoint:={checkpoint}", "-p", f"request_threshold_s:={chunk_s}"],
                         cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([*rt_prefix, sys.executable, "-m", "physical_ai_nodes.trajectory_correction", "--ros-args",
                          "--params-file", params, *rt_params], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL),
    ]
    if realtime:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(70))  # threads created from here on inherit it
    rclpy.init()
    node = Node("policy_bench_driver")
    arrivals: list[float] = []
    sources: list[float] = []
    sequence: list[int] = []
    callbacks: list[float] = []
    chunks: list[float] = []
    q = np.zeros(8)
    lock = threading.Lock()

    def on_command(msg: Float64MultiArray, info: dict) -> None:
        # Arrival as the middleware stamped it on reception (a driver's view of the stream), not when this Python
        # executor got round to the callback (it also plays the sensors here, which delays callbacks).
        arrivals.append(info["received_timestamp"] * 1e-9)
        sources.append(info["source_timestamp"] * 1e-9)
        sequence.append(info["publication_sequence_number"] or 0)
        callbacks.append(time.monotonic())
        with lock:
            q[:min(7, len(msg.data))] = msg.data[:7]

    # Read as a driver does (ros2_control's controllers subscribe with the system default, depth 10): with depth 1
    # this Python reader overwrote what it had not taken yet whenever its executor was busy for a millisecond, and
    # counted its own drops as the stack's lost commands (24, baseline 12, in the make bench of 2026-12-05 09:08).
    node.create_subscription(Float64MultiArray, "/arm_controller/commands", on_command, STATE_QOS)
    node.create_subscription(JointTrajectory, "/policy/joint_trajectory", lambda m: chunks.append(time.monotonic()),
                             COMMAND_QOS)
    joint_pub = node.create_publisher(JointState, "/joint_states", qos_profile_sensor_data)
    image_pub = node.create_publisher(Image, "/camera/color/image_raw", qos_profile_sensor_data)
    parts_pub = node.create_publisher(DetectedPartArray, "/perception/parts", qos_profile_sensor_data)
    obstacle_pub = node.create_publisher(ObstacleArray, "/perception/obstacles", STATE_QOS)  # as perception does
    image = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)

    def publish_state() -> None:
        now = node.get_clock().now().nanoseconds
        with lock:
            positions = q.tolist()
        positions[7] = 0.04
        msg = JointState(name=[f"joint{i}" for i in range(1, 8)] + ["gripper"], position=positions,
                         velocity=[0.0] * 8, effort=[0.0] * 8)
        msg.header.stamp = convert.ns_to_stamp(now)
        joint_pub.publish(msg)

    def publish_perception() -> None:
        now = node.get_clock().now().nanoseconds
        image_pub.publish(convert.numpy_to_image(image, "rgb8", "camera", now))
        parts = DetectedPartArray(parts=[DetectedPart(label="cube", confidence=0.9)])
        parts.header.stamp = convert.ns_to_stamp(now)
        parts_pub.publish(parts)
        obstacles = ObstacleArray()
        obstacles.header.stamp = convert.ns_to_stamp(now)
        obstacles.header.frame_id = "base_link"
        obstacle_pub.publish(obstacles)

    node.create_timer(0.01, publish_state)
    node.create_timer(1 / 15, publish_perception)
    params_client = node.create_client(SetParameters, "/policy_inference/set_parameters")

    def set_paused(value: bool) -> None:
        request = SetParameters.Request(parameters=[Parameter(
            name="paused", value=ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value))])
        future = params_client.call_async(request)
        deadline = time.monotonic() + 5.0
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.01)

    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    try:
        end = time.monotonic() + 30.0
        while time.monotonic() < end and (len(arrivals) < 10 or not chunks):
            time.sleep(0.1)
        if len(arrivals) < 10 or not chunks:
            print("BENCH policy.async.control_stall_ms missing - (no commands from trajectory_correction or no "
                  "chunks from policy_inference within 30 s)")
            return
        # Alternate phases with the policy paused (baseline: the same processes, no inference) and at full rate,
        # so both see the same machine load.
        phase_s = duration_s / 4
        gaps: dict[bool, list[np.ndarray]] = {True: [], False: []}
        source_gaps: dict[bool, list[np.ndarray]] = {True: [], False: []}
        callback_gaps: dict[bool, list[np.ndarray]] = {True: [], False: []}
        lost = {True: 0, False: 0}
        n_chunks = 0
        for paused in (True, False, True, False):
            set_paused(paused)
            time.sleep(0.5)  # let the switch take effect
            first, first_chunk = len(arrivals), len(chunks)
            time.sleep(phase_s)
            last = len(arrivals)
            window = np.array(arrivals[first:last])
            gaps[paused].append(np.diff(window) if len(window) > 1 else np.array([np.inf]))
            source_gaps[paused].append(np.diff(sources[first:last]))
            callback_gaps[paused].append(np.diff(callbacks[first:last]))
            lost[paused] += int(np.sum(np.maximum(np.diff(sequence[first:last]) - 1, 0)))
            if not paused:
                n_chunks += len(chunks) - first_chunk
        for paused, label in ((False, "full rate"), (True, "paused (baseline)")):
            g = np.concatenate(gaps[paused])
            src, cb = np.concatenate(source_gaps[paused]), np.concatenate(callback_gaps[paused])
            print(f"policy {label}: {len(g) + 1} commands (control period {period * 1e3:.1f} ms), {lost[paused]} "
                  f"lost; arrival gap p50 {np.percentile(g, 50) * 1e3:.2f} ms, p99 {np.percentile(g, 99) * 1e3:.2f} "
                  f"ms, max {g.max() * 1e3:.2f} ms; publish gap max {src.max() * 1e3:.2f} ms; "
                  f"gap seen by this Python callback max {cb.max() * 1e3:.2f} ms")
        stall = {p: max(0.0, float(np.concatenate(gaps[p]).max()) - period) * 1e3 for p in (True, False)}
        p99 = {p: float(np.percentile(np.concatenate(gaps[p]), 99)) * 1e3 for p in (True, False)}
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores (the max gap follows machine noise)")
        print(f"BENCH policy.async.control_stall_ms {stall[False]:.2f} ms")
        print(f"BENCH policy.async.control_stall_baseline_ms {stall[True]:.2f} ms")
        print(f"BENCH policy.async.command_gap_p99_ms {p99[False]:.2f} ms")
        print(f"BENCH policy.async.command_gap_p99_baseline_ms {p99[True]:.2f} ms")
        print(f"BENCH policy.async.lost_commands {lost[False]} count")
        print(f"BENCH policy.async.chunk_rate_hz {n_chunks / (2 * phase_s):.2f} Hz")
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> int:
    smoke = "--smoke" in sys.argv[1:]  # make test: every measurement once, briefly; the figures mean nothing
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = latency_bench(Path(tmp), 3 if smoke else REPS)
        stall_bench(checkpoint, 4.0 if smoke else 20.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())

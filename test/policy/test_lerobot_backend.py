"""LeRobot policies through our stack give the actions LeRobot's own inference path gives.

ACT and Diffusion Policy (random weights, small, built at test time with LeRobot's own classes in the LeRobot
environment; nothing committed, nothing downloaded) are saved with their pre/post-processors. Reference actions
come from LeRobot's `predict_action` (`select_action` inside), one call per control step
(test/policy/lerobot_reference.py). Our side: the `lerobot` backend, which starts `physai lerobot serve` in the
LeRobot environment, and the policy_inference node over DDS. Needs the LeRobot environment: without it these
tests skip, saying how to create it (`physai lerobot setup`, or PHYSAI_LEROBOT_ENV=<existing env>).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from physical_ai.policy.lerobot_env import LerobotEnvError, check_env, env_python
from physical_ai.policy.policy import make_policy
from physical_ai.policy.spec import ConfigError

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
JOINTS = [f"joint{i}" for i in range(1, 8)] + ["gripper"]
DT = 0.1  # [s] a chunk of 8-10 steps outlasts the first (slowest) inference
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def lerobot_python() -> Path:
    try:
        check_env()
        return env_python()
    except LerobotEnvError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module", params=["act", "diffusion"])
def lerobot_policy(request, lerobot_python, tmp_path_factory) -> tuple[str, Path]:
    """(kind, folder): a saved random-weight LeRobot policy with reference*.npz beside it."""
    out = tmp_path_factory.mktemp(f"lerobot-{request.param}")
    done = subprocess.run([str(lerobot_python), str(HERE / "lerobot_reference.py"), request.param, str(out),
                           "--seed", "0", "--steps", "24"], capture_output=True, text=True, timeout=600,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert done.returncode == 0, done.stderr[-3000:]
    return request.param, out


def _spec(path: Path, chunk_length: int) -> Path:
    """Our side's spec for the LeRobot policy: camera, 8 joint positions, 8 actions, DT per step."""
    path.mkdir(parents=True, exist_ok=True)
    config = {
        "format_version": 1, "name": "lerobot_test", "embodiment": "arm", "dt": DT, "chunk_length": chunk_length,
        "architecture": {"type": "remote"},
        "observation": {"image": {"shape": [3, 64, 64]},
                        "state": {"names": [f"{j}.position" for j in JOINTS], "units": ["rad"] * 8,
                                  "mean": [0.0] * 8, "std": [1.0] * 8}},
        "action": {"names": JOINTS, "units": ["rad"] * 8, "mean": [0.0] * 8, "std": [1.0] * 8},
    }
    (path / "config.json").write_text(json.dumps(config))
    return path


def test_chunks_match_lerobot_select_action(lerobot_policy, tmp_path):
    """Every chunk equals the actions LeRobot's select_action emits over the same steps (history included)."""
    kind, folder = lerobot_policy
    ref = np.load(folder / "reference.npz")
    policy = make_policy("lerobot", _spec(tmp_path / "spec", 10), lerobot_dir=folder, seed=0)
    try:
        n_action = n_obs = None
        t = 0
        compared = 0
        while t < len(ref["actions"]):
            obs = {"image": ref["images"][t], "state": ref["states"][t].astype(np.float64)}
            chunk = policy.infer(obs).values
            if n_action is None:
                meta = policy.client.metadata
                n_action, n_obs = meta["n_action_steps"], meta["n_obs_steps"]
                assert meta["policy_type"] == kind and (n_obs == 2) == (kind == "diffusion")
            expected = ref["actions"][t:t + n_action]  # the reference ends after 24 steps
            assert chunk.shape == (n_action, len(JOINTS))
            chunk = chunk[:len(expected)]
            assert np.abs(chunk - expected).max() <= TOLERANCE, (kind, t, np.abs(chunk - expected).max())
            compared += 1
            # the node records one observation per control step between requests
            for step in range(t, min(t + n_action, len(ref["actions"]))):
                policy.observe({"image": ref["images"][step], "state": ref["states"][step].astype(np.float64)})
            t += n_action
        assert compared >= 2
        # The un-normalised actions are not the raw network output: the saved stats matter (issue 20: 1.42 rad).
        assert np.abs(ref["actions"]).max() > 1.0
    finally:
        policy.close()
    assert policy._server is None


def test_history_and_image_size_against_a_protocol_level_server(tmp_path):
    """Without the LeRobot environment: what our backend sends a LeRobot server (a stand-in speaking the protocol).

    Images go at the policy feature's size, not the spec's; with n_obs_steps 2 each feature carries the previous
    control step's observation and the current one, the first request repeats the current one (as LeRobot's
    queues fill), and reset() forgets the history.
    """
    from physical_ai.policy.policy_server import PolicyServer

    requests: list[dict] = []

    def infer(request):
        requests.append(request)
        return {"actions": np.zeros((4, 8), np.float32)}

    metadata = {"server": "lerobot", "policy_type": "diffusion", "n_obs_steps": 2, "n_action_steps": 4,
                "action_dim": 8, "input_features": {"observation.images.top": {"type": "VISUAL", "shape": [3, 32, 48]},
                                                    "observation.state": {"type": "STATE", "shape": [8]}}}
    rng = np.random.default_rng(0)
    obs = [{"image": rng.integers(0, 256, (120, 160, 3), dtype=np.uint8), "state": np.full(8, float(i))}
           for i in range(5)]
    with PolicyServer(infer, metadata=metadata) as server:
        policy = make_policy("lerobot", _spec(tmp_path / "spec", 4), uri=server.uri)
        assert policy.history_period_s == 0.0  # not known before the first connection
        policy.infer(obs[0])
        assert policy.history_period_s == DT
        policy.observe(obs[0])
        policy.observe(obs[1])
        policy.infer(obs[2])
        policy.reset()
        policy.infer(obs[3])
        policy.close()
    first, second, after_reset = requests
    assert sorted(first) == ["observation.images.top", "observation.state"]
    assert first["observation.images.top"].shape == (2, 32, 48, 3) and first["observation.images.top"].dtype == np.uint8
    assert first["observation.state"].tolist() == [[0.0] * 8] * 2
    assert second["observation.state"].tolist() == [[1.0] * 8, [2.0] * 8]
    assert after_reset["observation.state"].tolist() == [[3.0] * 8] * 2


def test_mismatched_features_are_refused_with_names(lerobot_policy, tmp_path):
    kind, folder = lerobot_policy
    if kind != "act":
        pytest.skip("one policy type is enough")
    policy = make_policy("lerobot", _spec(tmp_path / "spec", 10), lerobot_dir=folder,
                         key_map=["observation.images.top=", "observation.images.front=image"])
    try:
        from physical_ai.policy.openpi_client import PolicyServerError

        with pytest.raises(PolicyServerError, match=r"policy inputs \['observation.images.top'\] are not sent.*"
                                                    r"keys \['observation.images.front'\] are not inputs"):
            policy.infer({"image": np.zeros((64, 64, 3), np.uint8), "state": np.zeros(8)})
    finally:
        policy.close()
    with pytest.raises(ConfigError, match=r"observation groups \['obstacles'\] are not carried"):
        spec = _spec(tmp_path / "spec2", 10)
        config = json.loads((spec / "config.json").read_text())
        config["observation"]["obstacles"] = {"max_count": 2, "features": ["x", "y"], "units": ["m", "m"],
                                              "mean": [0, 0], "std": [1, 1]}
        (spec / "config.json").write_text(json.dumps(config))
        make_policy("lerobot", spec, uri="ws://127.0.0.1:9")


def test_policy_inference_node_publishes_lerobot_chunk(lerobot_policy, tmp_path):
    """Through the ROS node over DDS: a robot standing still, the first chunk equals LeRobot's (elapsed steps cut)."""
    import rclpy
    from physical_ai_stack.msg import ActionChunk
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image, JointState

    from physical_ai import convert
    from physical_ai_nodes._base import COMMAND_QOS

    _, folder = lerobot_policy
    ref = np.load(folder / "reference_constant.npz")
    spec = _spec(tmp_path / "spec", 10)
    rclpy.init()
    node = rclpy.create_node("lerobot_test_feeder")
    chunks: list[ActionChunk] = []
    node.create_subscription(ActionChunk, "/policy/action_chunk", chunks.append, COMMAND_QOS)
    image_pub = node.create_publisher(Image, "/camera/color/image_raw", qos_profile_sensor_data)
    joint_pub = node.create_publisher(JointState, "/joint_states", qos_profile_sensor_data)

    def publish() -> None:
        now = node.get_clock().now().nanoseconds
        image_pub.publish(convert.numpy_to_image(ref["images"][0], "rgb8", "camera", now))
        msg = JointState(name=JOINTS, position=[float(v) for v in ref["states"][0]], velocity=[0.0] * 8,
                         effort=[0.0] * 8)
        msg.header.stamp = convert.ns_to_stamp(now)
        joint_pub.publish(msg)

    node.create_timer(0.02, publish)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    proc = subprocess.Popen(
        [sys.executable, "-m", "physical_ai_nodes.policy_inference", "--ros-args", "-p", "backend:=lerobot",
         "-p", f"checkpoint:={spec}", "-p", f"lerobot_dir:={folder}", "-p", "lerobot_seed:=0",
         "-p", "request_threshold_s:=0.3", "-p", "server_timeout_s:=10.0", "-p", "joint_trajectory_topic:=''"],
        cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not chunks and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert chunks, "no chunk from the node"
        first = chunks[0]
        assert first.sequence == 0 and first.model_id.endswith(":lerobot") and list(first.action_names) == JOINTS
        values = np.asarray(first.values).reshape(first.horizon, len(JOINTS))
        skipped = round((convert.stamp_to_ns(first.start_time) - convert.stamp_to_ns(first.header.stamp)) / (DT * 1e9))
        expected = ref["actions"][skipped:skipped + first.horizon]
        assert values.shape == expected.shape and skipped < len(ref["actions"])
        assert np.abs(values - expected).max() <= TOLERANCE, np.abs(values - expected).max()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    assert proc.returncode == 0 and "Traceback" not in out, out
    running = subprocess.run(["pgrep", "-af", "lerobot_server"], capture_output=True, text=True).stdout
    assert str(folder) not in running, f"the node left its LeRobot server running: {running}"

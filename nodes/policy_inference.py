"""policy_inference: hosts a policy (torch, onnx, openpi server, lerobot) and publishes time-stamped action chunks.

Subscribes only to the topics the checkpoint's observation spec needs (camera image, /joint_states, /odom,
/perception/obstacles, /perception/parts, /tactile/state) plus /policy/instruction. A timer decides when the next
chunk is due (the current one has less than `request_threshold_s` left); the model runs on a worker thread and
publishes /policy/action_chunk (and /policy/joint_trajectory for arms) with the elapsed prefix cut off.

Faults: a missing or stale input skips the inference (counted as `observation_*`, status WARN) - never zeros;
NaN output drops the chunk (`drop.non_finite_output`); a dead/slow server stops requests during the reconnect
backoff and nothing new is published, so the corrector runs out its chunk and stops; a malformed checkpoint ends
start-up with an error naming the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticStatus
from nav_msgs.msg import Odometry
from physical_ai_stack.msg import ActionChunk, DetectedPartArray, ObstacleArray, TactileState, WorldModelPrediction
from rcl_interfaces.msg import SetParametersResult
from rclpy._rclpy_pybind11 import RCLError
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from physical_ai import convert
from physical_ai.convert import obstacle_features
from physical_ai.policy.chunking import NS, AsyncChunkRunner, TimedChunk
from physical_ai.policy.observation import ObservationError, assemble_state, ground_parts, part_rows
from physical_ai.policy.policy import BACKENDS, make_policy
from physical_ai.policy.spec import ConfigError, check_compatible
from physical_ai.tf import TransformBuffer
from physical_ai.world_model import make_world_model
from physical_ai.world_model.checked_policy import WorldModelCheckedPolicy
from physical_ai_nodes._base import COMMAND_QOS, STATE_QOS, PhysaiNode, run_node
from physical_ai_nodes._tf import TfListener

SOURCE_ROOT = Path(__file__).resolve().parents[1]


def resolve_path(path: str) -> Path:
    """An absolute path, or one relative to the working directory, else to the source/share tree."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    return SOURCE_ROOT / p


def part_features(msg: DetectedPartArray, names: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
    """DetectedPartArray -> ((n, len(names)) features (spec.PART_FEATURES), the n labels).

    Features as the training env makes them (`physical_ai.policy.observation.part_rows`: symmetry-safe yaw and
    sides). "is_target" is left 0 here: it depends on the instruction at inference time (`ground_parts`).
    """
    poses = [part.pose.pose for part in msg.parts]
    rows = part_rows([(p.position.x, p.position.y, p.position.z) for p in poses],
                     [convert.quaternion_to_yaw(p.orientation) for p in poses],
                     [(part.size.x, part.size.y, part.size.z) for part in msg.parts],
                     [part.confidence for part in msg.parts], names)
    return rows, [part.label for part in msg.parts]


def rgb_image(msg: Image) -> np.ndarray:
    """Image -> (H, W, 3) uint8 RGB (rgb8, bgr8, mono8 accepted)."""
    array = convert.image_to_numpy(msg)
    if msg.encoding == "rgb8":
        return array
    if msg.encoding == "bgr8":
        return array[:, :, ::-1]
    if msg.encoding == "mono8":
        return np.repeat(array[:, :, None], 3, axis=2)
    raise ValueError(f"image encoding {msg.encoding!r} not usable as a colour observation (rgb8, bgr8, mono8)")


class PolicyInferenceNode(PhysaiNode):
    """Assembles observations, runs a policy asynchronously and publishes action chunks."""

    def __init__(self) -> None:
        super().__init__("policy_inference")
        p = self.param
        backend = p("backend", "torch", f"Policy backend: {' | '.join(BACKENDS)}", read_only=True)
        checkpoint = p("checkpoint", "models/arm_pick", "Checkpoint directory holding config.json (+ weights) [path]",
                       read_only=True)
        embodiment = p("embodiment", "", "Embodiment the checkpoint must be for: arm, amr, vehicle ('' = any)",
                       read_only=True)
        options: dict[str, Any] = {}
        onnx_path = p("onnx_path", "", "ONNX model for backend onnx ('' = <checkpoint>/model.onnx) [path]")
        threads = p("num_threads", 1, "CPU threads for torch/onnx inference [threads]", (1, 64))
        uri = p("server_uri", "ws://127.0.0.1:8000", "Policy server for backend openpi [ws:// or wss:// (TLS) URI]")
        api_key = p("server_api_key", "", "Sent to the policy server as 'Authorization: Api-Key <key>' ('' = none; "
                    "keep it out of shared parameter files)", read_only=True)
        ca_file = p("server_ca_file", "", "PEM certificate(s) a wss:// server must chain to ('' = system trust "
                    "store) [path]", read_only=True)
        max_message = p("server_max_message_bytes", 16 * 1024 * 1024, "Largest frame accepted from the policy "
                        "server; larger ones count as a failure [B]", (1024, 2**31 - 1), read_only=True)
        timeout = p("server_timeout_s", 1.0, "Longest wait for one server reply [s]", (0.01, 60.0))
        connect_timeout = p("server_connect_timeout_s", 2.0, "Longest wait to connect to the server [s]",
                            (0.05, 60.0))
        backoff0 = p("reconnect_backoff_initial_s", 0.2, "First reconnect wait, doubled per failure [s]",
                     (0.01, 60.0))
        backoff1 = p("reconnect_backoff_max_s", 5.0, "Largest reconnect wait [s]", (0.01, 600.0))
        key_preset = p("key_preset", "", "Request key convention of a remote policy: physai | libero | droid | lerobot "
                       "('' = physai for openpi, lerobot for lerobot; physical_ai/policy/keymap.py)", read_only=True)
        key_map = p("key_map", [""], "Request keys added to or replacing the preset's: 'remote_key=group' "
                    "(group: image, wrist_image, state, state[i:j], obstacles, parts, instruction; "
                    "'remote_key=' removes one)", read_only=True)
        actions_key = p("actions_key", "actions", "Reply key holding the (H, D) actions (openpi)", read_only=True)
        lerobot_dir = p("lerobot_dir", "", "LeRobot policy folder (save_pretrained) for backend lerobot, served from "
                        "the LeRobot environment by this node; '' = connect to server_uri [path]", read_only=True)
        lerobot_device = p("lerobot_device", "cpu", "Torch device of the LeRobot server (cpu, cuda, mps)",
                           read_only=True)
        lerobot_seed = p("lerobot_seed", -1, "Seed of the LeRobot server's torch RNG, for reproducible sampling "
                         "(diffusion); -1 = unseeded", (-1, 2**31 - 1), read_only=True)
        self.request_threshold_s = p("request_threshold_s", 0.5,
                                     "Request the next chunk when the current one has less than this left [s]",
                                     (0.0, 60.0))
        min_period = p("min_inference_period_s", 0.0, "Shortest time between two inference starts [s]", (0.0, 60.0))
        nice = p("inference_nice", 10, "Niceness of the inference thread: control loops keep the CPU [0-19]",
                 (0, 19))
        check_period = p("check_period_s", 0.01, "Period of the is-a-chunk-due check [s]", (0.001, 1.0))
        self.max_age_ns = int(p("max_observation_age_s", 0.5, "Older inputs count as stale [s]", (0.001, 60.0)) * NS)
        self.max_future_ns = int(p("max_observation_future_s", 0.05, "Inputs stamped further ahead of the node clock "
                                   "are dropped (sent before a clock jump back, e.g. a simulator reset) [s]",
                                   (0.0, 60.0)) * NS)
        topics = {
            "image": p("image_topic", "camera/color/image_raw", "Colour image input (sensor_msgs/Image)"),
            "wrist_image": p("wrist_image_topic", "wrist_camera/color/image_raw",
                             "Second camera for remote policies whose spec has wrist_image (sensor_msgs/Image)"),
            "joints": p("joint_states_topic", "joint_states", "Joint state input (sensor_msgs/JointState)"),
            "odom": p("odom_topic", "odom", "Odometry input (nav_msgs/Odometry)"),
            "obstacles": p("obstacles_topic", "perception/obstacles", "Fused obstacles (ObstacleArray)"),
            "parts": p("parts_topic", "perception/parts", "Part poses (DetectedPartArray)"),
            "tactile": p("tactile_topic", "tactile/state", "Tactile input (TactileState)"),
        }
        self.pose_frame = p("pose_frame", "", "Frame the odometry pose is given to the model in, via /tf (e.g. map "
                            "for a localised AMR policy); '' = as received")
        instruction_topic = p("instruction_topic", "policy/instruction", "Task instruction input (std_msgs/String)")
        self.instruction = p("instruction", "", "Task instruction until one arrives on instruction_topic [text]")
        chunk_topic = p("action_chunk_topic", "policy/action_chunk", "Output action chunks (ActionChunk)")
        trajectory_topic = p("joint_trajectory_topic", "policy/joint_trajectory",
                             "Output for arms (trajectory_msgs/JointTrajectory); '' disables")
        self.gripper_names = tuple(p("gripper_actions", ["gripper"], "Action names left out of the trajectory"))
        self.paused = p("paused", False, "Pause inference (no new chunks) while true")

        if backend not in BACKENDS:
            raise SystemExit(f"policy_inference: parameter backend: {backend!r} not one of {list(BACKENDS)}")
        if backend == "onnx":
            options = {"onnx_path": str(resolve_path(onnx_path)) if onnx_path else None, "num_threads": threads}
        elif backend == "torch":
            options = {"num_threads": threads}
        elif backend in ("openpi", "lerobot"):
            # the robot's namespace names its session on a policy server shared by a fleet
            options = {"uri": uri, "timeout_s": timeout, "connect_timeout_s": connect_timeout,
                       "backoff_initial_s": backoff0, "backoff_max_s": backoff1,
                       "robot_id": self.get_namespace().strip("/") or self.get_name(),
                       "key_map": [k for k in key_map if k]}
            if key_preset:
                options["key_preset"] = key_preset
            if backend == "openpi":
                options.update(actions_key=actions_key, api_key=api_key, ca_file=ca_file,
                               max_message_bytes=max_message)
            else:
                options.update(lerobot_dir=str(resolve_path(lerobot_dir)) if lerobot_dir else "",
                               device=lerobot_device, seed=lerobot_seed if lerobot_seed >= 0 else None)
        try:
            self.policy = make_policy(backend, resolve_path(checkpoint), **options)
            check_compatible(self.policy.config, embodiment or None)
        except (ConfigError, ValueError) as exc:
            self.get_logger().fatal(f"cannot load policy: {exc}")
            raise SystemExit(f"policy_inference: {exc}") from None
        self.config = self.policy.config
        world_model = p("world_model", "none", "Check candidate chunks before sending: none | physics (MuJoCo "
                        "rollout: AMR, arm) | learned (<checkpoint>/world_model)")
        candidates = p("world_model_candidates", 8, "Candidate chunks the world model scores per inference (an "
                       "arm scores its 3 wrist-turn grasp variants) [count]", (3, 64))
        materials = p("world_model_materials", "normal", "Arm physics world model: the part catalogue's materials "
                      "it assumes: normal | hard (the hard cell variant's heavy, slippery parts)")
        self.wm_pub = None
        if world_model != "none":
            try:
                self.policy = WorldModelCheckedPolicy(
                    self.policy, make_world_model(world_model, resolve_path(checkpoint), self.config.embodiment,
                                                  materials=materials),
                    k=candidates)
            except (ValueError, OSError) as exc:
                self.get_logger().fatal(f"cannot load world model: {exc}")
                raise SystemExit(f"policy_inference: world_model: {exc}") from None
            self.wm_pub = self.checked_publisher(WorldModelPrediction, p(
                "world_model_topic", "policy/world_model", "World-model predictions (WorldModelPrediction)"))
        spec = self.config.observation

        # Latest input per source: (decoded value, stamp [ns]).
        self._latest: dict[str, tuple[Any, int]] = {}
        needs = set()
        for camera in ("image", "wrist_image"):
            if getattr(spec, camera) is not None:
                needs.add(camera)
        if spec.obstacles is not None:
            needs.add("obstacles")
        if spec.parts is not None:
            needs.add("parts")
        for name in spec.state.names if spec.state is not None else ():
            head = name.split(".")[0]
            needs.add(head if head in ("odom", "tactile") else "joints")
        self._needs = sorted(needs)
        handlers = {"image": (Image, self._on_image), "wrist_image": (Image, self._on_wrist_image),
                    "joints": (JointState, self._on_joints),
                    "odom": (Odometry, self._on_odom), "obstacles": (ObstacleArray, self._on_obstacles),
                    "parts": (DetectedPartArray, self._on_parts), "tactile": (TactileState, self._on_tactile)}
        for source in self._needs:
            msg_type, callback = handlers[source]
            if not topics[source]:
                raise SystemExit(f"policy_inference: the model needs {source} but {source}_topic is empty")
            self.sensor_subscription(msg_type, topics[source], callback)
        if spec.instruction is not None:
            self.create_subscription(String, instruction_topic, self._on_instruction, STATE_QOS)

        self.tf_buffer = TransformBuffer() if self.pose_frame else None
        if self.tf_buffer is not None:
            TfListener(self, self.tf_buffer)
        self.chunk_pub = self.checked_publisher(ActionChunk, chunk_topic, COMMAND_QOS)
        arm_joints = [n for n in self.config.action.names if n not in self.gripper_names]
        self.trajectory_pub = None
        if trajectory_topic and self.config.embodiment == "arm":
            self.trajectory_pub = self.checked_publisher(JointTrajectory, trajectory_topic, COMMAND_QOS)
        self._arm_columns = [self.config.action.names.index(n) for n in arm_joints]
        self._arm_joints = arm_joints
        self._sequence = 0
        self._last_observed_ns = 0
        self._last_problem = ""
        self.runner = AsyncChunkRunner(self.policy, self._now_ns, self._publish, self._on_drop,
                                       self.request_threshold_s, min_period, nice)
        self.on_time_reset(self._restart)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.create_timer(check_period, self._check)
        self.create_timer(self.get_parameter("diagnostics_period_s").value, self._update_status)
        self.get_logger().info(
            f"policy {self.config.name!r} ({backend}, {self.config.embodiment}, {self.config.chunk_length} steps x "
            f"{self.config.dt} s); inputs {self._needs + (['instruction'] if spec.instruction else [])}")

    def _restart(self) -> None:
        """ROS time jumped back (simulator reset): inputs and the current chunk belong to the old clock."""
        self._latest.clear()
        self.runner.reset()
        self.policy.reset()
        self._last_observed_ns = 0

    # ---- inputs -------------------------------------------------------------------------------------------------
    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _stamp(self, header: Any) -> int:
        ns = convert.stamp_to_ns(header.stamp)
        return ns if ns > 0 else self._now_ns()

    def _store(self, source: str, value: Any, stamp_ns: int) -> None:
        if stamp_ns > self._now_ns() + self.max_future_ns:
            # Stamped on a clock that has since jumped back (the last perception frame of the previous episode,
            # received after a simulator reset): kept, it never ages, and the new episode's first chunk was planned
            # on the old episode's parts (the arm set off towards the previous target; ROS eval, issue 7).
            self.count(f"future.{source}")
            return
        self._latest[source] = (value, stamp_ns)
        self.tick(f"in.{source}")

    def _on_image(self, msg: Image) -> None:
        try:
            self._store("image", rgb_image(msg), self._stamp(msg.header))
        except ValueError as exc:
            self._reject("image", exc)

    def _on_wrist_image(self, msg: Image) -> None:
        try:
            self._store("wrist_image", rgb_image(msg), self._stamp(msg.header))
        except ValueError as exc:
            self._reject("wrist_image", exc)

    def _on_joints(self, msg: JointState) -> None:
        try:
            self._store("joints", convert.joint_state_to_dict(msg), self._stamp(msg.header))
        except ValueError as exc:
            self._reject("joints", exc)

    def _on_odom(self, msg: Odometry) -> None:
        try:
            T, twist = convert.odometry_to_arrays(msg)
        except ValueError as exc:
            self._reject("odom", exc)
            return
        if self.tf_buffer is not None and msg.header.frame_id != self.pose_frame:
            # The localiser's correction (e.g. map -> odom) puts the pose in the frame the model was trained in.
            try:
                T = self.tf_buffer.lookup(self.pose_frame, msg.header.frame_id) @ T
            except (LookupError, ValueError) as exc:
                self._reject("odom", exc)
                return
        self._store("odom", (T, twist), self._stamp(msg.header))

    def _on_obstacles(self, msg: ObstacleArray) -> None:
        self._store("obstacles", obstacle_features(msg, self.config.observation.obstacles.features.names),
                    self._stamp(msg.header))

    def _on_parts(self, msg: DetectedPartArray) -> None:
        self._store("parts", part_features(msg, self.config.observation.parts.features.names), self._stamp(msg.header))

    def _on_tactile(self, msg: TactileState) -> None:
        pads = {pad.name: (float(pad.normal_force), bool(pad.in_contact), bool(pad.slip)) for pad in msg.pads}
        self._store("tactile", pads, self._stamp(msg.header))

    def _on_instruction(self, msg: String) -> None:
        self.instruction = msg.data
        self.get_logger().info(f"instruction: {msg.data!r}")

    def _reject(self, source: str, exc: Exception) -> None:
        self.count(f"rejected.{source}")
        self.log_throttled(f"rejected.{source}", f"{source} message rejected: {exc}", 5.0)

    def observation(self) -> tuple[dict[str, Any], int]:
        """The newest inputs as a policy observation and its time (the state's stamp; else the oldest input's).

        Raises:
            ObservationError: an input is missing or older than max_observation_age_s.
        """
        now = self._now_ns()
        for source in self._needs:
            if source not in self._latest:
                raise ObservationError(f"missing: nothing received on the {source} topic yet")
            age = now - self._latest[source][1]
            if age > self.max_age_ns:
                raise ObservationError(f"stale: {source} is {age / 1e6:.0f} ms old (> {self.max_age_ns / 1e6:.0f} ms)")
            if -age > self.max_future_ns:
                raise ObservationError(f"future: {source} is stamped {-age / 1e6:.0f} ms ahead of the clock")
        spec = self.config.observation
        latest = {k: v for k, (v, _) in self._latest.items()}
        obs: dict[str, Any] = {}
        for camera in ("image", "wrist_image"):
            if getattr(spec, camera) is not None:
                obs[camera] = latest[camera]
        if spec.state is not None:
            obs["state"] = assemble_state(spec.state.names, latest.get("joints"), latest.get("odom"),
                                          latest.get("tactile"))
            wm_names = getattr(getattr(self.policy, "world_model", None), "state_names", None)
            if wm_names and tuple(wm_names) != tuple(spec.state.names):
                obs["world_state"] = assemble_state(wm_names, latest.get("joints"), latest.get("odom"),
                                                    latest.get("tactile"))
        if spec.obstacles is not None:
            obs["obstacles"] = latest["obstacles"]
        if spec.parts is not None:
            values, labels = latest["parts"]
            obs["parts"] = ground_parts(values, labels, self.instruction, spec.parts.features.names)
        if spec.instruction is not None:
            obs["instruction"] = self.instruction
        primary = [s for s in ("joints", "odom") if s in self._needs]
        stamp = self._latest[primary[0]][1] if primary else min(self._latest[s][1] for s in self._needs)
        return obs, stamp

    # ---- inference ----------------------------------------------------------------------------------------------
    def _check(self) -> None:
        if self.paused:
            return
        if self.policy.ready() and self.runner.maybe_request(self.observation):
            self.tick("requests")
        self._observe_history()  # after the request: its history holds earlier steps, the request the current one

    def _observe_history(self) -> None:
        """Give history-taking policies (LeRobot n_obs_steps > 1) one observation per control step."""
        period_ns = int(self.policy.history_period_s * NS)
        now = self._now_ns()
        if period_ns <= 0 or now - self._last_observed_ns < period_ns:
            return
        try:
            obs, _ = self.observation()
        except ObservationError:
            return  # counted when an inference needs it
        self.policy.observe(obs)
        # keep the step grid: a late check does not shift every later sample
        self._last_observed_ns = max(self._last_observed_ns + period_ns, now - period_ns)

    def _on_drop(self, reason: str, detail: str) -> None:
        key = "observation_skipped" if reason == "observation" else f"drop.{reason}"
        self.count(key)
        self._last_problem = f"{reason}: {detail}"
        self.log_throttled(key, f"{key}: {detail}")

    def _publish(self, chunk: TimedChunk) -> None:
        """Runs on the worker thread: publish the chunk (and the arm trajectory)."""
        try:
            self._publish_chunk(chunk)
        except RCLError:
            # SIGINT shuts the context down before on_shutdown() stops this thread: a chunk finished in between
            # has nowhere to go. Any other publish failure is a real error.
            if self.context.ok():
                raise

    def _publish_chunk(self, chunk: TimedChunk) -> None:
        self.latency("inference", chunk.latency_ms)
        msg = ActionChunk()
        msg.header.stamp = convert.ns_to_stamp(chunk.obs_time_ns)
        msg.embodiment = chunk.embodiment
        msg.action_names = list(chunk.names)
        msg.start_time = convert.ns_to_stamp(chunk.start_time_ns)
        msg.dt = float(chunk.dt)
        msg.horizon = len(chunk.values)
        msg.values = chunk.values.astype(np.float64).ravel().tolist()
        msg.model_id = chunk.model_id
        msg.inference_latency_ms = float(chunk.latency_ms)
        msg.sequence = self._sequence
        self._sequence += 1
        self.chunk_pub.publish(msg)
        self.tick("chunks")
        prediction = getattr(self.policy, "last_prediction", None)
        if self.wm_pub is not None and prediction is not None:
            self.wm_pub.publish(WorldModelPrediction(
                header=msg.header, model=prediction.model, scores=prediction.scores.astype(float).tolist(),
                collision_probability=prediction.collision_p.astype(float).tolist(),
                failure_probability=prediction.failure_p.astype(float).tolist(),
                progress=prediction.progress.astype(float).tolist(), chosen_index=int(prediction.chosen_index),
                predicted_risk=float(prediction.risk), latency_ms=float(prediction.latency_ms)))
            self.latency("world_model", prediction.latency_ms)
            if prediction.chosen_index < 0:
                self.count("world_model_vetoed_all")
        if chunk.skipped:
            self.count("steps_skipped", chunk.skipped)
        if self.trajectory_pub is not None:
            traj = JointTrajectory()
            traj.header.stamp = msg.start_time
            traj.joint_names = self._arm_joints
            points = chunk.values[:, self._arm_columns]
            traj.points = [JointTrajectoryPoint(positions=row.tolist(), time_from_start=_duration(k * chunk.dt))
                           for k, row in enumerate(points)]
            self.trajectory_pub.publish(traj)

    # ---- parameters and status ----------------------------------------------------------------------------------
    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        for param in params:
            if param.name == "paused":
                if param.type_ != Parameter.Type.BOOL:
                    return SetParametersResult(successful=False, reason="paused must be a bool")
                if self.paused and not param.value:
                    self.runner.reset()  # resume with a fresh chunk, not the tail of an old one
                self.paused = bool(param.value)
                self.get_logger().info("paused" if self.paused else "resumed")
            elif param.name == "instruction":
                self.instruction = str(param.value)
        return SetParametersResult(successful=True)

    def _update_status(self) -> None:
        now = self._now_ns()
        current = self.runner.current
        age_ms = (now - current.obs_time_ns) / 1e6 if current is not None else float("nan")
        health = self.policy.health()
        values = {"backend": self.policy.backend, "model": self.config.name, "backend_health": health,
                  "chunk_age_ms": f"{age_ms:.1f}", "paused": self.paused, "last_problem": self._last_problem}
        if self.paused:
            self.set_status(DiagnosticStatus.OK, "paused", **values)
        elif health != "ok":
            self.set_status(DiagnosticStatus.ERROR, f"backend unavailable: {health}", **values)
        else:
            try:
                self.observation()
            except ObservationError as exc:
                self.set_status(DiagnosticStatus.WARN, f"inference skipped: {exc}", **values)
                return
            self.set_status(DiagnosticStatus.OK, "running", **values)

    def on_shutdown(self) -> None:
        """Stop the worker and close the backend."""
        self.runner.stop()
        self.policy.close()


def _duration(seconds: float) -> Duration:
    sec = int(seconds)
    return Duration(sec=sec, nanosec=round((seconds - sec) * NS))


def main(args: list[str] | None = None) -> None:
    """Entry point."""
    run_node(PolicyInferenceNode, args, events_executor=True)  # C++ dispatch: less CPU per callback


if __name__ == "__main__":
    main()

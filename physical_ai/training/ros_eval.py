"""`physai eval --mode ros`: the same seeded episodes through the real ROS 2 nodes.

mujoco_sim -> perception_fusion -> policy_inference -> trajectory_correction -> mujoco_sim, started with the
bring-up Supervisor from config/<robot>.yaml (as `physai run` does), the checkpoint under test given to
policy_inference. Each episode is started with `/sim/reset` (seed) and scored from `/sim/ground_truth` (privileged,
read by this harness only). Limit violations = measured motion beyond the robot's limits (/odom twist for the AMR,
/odom speed for the vehicle, /joint_states for the arm, 2 % tolerance); clamped requests = correction cycles that
had to clip the policy's command to a position/velocity limit (`/correction/status` flags), requests that never
reached the driver.

AMR policies take a map-frame pose (config.json "state_frame": "map"): policy_inference composes /odom with the
map -> odom transform from /tf (its `pose_frame: map` in config/amr.yaml), as on a robot with a localiser.

Arm episodes name their target part: the harness gives policy_inference the seed's instruction ("put the cube in the
bin"; the `instruction` parameter for the first episode, /policy/instruction before each reset), as an operator
would, and the in-process env does from the same seed.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from physical_ai.policy.spec import load_config
from physical_ai.training.envs import make_env

RECORD_EXCLUDE = "['/rosout', '/parameter_events', '/camera/depth/image_raw', '/lidar/points']"
LIMIT_FLAGS = 1 | 2  # CorrectionStatus.LIMIT_POSITION | LIMIT_VELOCITY
# Recording: a successful episode runs on until the robot has been at its goal this long [sim s] before the reset,
# so that the recording holds the stack at rest there, as `physai collect` holds its expert (10 steps); a clone of
# a recording that ends the instant the robot stops never learns to stay stopped, and drives past the goal.
RECORD_HOLD_S = 1.0


def private_domain_id() -> int:
    """A DDS domain id (1-101) no other process on this machine is using, by binding its discovery port.

    Fast DDS's metatraffic unicast port of participant 0 in domain d is 7410 + 250 d; if it is free, no local
    participant is in that domain yet.
    """
    import socket

    start = os.getpid() % 100
    for k in range(100):
        domain = 1 + (start + k) % 101
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind(("127.0.0.1", 7410 + 250 * domain))
            except OSError:
                continue
        return domain
    raise RuntimeError("no free DDS domain id on this machine")


def hold_at_goal(latest: dict[str, Any], lock: threading.Lock, hold_s: float, limit_s: float, supervisor: Any,
                 log_dir: Path, wall_timeout_s: float) -> float:
    """Let the stack run on after a successful episode; return the stamp of the last ground truth seen [s].

    It runs until the robot has been at its goal (the ground truth's `task_success`) for `hold_s` of sim time in
    all, as `physai collect` counts its expert's steps there, or until the episode's time limit `limit_s`.
    """
    from physical_ai import convert

    deadline = time.monotonic() + wall_timeout_s
    held, previous = 0.0, None
    while True:
        with lock:
            gt = latest["gt"]
        stamp = convert.stamp_to_ns(gt.header.stamp) * 1e-9
        if previous is not None and gt.task_success and stamp > previous:
            held += stamp - previous
        previous = stamp
        if held >= hold_s or stamp >= limit_s or time.monotonic() > deadline:
            return stamp
        if supervisor.poll() is not None:
            raise RuntimeError(f"a required node died while holding at the goal; logs in {log_dir}")
        time.sleep(0.02)


def evaluate_ros(scenario: str, policy_dir: str | Path, episodes: int, seed: int, time_limit_s: float | None = None,
                 startup_timeout_s: float = 60.0, real_time_factor: float = 1.0,
                 realtime: bool = False, record: str | Path | None = None,
                 command_noise: float = 0.0, world_model: str = "none", wm_k: int = 3,
                 variant: str = "normal") -> tuple[list[Any], dict[str, Any]]:
    """Run `episodes` seeded episodes through the nodes; return (episode rows, summary) like the in-process mode.

    With `realtime`, the corrector and the simulator (the robot's drivers) run under SCHED_FIFO as deployed (README,
    "Real-time priority"), so that other work on the machine cannot starve the safety loop; refused with a clear
    error where this process may not use SCHED_FIFO. `command_noise` > 0 has the simulator perturb the AMR's executed
    base command on half the episodes (mujoco_sim `command_noise`), for recordings to train from. With `record`, a
    successful episode runs on until the robot has been `RECORD_HOLD_S` at its goal before the reset (it is scored
    at its success, as without). `world_model` and `wm_k` set policy_inference's check (its vetoes are counted
    from /policy/world_model), `variant` the arm cell (and the materials the arm's world model assumes).
    """
    import rclpy
    from nav_msgs.msg import Odometry
    from physical_ai_stack.msg import CorrectionStatus, SimGroundTruth, WorldModelPrediction
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Int64, String

    from physical_ai import convert
    from physical_ai.bringup.processes import Supervisor
    from physical_ai.bringup.stack import RECORDER, node_command, params_file, stack_commands, with_realtime
    from physical_ai.training.evaluate import EpisodeResult, check_policy_fits, env_time_limit, summarise

    if variant != "normal" and scenario != "arm":
        raise ValueError(f"--variant {variant}: only the arm cell has variants")
    env = make_env(scenario)
    config = load_config(policy_dir)
    check_policy_fits(config, env)
    limit = time_limit_s or env_time_limit(env)
    robot = env.embodiment
    params = params_file(robot)
    overrides: dict[str, dict[str, str]] = {
        "mujoco_sim": {"seed": str(seed), "real_time_factor": str(real_time_factor),
                       "command_noise": str(command_noise)},
        "policy_inference": {"checkpoint": str(Path(policy_dir).resolve()), "world_model": world_model,
                             "world_model_candidates": str(wm_k), "world_model_materials": variant},
    }
    if robot == "arm":
        overrides["mujoco_sim"]["arm_variant"] = variant
    from physical_ai.sim.scenarios import make_scenario
    from physical_ai.training.envs import arm_instruction

    def instruction(episode_seed: int) -> str:
        return arm_instruction(make_scenario(env.scenario_name, episode_seed).target_part)

    if robot == "arm":
        overrides["policy_inference"]["instruction"] = instruction(seed)
    commands = stack_commands("mujoco", params, use_sim_time=True, overrides=overrides)
    if realtime:
        commands = with_realtime(commands)
    if record:  # the episodes' topics for `physai dataset build`; the raw depth image and cloud only add size
        commands.append((RECORDER, node_command(RECORDER, params, use_sim_time=True, overrides={
            "output": str(Path(record).resolve()), "exclude": RECORD_EXCLUDE, "record_images": "true"})))
    log_dir = Path(tempfile.mkdtemp(prefix="physai_eval_"))
    # A private, local-only DDS domain: two evaluations (or an evaluation beside a running stack) on one machine
    # would otherwise reset each other's simulators and mix their topics.
    domain = private_domain_id()
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"  # read by this process's participant too
    supervisor = Supervisor(commands, log_dir=log_dir, env=dict(os.environ, ROS_DOMAIN_ID=str(domain)))
    rclpy.init(domain_id=domain)
    node = rclpy.create_node("physai_eval")
    lock = threading.Lock()
    latest: dict[str, Any] = {"gt": None, "limits": 0, "violations": 0, "vetoes": 0, "predicted_failure": 0}
    sc = make_scenario(env.scenario_name, 0)
    if robot == "amr":
        lo, hi = sc.base.lower * 1.02 - 1e-3, sc.base.upper * 1.02 + 1e-3
    elif robot == "vehicle":  # odometry twist (forward speed, yaw rate): the speed limit; yaw rate unbounded
        lo = np.array([-sc.drive.upper[1] * 1.02 - 1e-3, -np.inf])
        hi = np.array([sc.drive.upper[1] * 1.02 + 1e-3, np.inf])
    else:
        lo, hi = sc.limits.lower - 0.01, sc.limits.upper + 0.01
        vmax = sc.limits.max_velocity * 1.05
        joint_names = sc.limits.names

    def on_gt(msg: SimGroundTruth) -> None:
        with lock:
            latest["gt"] = msg

    def on_status(msg: CorrectionStatus) -> None:
        if msg.flags & LIMIT_FLAGS:
            with lock:
                latest["limits"] += 1

    def on_joints(msg: JointState) -> None:
        joints = convert.joint_state_to_dict(msg)
        if not all(n in joints for n in joint_names):
            return
        q = np.array([joints[n][0] for n in joint_names])
        v = np.array([joints[n][1] for n in joint_names])
        if np.any(q < lo) or np.any(q > hi) or np.any(np.abs(v) > vmax):
            with lock:
                latest["violations"] += 1

    def on_odom(msg: Odometry) -> None:
        _, twist = convert.odometry_to_arrays(msg)
        measured = np.array([twist[0], twist[5]])
        if np.any(measured < lo) or np.any(measured > hi):
            with lock:
                latest["violations"] += 1

    def on_prediction(msg: WorldModelPrediction) -> None:
        with lock:
            vetoed = msg.chosen_index < 0
            latest["vetoes"] += vetoed
            latest["predicted_failure"] += vetoed or msg.failure_probability[msg.chosen_index] > 0.5

    node.create_subscription(SimGroundTruth, "/sim/ground_truth", on_gt, 10)
    node.create_subscription(WorldModelPrediction, "/policy/world_model", on_prediction, 100)
    node.create_subscription(CorrectionStatus, "/correction/status", on_status, 10)
    if robot in ("amr", "vehicle"):
        node.create_subscription(Odometry, "/odom", on_odom, 10)
    else:
        node.create_subscription(JointState, "/joint_states", on_joints, 10)
    reset_pub = node.create_publisher(Int64, "/sim/reset", 1)
    instruction_pub = node.create_publisher(String, "/policy/instruction", 10) if robot == "arm" else None
    executor = rclpy.executors.SingleThreadedExecutor()
    executor.add_node(node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    rows: list[EpisodeResult] = []
    start = time.monotonic()
    try:
        supervisor.start()
        spin.start()
        deadline = time.monotonic() + startup_timeout_s
        while latest["gt"] is None:
            if supervisor.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ROS stack did not come up (no /sim/ground_truth); node logs in {log_dir}")
            time.sleep(0.2)
        end_s = float("inf")
        for i in range(episodes):
            episode_seed = seed + i
            if i > 0:
                if instruction_pub is not None:
                    instruction_pub.publish(String(data=instruction(episode_seed)))
                reset_pub.publish(Int64(data=episode_seed))
            with lock:
                latest["gt"], limits0, violations0 = None, latest["limits"], latest["violations"]
                vetoes0, predicted0 = latest["vetoes"], latest["predicted_failure"]
            wall_deadline = time.monotonic() + 3.0 * limit / max(real_time_factor, 0.1) + 20.0
            gt, started = None, i == 0
            while time.monotonic() < wall_deadline:
                with lock:
                    gt = latest["gt"]
                # Ground truth of the previous episode still in flight after the reset (its clock did not jump back
                # yet) must not be scored as this episode's end.
                started = started or (gt is not None and convert.stamp_to_ns(gt.header.stamp) * 1e-9 < end_s)
                if gt is not None and started and (gt.episode_done or gt.header.stamp.sec >= limit):
                    break
                if supervisor.poll() is not None:
                    raise RuntimeError(f"a required node died during episode {i}; logs in {log_dir}")
                time.sleep(0.05)
            if gt is None or not started:
                raise RuntimeError(f"episode {i}: no ground truth after the simulator reset; logs: {log_dir}")
            end_s = convert.stamp_to_ns(gt.header.stamp) * 1e-9
            rows.append(EpisodeResult(seed=episode_seed, success=bool(gt.task_success), collisions=int(gt.collisions),
                                      limit_violations=latest["violations"] - violations0, failure=False,
                                      clamped_requests=latest["limits"] - limits0,
                                      time_s=round(end_s, 2),
                                      progress=round(float(gt.progress), 3),
                                      vetoes=latest["vetoes"] - vetoes0,
                                      wm_predicted_failure=latest["predicted_failure"] > predicted0))
            if record and gt.task_success:
                end_s = hold_at_goal(latest, lock, RECORD_HOLD_S, limit, supervisor, log_dir,
                                     wall_deadline - time.monotonic())
            r = rows[-1]
            print(f"episode {i} seed {r.seed}: {'success' if r.success else 'FAIL'} time {r.time_s} s "
                  f"progress {r.progress} collisions {r.collisions} limit_violations {r.limit_violations} "
                  f"vetoes {r.vetoes}", flush=True)
    finally:
        supervisor.stop()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    summary = summarise(scenario, rows, {"policy": str(policy_dir), "mode": "ros", "first_seed": seed,
                                         "logs": str(log_dir), "wall_s": round(time.monotonic() - start, 1),
                                         "realtime": realtime, "real_time_factor": real_time_factor,
                                         "world_model": world_model, "wm_k": wm_k,
                                         "variant": variant})
    return rows, summary

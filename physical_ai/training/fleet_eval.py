"""The fleet in-process: three AMRs on one floor, each with its own perception, policy and correction core.

What the fleet's ROS bring-up (`physical_ai.bringup.fleet`) runs as ten processes, here in one process and faster
than real time, as `physai eval --correction core` does for one AMR: per robot, its 3D LiDAR and 2D scan (its own
hull skipped, the others' hulls seen) go through the perception core with perception_fusion's settings
(config/amr.yaml), the policy gets its pose in its route frame (as policy_inference with `pose_frame: route`) and the
tracked obstacles, and its chunks run through the trajectory-correction core at the corrector's rate; the robots
move in one world and are scored by the fleet scenario (contacts by kind, clearances).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from physical_ai.sim.fleet import FactoryFleet, FleetRobot
from physical_ai.sim.scenarios import make_scenario
from physical_ai.sim.sensors import Lidar, SensorNoise
from physical_ai.training.envs import AMR_TASK, _yaw_matrix, obstacle_discs, obstacle_rows, robot_params


@dataclass
class InProcessResult:
    """One robot's score in one in-process episode."""

    robot: str
    seed: int
    success: bool
    contacts: dict[str, int]
    min_person_clearance_m: float
    min_robot_clearance_m: float
    progress: float
    time_s: float


class _RobotLoop:
    """One robot's sensing, policy and corrector (settings from config/amr.yaml, as its nodes have them)."""

    def __init__(self, fleet: FactoryFleet, robot: FleetRobot, policy: Any, rng: np.random.Generator) -> None:
        from physical_ai.control.amr import AmrCorrector, amr_config
        from physical_ai.perception.params import pipeline_config
        from physical_ai.perception.pipeline import FusionPipeline

        sim = robot_params("amr", "mujoco_sim")
        m = fleet.model
        self.robot, self.policy, self.rng = robot, policy, rng
        self.lidar = Lidar(m, robot.lidar_body, int(sim["lidar_rings"]), int(sim["lidar_horizontal"]), -15.0, 15.0,
                           range_max=float(sim["lidar_range_max_m"]), exclude_body=robot.lidar_exclude_body)
        self.scanner = Lidar(m, robot.lidar_body, 1, int(sim["scan_beams"]), range_max=float(sim["scan_range_max_m"]),
                             exclude_body=robot.lidar_exclude_body)
        self.T_base_lidar = np.eye(4)
        self.T_base_lidar[:3, 3] = m.body(robot.lidar_body).pos
        self.noise = SensorNoise(sigma=0.01, invalid_fraction=0.01)  # config/amr.yaml's lidar noise
        self.pipeline = FusionPipeline(pipeline_config(robot_params("amr", "perception_fusion")))
        params = robot_params("amr", "trajectory_correction")
        self.rate_hz = float(params.get("rate_hz", 100.0))
        self.points_z = (float(params.get("points_min_z", 0.05)), float(params.get("points_max_z", 1.8)))
        self.corrector = AmrCorrector(amr_config(params, period_s=1.0 / self.rate_hz))
        self.corrector.set_goal(robot.goal)  # the corrector's odom is the map here (set_pose gets map poses)
        self.features = policy.config.observation.obstacles.features.names
        self.names = list(policy.config.action.names)

    def sense(self) -> np.ndarray:
        """Scan, track, feed the corrector; the policy's obstacle rows."""
        fl = self.robot.fleet
        clouds = []
        for sensor in (self.lidar, self.scanner):
            scan = sensor.scan(fl.data, self.noise, self.rng)
            pts = np.stack([scan["x"], scan["y"], scan["z"]], axis=1).astype(np.float64)
            clouds.append(pts @ self.T_base_lidar[:3, :3].T + self.T_base_lidar[:3, 3])
        from physical_ai.perception.pipeline import FrameInput

        x, y, yaw = self.robot.base_pose()
        result = self.pipeline.process(FrameInput(stamp_ns=fl.time_ns, clouds=clouds[:1], scans=clouds[1:],
                                                  T_world_base=_yaw_matrix(x, y, yaw)))
        points = np.concatenate(clouds)
        keep = (points[:, 2] >= self.points_z[0]) & (points[:, 2] <= self.points_z[1])
        self.corrector.set_points(points[keep, :2])
        self.corrector.set_obstacles(*obstacle_discs(result.obstacles))
        self.corrector.set_pose(x, y, yaw)
        return obstacle_rows(result.obstacles, self.features)

    def plan(self, obstacles: np.ndarray) -> None:
        """Ask the policy (pose in the robot's route frame) and hand its chunk to the corrector."""
        fl, route = self.robot.fleet, self.robot.route
        x, y, yaw = self.robot.base_pose()
        ox, oy, oyaw = route.origin
        c, s = np.cos(oyaw), np.sin(oyaw)
        dx, dy = x - ox, y - oy
        _, twist = self.robot.odometry()
        values = {"odom.x": c * dx + s * dy, "odom.y": -s * dx + c * dy,
                  "odom.yaw": np.arctan2(np.sin(yaw - oyaw), np.cos(yaw - oyaw)), "odom.vx": twist[0],
                  "odom.wz": twist[5]}  # the AMR spec's state; a policy takes some of them by name
        state = np.array([values[name] for name in self.policy.config.observation.state.names])
        chunk = self.policy.infer({"state": state, "obstacles": obstacles, "instruction": AMR_TASK}).values
        now = fl.data.time
        self.corrector.submit_chunk(self.names, np.asarray(chunk).ravel(), now, self.policy.config.dt, len(chunk),
                                    now)


def run_fleet_episode(policy: Any, seed: int, replan: int, time_limit_s: float = 0.0) -> list[InProcessResult]:
    """One seeded fleet episode; every robot perceives every policy step (its tracks need every frame).

    `time_limit_s` > 0 ends it earlier than the scenario's 90 s.
    """
    fleet = make_scenario("fleet", seed, {"time_limit_s": time_limit_s})
    assert isinstance(fleet, FactoryFleet)
    rng = np.random.default_rng(10_000 + seed)
    loops = [_RobotLoop(fleet, robot, policy, rng) for robot in fleet.robots]
    dt = policy.config.dt
    rate = loops[0].rate_hz
    n_sub = max(1, round(1.0 / (rate * fleet.timestep)))
    for step in range(round(fleet.time_limit_s / dt)):
        for loop in loops:
            obstacles = loop.sense()
            if step % replan == 0:
                loop.plan(obstacles)
        for _ in range(max(1, round(dt * rate))):
            for loop in loops:
                cmd = loop.corrector.step(fleet.data.time)
                loop.robot.command_twist(cmd.linear, cmd.angular)
            fleet.step(n_sub)
        if fleet.done:
            break
    return [InProcessResult(r.name, seed, r.success, dict(r.contacts), round(r.min_person_clearance, 3),
                            round(r.min_robot_clearance, 3), round(r.progress(), 3), round(fleet.data.time, 2))
            for r in fleet.robots]


def evaluate_fleet(policy_dir: str | Path, seeds: range, threads: int = 1,
                   on_episode: Callable[[list[InProcessResult]], None] | None = None) -> list[list[InProcessResult]]:
    """The fleet over `seeds`, one policy (torch) for every robot; per episode, each robot's result.

    `on_episode` is called with each episode's results as it ends (an episode to its time limit takes minutes).
    """
    from physical_ai.policy.policy import TorchPolicy

    policy = TorchPolicy(policy_dir, num_threads=threads)
    replan = max(1, policy.config.chunk_length // 2)
    episodes = []
    for seed in seeds:
        episodes.append(run_fleet_episode(policy, seed, replan))
        if on_episode is not None:
            on_episode(episodes[-1])
    return episodes

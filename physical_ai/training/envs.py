"""Policy-facing episode environments over the simulator core: what the robot senses in, actions out.

An env wraps a `physical_ai.sim.scenarios.Scenario` (physics, randomisation, ground truth) and its scripted expert
(`physical_ai.sim.experts`), runs the perception core (`physical_ai.perception`) on simulated sensors, and returns
observations in the policy spec's order and units (`observe()`), so collection, training and in-process evaluation
all see what the ROS nodes would see. Ground truth is used only for the expert, scoring and world-model labels.

This module is the adapter between the simulator's API (scenario command methods, expert dict commands) and the
policy's (action vectors named as in the ActionChunk contract); it holds no physics and no task logic.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from physical_ai.control.shapes import boxes_to_discs
from physical_ai.perception.lidar import CLASS_PERSON
from physical_ai.perception.params import pipeline_config
from physical_ai.perception.part_memory import PartMemory, PartMemoryConfig
from physical_ai.perception.parts import PartsConfig, detect_parts
from physical_ai.perception.pipeline import FrameInput, FusionPipeline, PipelineConfig
from physical_ai.perception.self_filter import BodySpheres
from physical_ai.policy.defaults import default_config
from physical_ai.policy.observation import ground_parts, part_rows
from physical_ai.policy.spec import FeatureGroup, ObservationSpec, PolicyConfig, TokenGroup
from physical_ai.sim import experts
from physical_ai.sim.scenarios import Scenario, make_scenario
from physical_ai.sim.sensors import Lidar, SensorNoise

AMR_TASK = "drive to the drop-off station"
# "node": sensor layout and perception settings of the ROS nodes (config/<robot>.yaml); "fast": a sparser LiDAR
# (8 x 450 rays) with the perception core's default settings, ~8x cheaper, for quick experiments.
PERCEPTION_MODES = ("node", "fast")
ARM_TASK = "put the {part} in the bin"


def arm_instruction(target_part: str) -> str:
    """The arm task text for a scenario part body name ("part_prism" -> "put the prism in the bin")."""
    return ARM_TASK.format(part=target_part.removeprefix("part_"))


@dataclass(frozen=True)
class Status:
    """Scoring state of the episode (privileged)."""

    success: bool
    done: bool
    collisions: int
    progress: float
    failure: bool            # task-specific failure, e.g. the part was dropped outside the bin
    time_s: float


def _yaw_matrix(x: float, y: float, yaw: float) -> np.ndarray:
    T = np.eye(4)
    c, s = np.cos(yaw), np.sin(yaw)
    T[:2, :2] = [[c, -s], [s, c]]
    T[:2, 3] = [x, y]
    return T


class Env:
    """Common episode loop parts; subclasses define sensing, expert and command mapping."""

    embodiment = ""
    scenario_name = ""
    # the trajectory-correction core, set by a subclass's attach_corrector() (in-process evaluation as under ROS)
    corrector: Any = None
    # False where observe() keeps no state between frames (no tracking): closed loops may observe only at replans
    perceive_every_step = True

    def __init__(self, randomise: bool = True, perception: str = "node") -> None:
        if perception not in PERCEPTION_MODES:
            raise ValueError(f"perception {perception!r}: choose from {PERCEPTION_MODES}")
        self.randomise = randomise
        self.perception = perception
        self.spec = self.make_spec()
        self.sc: Scenario | None = None
        self.rng = np.random.default_rng(0)
        self.limit_violations = 0   # actuator level: measured motion beyond the robot's limits
        self.clamped_requests = 0   # policy/expert commands outside the limits, clamped before the driver

    # ---- interface ---------------------------------------------------------------------------------------------
    def make_spec(self) -> PolicyConfig:
        """Observation/action spec this env produces (identity normalisation)."""
        raise NotImplementedError

    @property
    def dt(self) -> float:
        """Policy step [s]."""
        return self.spec.dt

    def scenario_options(self, rng: np.random.Generator) -> dict[str, Any]:
        """Domain-randomised scenario options for one episode."""
        return {}

    def task_options(self) -> dict[str, Any]:
        """Scenario options that define the task (kept with or without domain randomisation)."""
        return {}

    def reset(self, seed: int) -> None:
        """Start a seeded episode (scenario pose randomisation plus this env's domain randomisation)."""
        self.close_camera()  # bound to the previous episode's model
        self.rng = np.random.default_rng(10_000 + seed)
        options = {**self.task_options(), **(self.scenario_options(self.rng) if self.randomise else {})}
        self.sc = make_scenario(self.scenario_name, seed, options)
        self.expert = experts.make_expert(self.sc)
        self.expert.reset(experts.observe(self.sc))
        self.limit_violations = 0
        self.clamped_requests = 0
        self._reset_sensing()

    def _reset_sensing(self) -> None: ...

    def observe(self) -> dict[str, Any]:
        """Raw policy observation (keys = spec groups)."""
        raise NotImplementedError

    def expert_action(self) -> np.ndarray:
        """The scripted expert's action now, in the spec's action order."""
        raise NotImplementedError

    def apply(self, action: np.ndarray) -> None:
        """Send one action (held for one policy step) and advance the physics by `dt`."""
        raise NotImplementedError

    def submit_chunk(self, chunk: np.ndarray) -> None:
        """Hand a policy chunk starting now to the attached corrector (out-of-limit targets are clamped and counted)."""
        now = self.sc.data.time
        check = self.corrector.submit_chunk(list(self.spec.action.names), np.asarray(chunk).ravel(), now, self.dt,
                                            len(chunk), now)
        self.clamped_requests += int(check.clamped)

    def clip_action(self, action: np.ndarray) -> np.ndarray:
        """`action` clipped to the robot's command limits."""
        lo, hi = self.action_limits()
        return np.clip(action, lo, hi)

    def action_limits(self) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) command limits in action order."""
        raise NotImplementedError

    def status(self) -> Status:
        """Scoring state now."""
        sc = self.sc
        return Status(bool(sc.success), bool(sc.done), int(sc.collisions), float(sc._progress()),
                      self._failure(), float(sc.data.time))

    def _failure(self) -> bool:
        return False

    # ---- forking (world-model labels and physics rollouts) ----------------------------------------------------
    def snapshot(self) -> tuple[np.ndarray, dict[str, Any]]:
        """Full physics state plus the scenario's and the env's Python-side state."""
        sc = self.sc
        size = mujoco.mj_stateSize(sc.model, mujoco.mjtState.mjSTATE_INTEGRATION)
        state = np.empty(size)
        mujoco.mj_getState(sc.model, sc.data, state, mujoco.mjtState.mjSTATE_INTEGRATION)
        skip = {"model", "data", "expert", "ik"}
        py = {k: copy.deepcopy(v) for k, v in vars(sc).items() if k not in skip}
        return state, {"scenario": py, "violations": self.limit_violations, "clamped": self.clamped_requests}

    def restore(self, snap: tuple[np.ndarray, dict[str, Any]]) -> None:
        """Return to a `snapshot()`."""
        sc = self.sc
        state, py = snap
        mujoco.mj_setState(sc.model, sc.data, state, mujoco.mjtState.mjSTATE_INTEGRATION)
        mujoco.mj_forward(sc.model, sc.data)
        for k, v in py["scenario"].items():
            setattr(sc, k, copy.deepcopy(v))
        self.limit_violations = py["violations"]
        self.clamped_requests = py["clamped"]

    def rollout(self, chunk: np.ndarray) -> Status:
        """Play `chunk` from now on a fork of the true simulation and return the status after it (then undo)."""
        snap = self.snapshot()
        before = self.sc.collisions
        try:
            for action in chunk:
                self.apply(action)
                if self.sc.done:
                    break
            st = self.status()
            return replace(st, collisions=st.collisions - before)
        finally:
            self.restore(snap)

    def camera_image(self, width: int, height: int) -> np.ndarray:
        """RGB image (height, width, 3) uint8 of the scenario's camera now (the camera the ROS simulator streams)."""
        key = (width, height)
        if getattr(self, "_camera_key", None) != key:
            self.close_camera()
            self._camera_renderer = mujoco.Renderer(self.sc.model, height, width)
            self._camera_key = key
        self._camera_renderer.update_scene(self.sc.data, camera=self.sc.camera)
        return self._camera_renderer.render().copy()

    def close_camera(self) -> None:
        """Release the camera renderer (a new one is made for the next episode's model)."""
        renderer = getattr(self, "_camera_renderer", None)
        if renderer is not None:
            renderer.close()
        self._camera_renderer, self._camera_key = None, None

    def close(self) -> None:
        """Release renderers."""
        self.close_camera()


# ============================================================================================================ AMR
def obstacle_rows(obstacles: list[Any], feature_names: tuple[str, ...]) -> np.ndarray:
    """Perception-core obstacle estimates as policy tokens: (n, F) with the spec's features, in base_link."""
    rows = []
    for ob in obstacles:
        c = ob.cluster
        values = {"x": c.center[0], "y": c.center[1], "z": c.center[2], "length": c.size[0],
                  "width": c.size[1], "height": c.size[2], "yaw": c.yaw, "vx": ob.velocity[0],
                  "vy": ob.velocity[1], "class": float(c.classification), "confidence": c.confidence}
        rows.append([values[f] for f in feature_names])
    return np.asarray(rows, dtype=np.float64).reshape(-1, len(feature_names))


def obstacle_discs(obstacles: list[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Obstacle estimates as (centres, radii, velocities, people) in base_link for the corrector cores.

    As the trajectory_correction node builds them: each box (a shelf face, a car) as a chain of covering discs;
    `people` marks the discs of obstacles classed as a person.
    """
    centres = np.array([o.cluster.center[:2] for o in obstacles]).reshape(-1, 2)
    sizes = np.array([o.cluster.size[:2] for o in obstacles]).reshape(-1, 2)
    yaws = np.array([o.cluster.yaw for o in obstacles])
    vel = np.array([o.velocity[:2] for o in obstacles]).reshape(-1, 2)
    person = np.array([o.cluster.classification == CLASS_PERSON for o in obstacles], bool)
    centres, radii, velocities, owner = boxes_to_discs(centres, sizes[:, 0], sizes[:, 1], yaws, vel)
    return centres, radii, velocities, person[owner]


def robot_params(robot: str, node: str) -> dict[str, Any]:
    """One node's `ros__parameters` from config/<robot>.yaml (what that node runs with under ROS)."""
    from physical_ai.bringup.stack import node_params, params_file, source_root

    path = source_root() / "config" / f"{robot}.yaml"
    return node_params(path if path.is_file() else params_file(robot), node)  # else: installed, not a checkout


class AmrEnv(Env):
    """Factory-floor AMR: map-frame pose and twist, LiDAR -> perception-core tracked obstacles, (v, w) actions.

    The pose is in the map frame (map -> odom -> base_link, as a localiser provides it), because the stations are
    fixed in the map; the obstacles are the perception pipeline's tracks (ground removal, clustering, Kalman
    velocities) from the simulated 3D LiDAR and 2D scan, with the sensor layout of the mujoco_sim node and the
    perception settings of the perception_fusion node in config/amr.yaml, so that a policy trained here sees the
    same obstacle features when it runs behind the ROS nodes.
    """

    embodiment = "amr"
    scenario_name = "amr"

    def make_spec(self) -> PolicyConfig:
        """The default AMR spec (map-frame pose, 16 obstacle tokens)."""
        return default_config("amr", name="amr_dataset")

    def scenario_options(self, rng: np.random.Generator) -> dict[str, Any]:
        """Worker walking speed randomised around 1.4 m/s."""
        return {"worker_speed": float(rng.uniform(1.2, 1.6))}

    def _reset_sensing(self) -> None:
        sc = self.sc
        node = self.perception == "node"
        sim = robot_params("amr", "mujoco_sim") if node else {"lidar_rings": 8, "lidar_horizontal": 450}
        self.lidar = Lidar(sc.model, sc.lidar_body, int(sim.get("lidar_rings", 16)),
                           int(sim.get("lidar_horizontal", 1800)), -15.0, 15.0,
                           range_max=float(sim.get("lidar_range_max_m", 30.0)))
        self.scanner = (Lidar(sc.model, sc.lidar_body, 1, int(sim.get("scan_beams", 720)),
                              range_max=float(sim.get("scan_range_max_m", 20.0))) if node else None)
        body = sc.model.body(sc.lidar_body)
        self.T_base_lidar = np.eye(4)
        self.T_base_lidar[:3, 3] = body.pos
        sigma = float(self.rng.uniform(0.005, 0.03)) if self.randomise else 0.01
        self.noise = SensorNoise(sigma=sigma, invalid_fraction=0.02 if self.randomise else 0.01)
        self.pipeline = FusionPipeline(pipeline_config(robot_params("amr", "perception_fusion")) if node
                                       else PipelineConfig(people_detector="off", occupancy_enabled=False))
        self.feature_names = self.spec.observation.obstacles.features.names

    def attach_corrector(self) -> None:
        """Execute actions through the trajectory_correction core (settings from config/amr.yaml), as under ROS.

        After this, `submit_chunk` hands the policy's chunks to the corrector and `apply` runs its control loop
        (footprint sweep against LiDAR points and tracked obstacles, slow/stop/steer, base limits) for one step.
        """
        from physical_ai.control.amr import AmrCorrector, amr_config

        params = robot_params("amr", "trajectory_correction")
        g = params.get
        self.corrector_rate = float(g("rate_hz", 100.0))
        self.points_z = (float(g("points_min_z", 0.05)), float(g("points_max_z", 1.8)))
        self.corrector = AmrCorrector(amr_config(params, period_s=1.0 / self.corrector_rate))

    def _feed_corrector(self, points: np.ndarray, obstacles: list[Any]) -> None:
        keep = (points[:, 2] >= self.points_z[0]) & (points[:, 2] <= self.points_z[1])
        self.corrector.set_points(points[keep, :2])
        self.corrector.set_obstacles(*obstacle_discs(obstacles))
        x, y, yaw = self.pose()
        self.corrector.set_pose(x, y, yaw)

    def _corrected_step(self) -> None:
        sc = self.sc
        n_sub = max(1, round(1.0 / (self.corrector_rate * sc.timestep)))
        for _ in range(max(1, round(self.dt * self.corrector_rate))):
            cmd = self.corrector.step(sc.data.time)
            sc.command_twist(cmd.linear, cmd.angular)
            sc.step(n_sub)
        self._check_measured()

    def _check_measured(self) -> None:
        """Count a limit violation when the base's measured speed exceeds its limits (2 % tolerance)."""
        _, twist = self.sc.odometry()
        lo, hi = self.sc.base.lower, self.sc.base.upper
        measured = np.array([twist[0], twist[5]])
        if np.any(measured < lo * 1.02 - 1e-3) or np.any(measured > hi * 1.02 + 1e-3):
            self.limit_violations += 1

    def pose(self) -> np.ndarray:
        """Map-frame (x, y, yaw) of base_link as a localiser reports it."""
        return self.sc.base_pose()

    def obstacles(self) -> np.ndarray:
        """Perceived obstacles now, (n, F) in base_link with the spec's features."""
        sc = self.sc
        clouds = []
        for sensor in (self.lidar, self.scanner):
            if sensor is None:
                continue
            scan = sensor.scan(sc.data, self.noise, self.rng)
            pts = np.stack([scan["x"], scan["y"], scan["z"]], axis=1).astype(np.float64)
            clouds.append(pts @ self.T_base_lidar[:3, :3].T + self.T_base_lidar[:3, 3])
        x, y, yaw = self.pose()
        result = self.pipeline.process(FrameInput(stamp_ns=sc.time_ns, clouds=clouds[:1], scans=clouds[1:],
                                                  T_world_base=_yaw_matrix(x, y, yaw)), with_grid=False)
        if self.corrector is not None:
            self._feed_corrector(np.concatenate(clouds), result.obstacles)
        self.last_estimates = result.obstacles  # what perception_fusion would publish (simulated recordings)
        return obstacle_rows(result.obstacles, self.feature_names)

    def observe(self) -> dict[str, Any]:
        """State (map x, y, yaw, vx, wz), perceived obstacles, instruction."""
        _, twist = self.sc.odometry()
        x, y, yaw = self.pose()
        state = np.array([x, y, yaw, twist[0], twist[5]])
        return {"state": state, "obstacles": self.obstacles(), "instruction": AMR_TASK}

    def expert_action(self) -> np.ndarray:
        """(linear_x, angular_z) of the station expert."""
        cmd = self.expert.act(experts.observe(self.sc))
        return np.array([cmd["linear_x"], cmd["angular_z"]])

    def apply(self, action: np.ndarray) -> None:
        """Twist command, clamped to the base limits first (as the correction layer's chunk check does; counted).

        With a corrector attached the action is ignored: the corrector's own loop drives the base for one step.
        """
        if self.corrector is not None:
            self._corrected_step()
            return
        sc = self.sc
        lo, hi = sc.base.lower, sc.base.upper
        a = np.asarray(action, dtype=float)
        if not np.isfinite(a).all():
            a = np.zeros(2)
        if np.any(a < lo - 1e-6) or np.any(a > hi + 1e-6):
            self.clamped_requests += 1
        sc.command_twist(*np.clip(a, lo, hi))
        sc.step(max(1, round(self.dt / sc.timestep)))
        self._check_measured()

    def action_limits(self) -> tuple[np.ndarray, np.ndarray]:
        """Base speed limits."""
        return self.sc.base.lower.copy(), self.sc.base.upper.copy()

    def worker_tracks(self) -> np.ndarray:
        """(W, 4) ground-truth worker x, y, vx, vy (world): scoring and world-model labels only."""
        pos, vel = self.sc.worker_state(self.sc.data.time)
        return np.concatenate([pos, vel], axis=1)


# ============================================================================================================ arm
def arm_parts_config(params: dict[str, Any]) -> PartsConfig:
    """The perception_fusion node's part-fitting settings (its parameter table), base_link frame."""
    return pipeline_config({**params, "parts_enabled": True}).parts


def arm_part_memory_config(params: dict[str, Any]) -> PartMemoryConfig:
    """The perception_fusion node's part memory settings (its parameter table)."""
    return pipeline_config({**params, "parts_enabled": True}).part_memory


def arm_body_spheres(params: dict[str, Any]) -> BodySpheres | None:
    """The perception_fusion node's self-filter spheres of the arm (None when its self_filter_model is '')."""
    from physical_ai.bringup.stack import share_dir

    g = params.get
    model = g("self_filter_model", "")
    if not model:
        return None
    path = Path(model) if Path(model).is_absolute() else share_dir() / model
    return BodySpheres.from_file(path, list(g("self_filter_joints", [f"joint{i}" for i in range(1, 8)])),
                                 g("self_filter_geom_prefix", "col_"), padding_m=g("self_filter_padding_m", 0.03),
                                 hand_body=g("self_filter_hand_body", ""),
                                 hand_padding_m=g("self_filter_hand_padding_m", 0.06),
                                 static_bodies=[b for b in g("self_filter_static_bodies", [""]) if b])


class ArmEnv(Env):
    """Arm cell pick-and-place: joint state, depth -> perceived parts (base_link frame, grounded), instruction.

    Sensing follows the ROS nodes of config/arm.yaml: the depth image is the mujoco_sim camera's (camera_width x
    camera_height) subsampled by the perception_fusion node's depth_stride, with the simulator's depth noise and
    invalid pixels; parts are fitted with the node's PartsConfig in base_link (the node's base_frame), labelled by
    the perception core, and each part token carries "is_target" (its label is the part the instruction names,
    `physical_ai.policy.observation.ground_parts`, the function policy_inference uses too). Fits the arm covers
    (from the camera's view, the node's self-filter spheres) are replaced by the part's last clear fit
    (`physical_ai.perception.part_memory.PartMemory`, the node's part_memory_* settings). No camera image: the
    grounded part tokens carry what the task needs, and a policy without one needs no image transfer under ROS.
    """

    embodiment = "arm"
    scenario_name = "arm"
    perceive_every_step = True  # the part memory follows every depth frame, as in the node
    MAX_PARTS = 6  # three parts, the bin, the gripper when it is low over the table, one spare

    def make_spec(self) -> PolicyConfig:
        """The default arm spec: state, part tokens with sizes and the grounding flag, instruction."""
        cfg = default_config("arm", name="arm_dataset")
        obs = cfg.observation
        # sizes tell the parts and the bin apart; is_target grounds the instruction's part name
        names = (*obs.parts.features.names, "size_x", "size_y", "size_z", "is_target")
        parts = TokenGroup(max_count=self.MAX_PARTS, features=FeatureGroup(
            names=names, units=(*obs.parts.features.units, "m", "m", "m", "1"), mean=(0.0,) * len(names),
            std=(1.0,) * len(names)))
        # no hand obstacle in pick-and-place demonstrations: drop the empty obstacle group
        return replace(cfg, observation=ObservationSpec(image=None, state=obs.state, parts=parts,
                                                        instruction=obs.instruction))

    def __init__(self, randomise: bool = True, perception: str = "node", variant: str = "normal") -> None:
        from physical_ai.sim.scenarios import ARM_VARIANTS

        if variant not in ARM_VARIANTS:
            raise ValueError(f"arm variant {variant!r}: choose one of {ARM_VARIANTS}")
        self.variant = variant
        super().__init__(randomise, perception)

    def scenario_options(self, rng: np.random.Generator) -> dict[str, Any]:
        """Part poses and target part come from the scenario seed."""
        return {}

    def task_options(self) -> dict[str, Any]:
        """The task variant (the hard variant's part materials come from the scenario seed)."""
        return {"variant": self.variant}

    def _reset_sensing(self) -> None:
        sc = self.sc
        # one sensing path for both perception modes: the arm has no LiDAR to thin out
        sim, fusion = robot_params("arm", "mujoco_sim"), robot_params("arm", "perception_fusion")
        stride = int(fusion.get("depth_stride", 4))
        dh, dw = int(sim.get("camera_height", 480)) // stride, int(sim.get("camera_width", 640)) // stride
        self.parts_cfg = arm_parts_config(fusion)
        self.depth_max_range = float(fusion.get("depth_max_range_m", 2.0))
        rgbd = sim.get("rgbd", {}) or {}
        sigma = float(rgbd.get("noise_sigma", 0.002))
        self.depth_sigma = float(self.rng.uniform(0.5, 1.5) * sigma) if self.randomise else sigma
        self.depth_invalid = float(rgbd.get("invalid_fraction", 0.005))
        self.depth_renderer = mujoco.Renderer(sc.model, dh, dw)
        self.depth_renderer.enable_depth_rendering()
        cam = sc.model.camera(sc.camera)
        fovy = np.radians(sc.model.cam_fovy[cam.id])
        f = 0.5 * dh / np.tan(fovy / 2)
        v, u = np.mgrid[0:dh, 0:dw]
        self._rays = np.stack([(u - dw / 2 + 0.5) / f, -(v - dh / 2 + 0.5) / f, -np.ones_like(u, float)], -1)
        self._rays = self._rays.reshape(-1, 3)
        self.cam_id = cam.id
        self.gripper_target = 0.08
        if not hasattr(self, "body_spheres"):  # the arm's padded spheres, as the node's self-filter builds them
            self.body_spheres = arm_body_spheres(fusion)
        self.part_memory = PartMemory(arm_part_memory_config(fusion))

    def close(self) -> None:
        """Free the renderers."""
        super().close()
        if hasattr(self, "depth_renderer"):
            self.depth_renderer.close()

    def perceived_parts(self) -> tuple[np.ndarray, list[str]]:
        """Perceived parts in base_link from the overhead depth image, as the perception_fusion node fits them.

        Returns:
            ((n, F) spec part features with is_target 0, the n perceived labels).
        """
        sc = self.sc
        self.depth_renderer.update_scene(sc.data, camera=sc.camera)
        depth = self.depth_renderer.render().reshape(-1).astype(np.float64)
        depth = depth + self.depth_sigma * self.rng.standard_normal(depth.shape)
        keep = (self.rng.random(depth.shape) >= self.depth_invalid) & (depth < self.depth_max_range)
        R = sc.data.cam_xmat[self.cam_id].reshape(3, 3)
        pts = (self._rays[keep] * depth[keep, None]) @ R.T + sc.data.cam_xpos[self.cam_id]
        # world -> base_link (the node's base_frame)
        root = sc.robot_root
        R_wb = sc.data.xmat[root].reshape(3, 3)
        pts = (pts - sc.data.xpos[root]) @ R_wb
        parts = detect_parts(pts, self.parts_cfg)
        if self.body_spheres is not None:
            centres, radii = self.body_spheres.at(sc.joint_state()[1][:7])
            camera = (sc.data.cam_xpos[self.cam_id] - sc.data.xpos[root]) @ R_wb
            parts = self.part_memory.update(parts, sc.time_ns, ((centres - sc.data.xpos[root]) @ R_wb, radii), camera)
        rows = part_rows(np.array([p.position for p in parts]).reshape(-1, 3), [p.yaw for p in parts],
                         np.array([p.size for p in parts]).reshape(-1, 3), [p.confidence for p in parts],
                         self.spec.observation.parts.features.names)
        return rows, [p.label for p in parts]

    def instruction(self) -> str:
        """The task text naming this episode's target part."""
        return arm_instruction(self.sc.target_part)

    def observe(self) -> dict[str, Any]:
        """Joint state, perceived parts grounded in the instruction, instruction naming the target part."""
        sc = self.sc
        _, pos, vel, _ = sc.joint_state()
        state = np.concatenate([pos[:7], [pos[7]], vel[:7]])
        text = self.instruction()
        values, labels = self.perceived_parts()
        parts = ground_parts(values, labels, text, self.spec.observation.parts.features.names)
        return {"state": state, "parts": parts, "instruction": text}

    def expert_action(self) -> np.ndarray:
        """Joint position targets and gripper opening of the pick-and-place expert."""
        cmd = self.expert.act(experts.observe(self.sc))
        return np.append(np.asarray(cmd["joint_positions"], float), cmd["gripper"])

    def attach_corrector(self) -> None:
        """Execute actions through the arm trajectory_correction core (settings from config/arm.yaml), as under ROS.

        After this, `submit_chunk` hands the policy's chunks to the corrector and `apply` runs its loop (chunk
        blending, jerk-limited tracking, position/velocity/acceleration limits) at the physics rate for one step,
        streaming its positions and gripper opening to the simulated controllers as the node does.
        """
        from physical_ai.control.arm import arm_corrector

        params = robot_params("arm", "trajectory_correction")
        steps = max(1, round(1.0 / (float(params.get("rate_hz", 1000.0)) * self.sc.timestep)))
        self.corrector_period = self.sc.timestep * steps  # a whole number of physics steps per cycle
        self.corrector = arm_corrector(params, self.corrector_period)
        _, pos, _, _ = self.sc.joint_state()
        self.corrector.set_measured(pos[:7], pos[7])

    def _corrected_step(self) -> None:
        sc = self.sc
        n_sub = max(1, round(self.corrector_period / sc.timestep))
        for _ in range(max(1, round(self.dt / self.corrector_period))):
            _, pos, _, _ = sc.joint_state()
            self.corrector.set_measured(pos[:7], pos[7])
            cmd = self.corrector.step(sc.data.time)
            sc.command_stream(list(cmd.position))
            if np.isfinite(cmd.gripper):
                sc.command_gripper([cmd.gripper])
            sc.step(n_sub)
        self._check_measured()

    def _check_measured(self) -> None:
        lim = self.sc.limits
        _, pos, vel, _ = self.sc.joint_state()
        if (np.any(pos[:7] < lim.lower - 0.01) or np.any(pos[:7] > lim.upper + 0.01)
                or np.any(np.abs(vel[:7]) > lim.max_velocity * 1.05)):
            self.limit_violations += 1

    def apply(self, action: np.ndarray) -> None:
        """Joint targets streamed over one step within the position/velocity limits.

        Requests beyond the limits are clamped and counted; measured joint motion beyond them is a violation. With
        a corrector attached the action is ignored: the corrector's own loop drives the arm for one step.
        """
        if self.corrector is not None:
            self._corrected_step()
            return
        sc = self.sc
        a = np.asarray(action, dtype=float)
        if not np.isfinite(a).all():
            a = np.append(sc.target, self.gripper_target)
        q = a[:7]
        lo, hi = sc.limits.lower, sc.limits.upper
        if np.any(q < lo - 1e-6) or np.any(q > hi + 1e-6) or np.any(np.abs(q - sc.target) >
                                                                       sc.limits.max_velocity * self.dt * 1.5):
            self.clamped_requests += 1
        step = np.clip(q, lo, hi) - sc.target
        vmax = sc.limits.max_velocity * self.dt
        n = max(1, round(self.dt / sc.timestep))
        # stream positions at the physics rate, interpolating over the policy step (a position controller)
        start = sc.target.copy()
        target = start + np.clip(step, -vmax, vmax)
        self.gripper_target = float(np.clip(a[7], 0.0, 0.08))
        sc.command_gripper([self.gripper_target])
        sub = max(1, n // 5)
        for k in range(1, n // sub + 1):
            sc.command_stream(list(start + (target - start) * min(1.0, k * sub / n)))
            sc.step(sub)
        self._check_measured()

    def action_limits(self) -> tuple[np.ndarray, np.ndarray]:
        """Joint position limits and the gripper range."""
        lim = self.sc.limits
        return np.append(lim.lower, 0.0), np.append(lim.upper, 0.08)

    def _failure(self) -> bool:
        """The target part was lifted and is no longer in the gripper, away from the bin (dropped)."""
        from physical_ai.sim.scenarios import BIN_CENTRE, BIN_HALF_INNER

        sc = self.sc
        if not sc._lifted or sc.success:
            return False
        p = sc.part_position(sc.target_part)
        over_bin = bool(np.all(np.abs(p[:2] - BIN_CENTRE) < BIN_HALF_INNER + 0.03))
        return bool(np.linalg.norm(p - sc.data.site("tcp").xpos) > 0.06 and not over_bin)


# ======================================================================================================== vehicle
VEHICLE_TASK = "follow the lane and stop behind the car ahead"


def vehicle_spec(name: str = "vehicle_dataset") -> PolicyConfig:
    """The vehicle spec with a map-frame pose in the state (the lane is fixed in the map).

    The default vehicle spec carries only the odometry twist: with it a policy cannot know where the lane bends.
    Here the state is the AMR's (map x, y, yaw from /odom composed with map -> odom, odometry vx, wz); obstacle
    tokens and the (steering_angle [rad], speed [m/s]) action are the default spec's.
    """
    cfg = default_config("vehicle", name=name)
    names = ("odom.x", "odom.y", "odom.yaw", "odom.vx", "odom.wz")
    state = FeatureGroup(names=names, units=("m", "m", "rad", "m/s", "rad/s"), mean=(0.0,) * 5, std=(1.0,) * 5)
    return replace(cfg, observation=replace(cfg.observation, state=state))


class VehicleEnv(Env):
    """Ackermann car on the lane: map-frame pose and twist, 3D LiDAR -> perception-core tracks, (steer, speed).

    Sensing follows the ROS nodes of config/vehicle.yaml: the mujoco_sim node's LiDAR layout (rings, rays, range;
    the vehicle has no 2D scanner) and the perception_fusion node's segmentation and tracking settings ("node"
    mode). The pose is in the map frame (the mujoco_sim node publishes map -> odom), as for the AMR.
    """

    embodiment = "vehicle"
    scenario_name = "vehicle"

    def make_spec(self) -> PolicyConfig:
        """`vehicle_spec()`."""
        return vehicle_spec()

    def scenario_options(self, rng: np.random.Generator) -> dict[str, Any]:
        """The lead car's position and behaviour (stopped or slow, then stopping) come from the scenario seed."""
        return {}

    def _reset_sensing(self) -> None:
        sc = self.sc
        node = self.perception == "node"
        sim = robot_params("vehicle", "mujoco_sim") if node else {"lidar_rings": 8, "lidar_horizontal": 450}
        self.lidar = Lidar(sc.model, sc.lidar_body, int(sim.get("lidar_rings", 16)),
                           int(sim.get("lidar_horizontal", 1800)), float(sim.get("lidar_min_elev_deg", -15.0)),
                           float(sim.get("lidar_max_elev_deg", 15.0)),
                           range_max=float(sim.get("lidar_range_max_m", 60.0)))
        body = sc.model.body(sc.lidar_body)
        self.T_base_lidar = np.eye(4)
        self.T_base_lidar[:3, 3] = body.pos
        sigma = float(self.rng.uniform(0.01, 0.04)) if self.randomise else 0.02
        self.noise = SensorNoise(sigma=sigma, invalid_fraction=0.02 if self.randomise else 0.01)
        params = robot_params("vehicle", "perception_fusion") if node else {"x_min_m": -20.0, "x_max_m": 60.0,
                                                                             "y_min_m": -30.0, "y_max_m": 30.0}
        self.pipeline = FusionPipeline(pipeline_config(params))
        self.feature_names = self.spec.observation.obstacles.features.names
        self.corrector = None

    def attach_corrector(self) -> None:
        """Execute actions through the vehicle trajectory_correction core (settings from config/vehicle.yaml).

        As under ROS: the corrector gets the odometry pose and speed, the tracked obstacles as covering discs, and
        the policy's chunks; no lane path (nothing publishes /plan in the vehicle stack), so it keeps the policy's
        steering and limits steering rate, lateral acceleration and speed behind obstacles in the lane.
        """
        from physical_ai.control.vehicle import VehicleConfig, VehicleCorrector

        g = robot_params("vehicle", "trajectory_correction").get
        self.corrector_rate = float(g("rate_hz", 100.0))
        self.corrector = VehicleCorrector(VehicleConfig(
            wheelbase=g("wheelbase", 2.7), max_steer=g("max_steer", 0.5), max_steer_rate=g("max_steer_rate", 0.6),
            max_lateral_acc=g("max_lateral_acc", 3.0), max_speed=g("max_speed", 15.0), max_acc=g("max_acc", 2.0),
            max_decel=g("max_decel", 5.0), cruise_speed=g("cruise_speed", 8.0), min_gap_m=g("min_gap_m", 2.5),
            time_gap_s=g("time_gap_s", 1.5), lane_half_width=g("lane_half_width", 1.75),
            max_age_s=g("max_chunk_age_s", 0.5), max_future_s=g("max_chunk_future_s", 0.5),
            period_s=1.0 / self.corrector_rate))

    def _feed_corrector(self, obstacles: list[Any]) -> None:
        self.corrector.set_obstacles(*obstacle_discs(obstacles)[:3])

    def _feed_pose(self) -> None:
        T, twist = self.sc.odometry()
        self.corrector.set_pose(T[0, 3], T[1, 3], float(np.arctan2(T[1, 0], T[0, 0])), twist[0])

    def _corrected_step(self) -> None:
        sc = self.sc
        n_sub = max(1, round(1.0 / (self.corrector_rate * sc.timestep)))
        for _ in range(max(1, round(self.dt * self.corrector_rate))):
            self._feed_pose()  # odometry at the loop rate (50 Hz under ROS; close enough at 100 Hz here)
            cmd = self.corrector.step(sc.data.time)
            sc.command_ackermann(cmd.steering_angle, cmd.speed)
            sc.step(n_sub)
        self._check_measured()

    def _check_measured(self) -> None:
        """Count a limit violation when the measured speed or steering angle exceeds the car's limits (2 %)."""
        steer = self.sc.drive.current[0]
        if abs(self.sc.speed()) > self.sc.drive.upper[1] * 1.02 + 1e-3 or abs(steer) > self.sc.max_steer * 1.02:
            self.limit_violations += 1

    def pose(self) -> np.ndarray:
        """Map-frame (x, y, yaw) of base_link (rear axle) as map -> odom -> base_link gives it."""
        return self.sc.base_pose()

    def obstacles(self) -> np.ndarray:
        """Perceived obstacles now, (n, F) in base_link with the spec's features."""
        sc = self.sc
        scan = self.lidar.scan(sc.data, self.noise, self.rng)
        pts = np.stack([scan["x"], scan["y"], scan["z"]], axis=1).astype(np.float64)
        pts = pts @ self.T_base_lidar[:3, :3].T + self.T_base_lidar[:3, 3]
        x, y, yaw = self.pose()
        result = self.pipeline.process(FrameInput(stamp_ns=sc.time_ns, clouds=[pts], scans=[],
                                                  T_world_base=_yaw_matrix(x, y, yaw)), with_grid=False)
        if self.corrector is not None:
            self._feed_corrector(result.obstacles)
        return obstacle_rows(result.obstacles, self.feature_names)

    def observe(self) -> dict[str, Any]:
        """State (map x, y, yaw, vx, wz), perceived obstacles, instruction."""
        _, twist = self.sc.odometry()
        x, y, yaw = self.pose()
        return {"state": np.array([x, y, yaw, twist[0], twist[5]]), "obstacles": self.obstacles(),
                "instruction": VEHICLE_TASK}

    def expert_action(self) -> np.ndarray:
        """(steering_angle, speed) of the lane expert (pure pursuit on the centreline, stopping profile)."""
        cmd = self.expert.act(experts.observe(self.sc))
        return np.array([cmd["steering_angle"], cmd["speed"]])

    def apply(self, action: np.ndarray) -> None:
        """Ackermann command, clamped to the car's limits first (counted); the corrector's loop when attached."""
        if self.corrector is not None:
            self._corrected_step()
            return
        sc = self.sc
        lo, hi = self.action_limits()
        a = np.asarray(action, dtype=float)
        if not np.isfinite(a).all():
            a = np.zeros(2)
        if np.any(a < lo - 1e-6) or np.any(a > hi + 1e-6):
            self.clamped_requests += 1
        sc.command_ackermann(*np.clip(a, lo, hi))
        sc.step(max(1, round(self.dt / sc.timestep)))
        self._check_measured()

    def action_limits(self) -> tuple[np.ndarray, np.ndarray]:
        """Steering and forward speed limits (no reversing in this task)."""
        hi = self.sc.drive.upper.copy()
        return np.array([-hi[0], 0.0]), hi

    def lead_state(self) -> tuple[float, float]:
        """Ground-truth lead car (arc length [m], speed [m/s]): scoring and world-model labels only."""
        return self.sc.obstacle_state(self.sc.data.time)


ENVS: dict[str, type[Env]] = {"amr": AmrEnv, "arm": ArmEnv, "vehicle": VehicleEnv}
ALIASES = {"factory_floor": "amr", "factory": "amr", "arm_cell": "arm", "arm_pick": "arm", "amr_nav": "amr",
           "vehicle_lane": "vehicle", "vehicle_drive": "vehicle"}


def make_env(scenario: str, randomise: bool = True, perception: str = "node", variant: str = "normal") -> Env:
    """The env for a scenario name ("amr", "arm", "vehicle", or their model directory names).

    `variant`: the arm cell's task variant ("normal" | "hard"); other scenarios have only "normal".
    """
    key = ALIASES.get(scenario, scenario)
    if key not in ENVS:
        raise ValueError(f"scenario {scenario!r}: no policy env (choose from {sorted(ENVS)})")
    if key == "arm":
        return ArmEnv(randomise=randomise, perception=perception, variant=variant)
    if variant != "normal":
        raise ValueError(f"variant {variant!r}: only the arm scenario has variants")
    return ENVS[key](randomise=randomise, perception=perception)


def spec_names(config: PolicyConfig) -> dict[str, Any]:
    """The names that must match between a policy and an env (for spec-mismatch errors)."""
    obs = config.observation

    def names(group: FeatureGroup | None) -> list[str] | None:
        return list(group.names) if group is not None else None

    return {"embodiment": config.embodiment, "action": list(config.action.names),
            "state": names(obs.state), "groups": obs.groups(),
            "obstacles": names(obs.obstacles.features) if obs.obstacles else None,
            "parts": names(obs.parts.features) if obs.parts else None}


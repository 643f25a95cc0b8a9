"""MuJoCo scenarios: model loading, per-seed randomisation, scripted actors, command routing, ground truth.

A `Scenario` owns one MjModel/MjData. The simulator node and the benchmarks drive it the same way:
`reset(seed)`, then command methods (validated, see `commands`) and `step()`. Ground truth is privileged and
never part of what the robot senses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from physical_ai.sim import lane
from physical_ai.sim.commands import (
    NS,
    CommandRejected,
    JointLimits,
    JointStreamer,
    JointTrajectoryFollower,
    RateLimitedCommand,
    check_finite,
    check_length,
    check_range,
)

MODELS = Path(__file__).resolve().parents[2] / "models"


@dataclass
class GroundTruth:
    """Privileged state of a scenario for scoring (world frame)."""

    scenario: str
    stamp_ns: int
    body_names: list[str]
    body_poses: np.ndarray  # (N, 7) x y z qw qx qy qz
    body_twists: np.ndarray  # (N, 6) world-frame linear, angular
    collisions: int
    min_person_clearance_m: float
    progress: float
    task_success: bool
    episode_done: bool
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Frame:
    """A transform parent -> child (4x4, child pose in parent)."""

    parent: str
    child: str
    T: np.ndarray


def _pose_matrix(pos: np.ndarray, mat: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = mat.reshape(3, 3)
    T[:3, 3] = pos
    return T


def _yaw_quat(yaw: float) -> np.ndarray:
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


def planar_pose(x: float, y: float, yaw: float) -> np.ndarray:
    """4x4 transform of a pose in the plane."""
    T = np.eye(4)
    T[:3, :3] = _quat_to_mat(_yaw_quat(yaw))
    T[:2, 3] = [x, y]
    return T


def planar_odometry(pose: np.ndarray, origin: np.ndarray, vx_world: float, vy_world: float,
                    yaw_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact wheel odometry of a planar base: (odom -> base_link 4x4, body-frame twist), odom at `origin`.

    Args:
        pose: world (x, y, yaw) of the base now.
        origin: world (x, y, yaw) where odometry started (the odom frame).
        vx_world: world-frame velocity along x [m/s].
        vy_world: world-frame velocity along y [m/s].
        yaw_rate: [rad/s].
    """
    x, y, yaw = pose
    ox, oy, oyaw = origin
    c, s = np.cos(oyaw), np.sin(oyaw)
    dx, dy = x - ox, y - oy
    T = np.eye(4)
    T[:3, :3] = _quat_to_mat(_yaw_quat(yaw - oyaw))
    T[:2, 3] = [c * dx + s * dy, -s * dx + c * dy]
    cy, sy = np.cos(yaw), np.sin(yaw)
    twist = np.array([cy * vx_world + sy * vy_world, -sy * vx_world + cy * vy_world, 0.0, 0.0, 0.0, yaw_rate])
    return T, twist


def footprint_clearance(pose: np.ndarray, centres: np.ndarray, half_length: float, half_width: float,
                        radius: float) -> float:
    """Distance from a rectangular footprint at world (x, y, yaw) to the nearest of some discs [m] (inf: none)."""
    if len(centres) == 0:
        return float("inf")
    x, y, yaw = pose
    d = np.asarray(centres, float) - [x, y]
    c, s = np.cos(yaw), np.sin(yaw)
    local = np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]], 1)
    outside = np.maximum(np.abs(local) - [half_length, half_width], 0.0)
    return float(np.min(np.linalg.norm(outside, axis=1)) - radius)


def diff_drive_command(options: dict[str, Any]) -> RateLimitedCommand:
    """A differential drive's (linear_x, angular_z) command with the base limits in a scenario's options.

    Options: max_linear [m/s], max_angular [rad/s], max_accel [m/s^2], max_alpha [rad/s^2], cmd_timeout_s.
    """
    o = options
    return RateLimitedCommand(
        ["linear_x", "angular_z"],
        lower=[-float(o.get("max_linear", 1.0)), -float(o.get("max_angular", 1.5))],
        upper=[float(o.get("max_linear", 1.0)), float(o.get("max_angular", 1.5))],
        max_rate_up=[float(o.get("max_accel", 1.0)), float(o.get("max_alpha", 2.0))],
        max_rate_down=[float(o.get("max_accel", 1.0)), float(o.get("max_alpha", 2.0))],
        timeout_s=float(o.get("cmd_timeout_s", 0.5)), safe=[0.0, 0.0])


def _descendant_bodies(model: mujoco.MjModel, root: int) -> set[int]:
    out = {root}
    for b in range(model.nbody):
        p = b
        while p > 0:
            if p == root:
                out.add(b)
                break
            p = model.body_parentid[p]
    return out


class Scenario:
    """Base class; subclasses set `name`, `model_file`, sensors and task logic."""

    name = ""
    model_file = ""
    camera = ""  # MuJoCo camera used as the RGB-D camera
    camera_frame = "camera_link"
    lidar_body = ""  # body of the LiDAR ("" = none)
    lidar_exclude_body = -1  # body id the LiDAR does not see (-1: none; the robot's own hull is in a hidden group)
    robot_body = "base_link"  # root body of the robot
    time_limit_s = 60.0
    person_bodies: tuple[str, ...] = ()

    def __init__(self, seed: int = 0, options: dict[str, Any] | None = None) -> None:
        self.options = dict(options or {})
        if float(self.options.get("time_limit_s") or 0.0) > 0:  # an episode length other than the scenario's
            self.time_limit_s = float(self.options["time_limit_s"])
        self.model = self._load_model()
        self.data = mujoco.MjData(self.model)
        self.robot_root = self.model.body(self.robot_body).id
        robot_bodies = _descendant_bodies(self.model, self.robot_root)
        self.robot_geoms = np.isin(self.model.geom_bodyid, list(robot_bodies))
        self.rng = np.random.default_rng(seed)
        self.collisions = 0
        self._pairs: set[tuple[int, int]] = set()
        # allowed_contacts[robot geom, other geom]: a touch that is the task, not a collision (a gripper on a part)
        self.allowed_contacts = np.zeros((self.model.ngeom, self.model.ngeom), dtype=bool)
        self._setup()
        self.reset(seed)

    # ---- lifecycle ------------------------------------------------------------------------------------------
    def reset(self, seed: int) -> None:
        """Reset physics and randomise the scene for `seed`."""
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        mujoco.mj_resetData(self.model, self.data)
        if self.model.nkey:
            mujoco.mj_resetDataKeyframe(self.model, self.data, 0)
        self.collisions = 0
        self._pairs = set()
        self.min_person_clearance = float("inf")
        self.success = False
        self.done = False
        self._randomise()
        self._script(0.0)
        self.mocap_velocity = np.zeros_like(self.data.mocap_pos)
        mujoco.mj_forward(self.model, self.data)

    @property
    def time_ns(self) -> int:
        """Simulation time [ns]."""
        return round(self.data.time * NS)

    @property
    def timestep(self) -> float:
        """Physics step [s]."""
        return float(self.model.opt.timestep)

    def step(self, n: int = 1) -> None:
        """Advance physics by `n` steps, running actors, controllers and scoring."""
        dt, d = self.timestep, self.data
        for i in range(n):
            last = i == n - 1
            before = d.mocap_pos.copy() if last else None
            self._script(d.time)
            if last:  # scripted (mocap) bodies have no dofs: their velocity for ground truth is the scripted motion
                self.mocap_velocity = (d.mocap_pos - before) / dt
            self._control(dt)
            mujoco.mj_step(self.model, d)
            self._count_collisions()
        self._update_task()

    def rigs(self) -> list[tuple[str, Any, tuple[str, ...] | None]]:
        """(namespace, robot view, streams it may have or None for all) per robot whose sensors are simulated.

        One robot: the scenario itself, in the node's own namespace. A fleet: one entry per robot.
        """
        return [("", self, None)]

    # ---- subclass hooks ---------------------------------------------------------------------------------------
    def _load_model(self) -> mujoco.MjModel:
        return mujoco.MjModel.from_xml_path(str(MODELS / self.model_file))

    def _setup(self) -> None: ...

    def _randomise(self) -> None: ...

    def _script(self, t: float) -> None: ...

    def _control(self, dt: float) -> None: ...

    def _update_task(self) -> None: ...

    def person_clearance(self) -> float:
        """Smallest robot-to-person distance now [m] (inf without persons)."""
        return float("inf")

    # ---- state ------------------------------------------------------------------------------------------------
    def _count_collisions(self) -> None:
        d = self.data
        if d.ncon == 0:
            self._pairs = set()
            return
        geoms = d.contact.geom[: d.ncon]
        robot = self.robot_geoms[geoms]
        mixed = robot[:, 0] ^ robot[:, 1]  # robot against the rest of the world
        pairs = set()
        if mixed.any():
            geoms, first = geoms[mixed], robot[mixed, 0]
            r = np.where(first, geoms[:, 0], geoms[:, 1])
            o = np.where(first, geoms[:, 1], geoms[:, 0])
            hit = ~self.allowed_contacts[r, o]
            pairs = set(zip(r[hit].tolist(), o[hit].tolist(), strict=True))
        self.collisions += len(pairs - self._pairs)
        self._pairs = pairs

    def joint_state(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """Robot joint (names, positions, velocities, efforts) as a driver reports them."""
        return [], np.zeros(0), np.zeros(0), np.zeros(0)

    def odometry(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(odom -> base_link 4x4, body-frame twist [vx vy vz wx wy wz]) for mobile robots, else None."""
        return None

    def frames(self) -> tuple[list[Frame], list[Frame]]:
        """(static frames, dynamic frames) for /tf_static and /tf."""
        return [], []

    def _body_twist(self, body: int) -> np.ndarray:
        mocap = self.model.body_mocapid[body]
        if mocap >= 0:
            return np.concatenate([self.mocap_velocity[mocap], np.zeros(3)])
        v = np.zeros(6)
        mujoco.mj_objectVelocity(self.model, self.data, mujoco.mjtObj.mjOBJ_BODY, body, v, 0)
        return np.concatenate([v[3:], v[:3]])

    def _gt_bodies(self) -> list[str]:
        return []

    def ground_truth(self) -> GroundTruth:
        """Privileged state now."""
        names = self._gt_bodies()
        ids = [self.model.body(n).id for n in names]
        poses = np.concatenate([self.data.xpos[ids], self.data.xquat[ids]], axis=1) if ids else np.zeros((0, 7))
        twists = np.array([self._body_twist(i) for i in ids]) if ids else np.zeros((0, 6))
        return GroundTruth(self.name, self.time_ns, names, poses, twists, self.collisions,
                           self.min_person_clearance, self._progress(), self.success, self.done, self._extra())

    def _progress(self) -> float:
        return 0.0

    def _extra(self) -> dict[str, Any]:
        return {}

    def optical_frames(self) -> list[Frame]:
        """camera_link -> optical frames (REP-103 optical: z forward, x right, y down); colour and depth coincide."""
        return optical_frames(self.model, self.camera, self.camera_frame)


def optical_frames(model: mujoco.MjModel, camera: str, camera_frame: str) -> list[Frame]:
    """`camera_frame` -> colour and depth optical frames of MuJoCo camera `camera` (they coincide)."""
    cam = model.camera(camera)
    body_to_cam = _pose_matrix(model.cam_pos[cam.id], _quat_to_mat(model.cam_quat[cam.id]))
    T = body_to_cam.copy()
    T[:3, :3] = body_to_cam[:3, :3] @ np.diag([1.0, -1.0, -1.0])
    return [Frame(camera_frame, "camera_color_optical_frame", T),
            Frame(camera_frame, "camera_depth_optical_frame", T.copy())]


def _quat_to_mat(q: np.ndarray) -> np.ndarray:
    m = np.zeros(9)
    mujoco.mju_quat2Mat(m, np.asarray(q, dtype=float))
    return m.reshape(3, 3)


# ======================================================================================================== arm cell
ARM_JOINTS = [f"joint{i}" for i in range(1, 8)]
PARTS = ("part_cube", "part_cylinder", "part_prism")
BIN_CENTRE = np.array([0.30, 0.38])
BIN_HALF_INNER = 0.075
TABLE_Z = 0.40
ARM_VARIANTS = ("normal", "hard")
# hard variant: the cell's part catalogue of materials, per part (mass [kg], friction coefficient); each seed draws
# every part's mass and friction within HARD_TOLERANCE (a fraction) of these
HARD_MATERIALS = {"part_cube": (0.30, 0.25), "part_cylinder": (0.30, 0.25), "part_prism": (0.45, 0.15)}
HARD_TOLERANCE = 0.1


_HAND_PARKED, _HAND_INSIDE = np.array([1.2, -0.9, 0.6]), np.array([0.75, -0.25, 0.52])  # the arm cell's hand [m]


class ArmCell(Scenario):
    """7-DoF arm pick-and-place: put the target part (chosen per seed) into the bin.

    Options: max_velocity (7 floats, rad/s), stream_mode ("position"|"velocity"), stream_timeout_s,
    hand_time_s (when the hand obstacle enters; < 0 never), hand_duration_s, variant ("normal" | "hard").

    The hard variant keeps the part shapes and poses of the same seed (perception and its part catalogue are
    unchanged) but makes the parts heavy and slippery: materials from HARD_MATERIALS, drawn per seed within
    HARD_TOLERANCE, and the part's friction governs its contacts (geom priority; normally the pads' higher friction
    would). The gripper is position-controlled, so it squeezes a part in proportion to how far the part keeps its
    fingers from their closed target: across the prism's 25 mm side far less than across its 70 mm side. The heavy,
    slippery prism grasped the narrow way slides out of the fingers when the arm lifts; grasped at a quarter turn it
    holds. A cylinder grasped off its axis squeezes out too.
    """

    name = "arm"
    model_file = "arm_cell/arm_cell.xml"
    camera = "overhead"
    time_limit_s = 30.0
    person_bodies = ("hand",)

    def _setup(self) -> None:
        m = self.model
        self.qadr = np.array([m.jnt_qposadr[m.joint(n).id] for n in ARM_JOINTS])
        self.dadr = np.array([m.jnt_dofadr[m.joint(n).id] for n in ARM_JOINTS])
        lo, hi = m.jnt_range[[m.joint(n).id for n in ARM_JOINTS]].T
        vmax = np.asarray(self.options.get("max_velocity", [2.0, 2.0, 2.0, 2.0, 2.5, 2.5, 2.5]), dtype=float)
        self.limits = JointLimits(list(ARM_JOINTS), lo.copy(), hi.copy(), vmax)
        self.gripper_range = (0.0, 0.08)
        self.finger_qadr = m.jnt_qposadr[m.joint("finger_left_joint").id]
        self.finger_dadr = m.jnt_dofadr[m.joint("finger_left_joint").id]
        gripper = [m.geom(n).id for n in ("pad_left_geom", "pad_right_geom", "col_finger_left", "col_finger_right",
                                          "col_gripper_base")]
        self.allowed_contacts[np.ix_(gripper, [m.geom(f"{p}_geom").id for p in PARTS])] = True  # grasping
        self._hand_geom = m.geom("hand_geom").id
        self._link_geoms = [g for g in range(m.ngeom) if self.robot_geoms[g] and m.geom(g).name.startswith("col_")]
        self.variant = str(self.options.get("variant", "normal"))
        if self.variant not in ARM_VARIANTS:
            raise ValueError(f"arm variant {self.variant!r}: choose one of {ARM_VARIANTS}")
        self._part_bodies = np.array([m.body(p).id for p in PARTS])
        self._part_geom_ids = np.array([m.geom(f"{p}_geom").id for p in PARTS])
        self._nominal = (m.body_mass[self._part_bodies].copy(), m.body_inertia[self._part_bodies].copy(),
                         m.geom_friction[self._part_geom_ids].copy())

    def _randomise_materials(self) -> None:
        """Hard variant: seeded mass and friction per part (own stream: part poses stay those of the seed)."""
        rng = np.random.default_rng([self.seed, 18])
        nominal = np.array([HARD_MATERIALS[p] for p in PARTS])
        mass, mu = (nominal * rng.uniform(1 - HARD_TOLERANCE, 1 + HARD_TOLERANCE, nominal.shape)).T
        self.set_part_materials(mass, mu)

    def set_part_materials(self, mass: np.ndarray, mu: np.ndarray) -> None:
        """Give the parts (PARTS order) these masses [kg] and friction coefficients; the part's friction governs."""
        m = self.model
        mass0, inertia0, friction0 = self._nominal
        m.body_mass[self._part_bodies] = mass
        m.body_inertia[self._part_bodies] = inertia0 * (mass / mass0)[:, None]
        # scale sliding, torsional and rolling friction together (a torsional coefficient left at its nominal value
        # against a low sliding one makes the elliptic cone ill-conditioned)
        m.geom_friction[self._part_geom_ids] = friction0 * (mu / friction0[:, 0])[:, None]
        m.geom_priority[self._part_geom_ids] = 1
        # derived constants (inverse weights that scale constraint softness) must follow the new masses
        mujoco.mj_setConst(m, mujoco.MjData(m))

    def _randomise(self) -> None:
        opts = self.options
        if self.variant == "hard":
            self._randomise_materials()
        q0 = self.data.qpos[self.qadr].copy()
        self.follower = JointTrajectoryFollower(self.limits, q0)
        self.target = q0.copy()
        self.streamer = JointStreamer(self.limits, opts.get("stream_mode", "position"),
                                      float(opts.get("stream_timeout_s", 0.5)))
        self.gripper_target = 0.08
        self._streaming = False
        # parts: non-overlapping random poses in the pick area
        placed: list[np.ndarray] = []
        for part in PARTS:
            for _ in range(200):
                xy = np.array([self.rng.uniform(0.36, 0.56), self.rng.uniform(-0.25, 0.12)])
                if all(np.linalg.norm(xy - p) > 0.10 for p in placed):
                    break
            placed.append(xy)
            jnt = self.model.joint(f"{part}_free")
            adr = self.model.jnt_qposadr[jnt.id]
            geom = self.model.geom(f"{part}_geom")
            # half-height: a cylinder's is its second size (radius, half-height), a box's its third
            z = geom.size[1] if geom.type[0] == mujoco.mjtGeom.mjGEOM_CYLINDER else geom.size[2]
            self.data.qpos[adr:adr + 3] = [xy[0], xy[1], TABLE_Z + z + 0.0005]
            self.data.qpos[adr + 3:adr + 7] = _yaw_quat(self.rng.uniform(-np.pi / 2, np.pi / 2))
        self.target_part = str(opts.get("target_part", PARTS[int(self.rng.integers(len(PARTS)))]))
        self.hand_time = float(opts.get("hand_time_s", -1.0))
        self.hand_duration = float(opts.get("hand_duration_s", 3.0))
        self._lifted = False

    def _script(self, t: float) -> None:
        """The hand reaches in from the side at hand_time_s, stays, and withdraws (1 s each way)."""
        s = 0.0
        if self.hand_time >= 0:
            t_rel = t - self.hand_time
            s = min(max(min(t_rel, self.hand_duration + 2.0 - t_rel), 0.0), 1.0)
        self.data.mocap_pos[0] = _HAND_PARKED + s * (_HAND_INSIDE - _HAND_PARKED)

    # commands -------------------------------------------------------------------------------------------------
    def command_trajectory(self, joint_names: list[str], times_s: list[float], positions: list[list[float]],
                           velocities: list[list[float]] | None, start_ns: int) -> None:
        """JointTrajectory, as a joint_trajectory_controller takes it."""
        self.follower.hold(self.target)
        self.follower.set_trajectory(joint_names, times_s, positions, velocities, start_ns, self.time_ns)
        self._streaming = False

    def command_stream(self, values: list[float]) -> None:
        """Float64MultiArray for the forward position/velocity controller (joint1..joint7 order)."""
        arr = self.streamer.accept(values, self.time_ns)
        if self.streamer.mode == "position":
            step = np.abs(arr - self.target)
            if np.any(step > self.limits.max_velocity * 0.25):
                raise CommandRejected("too_fast", "position jump larger than 0.25 s at the velocity limit")
            self.target = arr
        self._streaming = True

    def command_gripper(self, values: list[float]) -> None:
        """Gripper opening [m] (one value)."""
        check_length(values, 1, "gripper command")
        arr = check_finite(np.asarray(values, dtype=float), "gripper command")
        check_range(arr, np.array([self.gripper_range[0]]), np.array([self.gripper_range[1]]), "opening",
                    ["gripper"])
        self.gripper_target = float(arr[0])

    def _control(self, dt: float) -> None:
        now = self.time_ns
        if self._streaming:
            if self.streamer.mode == "velocity":
                self.target = self.streamer.integrate(self.target, dt, now)
        else:
            self.target = self.follower.sample(now)
        self.data.ctrl[:7] = self.target
        self.data.ctrl[7] = self.gripper_target

    # state ---------------------------------------------------------------------------------------------------
    def joint_state(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """joint1..joint7 and "gripper" (opening [m]) with actuator efforts."""
        d = self.data
        names = [*ARM_JOINTS, "gripper"]
        pos = np.append(d.qpos[self.qadr], 2.0 * d.qpos[self.finger_qadr])
        vel = np.append(d.qvel[self.dadr], 2.0 * d.qvel[self.finger_dadr])
        eff = d.actuator_force[:8].copy()
        return names, pos, vel, eff

    def frames(self) -> tuple[list[Frame], list[Frame]]:
        """Static: world -> base_link, camera; dynamic: each link in its parent."""
        m, d = self.model, self.data
        static = [Frame("world", "base_link", _pose_matrix(d.xpos[self.robot_root], d.xmat[self.robot_root])),
                  Frame("world", "camera_link", _pose_matrix(d.xpos[m.body("camera_link").id],
                                                             d.xmat[m.body("camera_link").id])),
                  *self.optical_frames()]
        dynamic = []
        for child in [*(f"link{i}" for i in range(1, 8)), "gripper_base", "finger_left", "finger_right"]:
            b = m.body(child).id
            p = m.body_parentid[b]
            Tp = _pose_matrix(d.xpos[p], d.xmat[p])
            Tc = _pose_matrix(d.xpos[b], d.xmat[b])
            dynamic.append(Frame(m.body(p).name, child, np.linalg.solve(Tp, Tc)))
        return static, dynamic

    def _gt_bodies(self) -> list[str]:
        return [*PARTS, "bin", "hand", "gripper_base"]

    def person_clearance(self) -> float:
        """Smallest distance between the arm's collision geoms and the hand obstacle (capped at 1 m)."""
        fromto = np.zeros(6)
        best = 1.0
        for g in self._link_geoms:
            best = min(best, mujoco.mj_geomDistance(self.model, self.data, g, self._hand_geom, 1.0, fromto))
        return float(best)

    def part_position(self, part: str) -> np.ndarray:
        """World position of a part's centre."""
        return self.data.body(part).xpos.copy()

    def _update_task(self) -> None:
        if self.hand_time >= 0:
            self.min_person_clearance = min(self.min_person_clearance, self.person_clearance())
        p = self.part_position(self.target_part)
        self._lifted |= p[2] > TABLE_Z + 0.06
        in_bin = bool(np.all(np.abs(p[:2] - BIN_CENTRE) < BIN_HALF_INNER) and p[2] < TABLE_Z + 0.07)
        released = 2.0 * self.data.qpos[self.finger_qadr] > 0.06
        self.success = in_bin and released and self.collisions == 0
        self.done = self.success or self.data.time >= self.time_limit_s

    def _progress(self) -> float:
        if self.success:
            return 1.0
        return 0.5 if self._lifted else 0.0

    def _extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"target_part": self.target_part, "variant": self.variant}
        if self.variant == "hard":
            extra["part_mass_kg"] = self.model.body_mass[self._part_bodies].tolist()
            extra["part_friction"] = self.model.geom_friction[self._part_geom_ids, 0].tolist()
        return extra


# ==================================================================================================== factory AMR
class FactoryFloor(Scenario):
    """Differential-drive AMR goes from the pick-up to the drop-off station while workers cross the aisle.

    Options: max_linear (m/s), max_angular (rad/s), max_accel (m/s^2), max_alpha (rad/s^2), cmd_timeout_s,
    worker_times_s (list of start times; default seeded-random), worker_speed (m/s), worker_trigger_m (m; > 0: a
    worker starts walking when the AMR comes within this distance before its aisle, like the triggered pedestrian
    targets of Euro NCAP's AEB tests, so that every episode has a worker stepping into the AMR's path; start times
    are then not used), command_noise (> 0: on half the episodes, drawn per seed, the executed base command is the
    received one plus correlated noise of this many times (0.1 m/s, 0.2 rad/s) in stationary std, `physai collect`'s
    DART perturbation (Laskey et al., 2017): a recording of the stack then holds recoveries from perturbed states,
    and the commands the stack sent stay the clean labels).
    """

    NOISE_SCALE = np.array([0.1, 0.2])    # linear [m/s], angular [rad/s]: collect.action_noise_scale's
    NOISE_TAU_S = 0.448                   # correlation time: collect's factor 0.8 per 0.1 s step

    name = "amr"
    model_file = "factory_floor/factory_floor.xml"
    camera = "front"
    lidar_body = "lidar_link"
    time_limit_s = 60.0
    person_bodies = ("worker_1", "worker_2")
    WORKER_X = (0.0, 3.5)  # cross aisles
    WORKER_Y = 4.6  # walk from -Y to +Y (or back)
    START = np.array([-6.5, 0.0])
    GOAL = np.array([6.5, 0.0])
    HALF_LENGTH, HALF_WIDTH, WORKER_RADIUS = 0.3, 0.225, 0.22

    def _randomise(self) -> None:
        o = self.options
        self.base = diff_drive_command(o)
        m = self.model
        self.jx, self.jy, self.jyaw = (m.jnt_qposadr[m.joint(n).id] for n in ("base_x", "base_y", "base_yaw"))
        start = self.START + self.rng.uniform(-0.2, 0.2, 2)
        yaw0 = self.rng.uniform(-0.2, 0.2)
        self.data.qpos[[self.jx, self.jy, self.jyaw]] = [start[0], start[1], yaw0]
        self.odom_origin = np.array([start[0], start[1], yaw0])
        times = o.get("worker_times_s")
        self.worker_times = (np.asarray(times, float) if times is not None
                             else np.array([self.rng.uniform(2.0, 9.0), self.rng.uniform(6.0, 13.0)]))
        self.worker_dirs = self.rng.choice([-1.0, 1.0], size=len(self.person_bodies))
        self.worker_speed = float(o.get("worker_speed", 1.4))
        self.worker_trigger_m = float(o.get("worker_trigger_m", 0.0))
        if self.worker_trigger_m > 0:  # not started until the AMR triggers them (see _script)
            self.worker_times = np.full(len(self.person_bodies), np.inf)
        self.wheel_angle = np.zeros(2)
        noise_rng = np.random.default_rng(self.seed + 777)
        self.command_noise = float(o.get("command_noise", 0.0))
        self._noise_rng = noise_rng if self.command_noise > 0 and noise_rng.random() < 0.5 else None
        self._noise = np.zeros(2)
        self.executed = np.zeros(2)           # the base's (v, w) after any disturbance

    def worker_state(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Worker positions (W, 2) and velocities (W, 2) at time t: each walks once across the aisle."""
        span = 2 * self.WORKER_Y
        s = np.clip((t - self.worker_times) * self.worker_speed, 0.0, span)
        moving = (s > 0) & (s < span)
        y = self.worker_dirs * (-self.WORKER_Y + s)
        pos = np.stack([np.array(self.WORKER_X), y], axis=1)
        vel = np.stack([np.zeros(len(y)), np.where(moving, self.worker_dirs * self.worker_speed, 0.0)], axis=1)
        return pos, vel

    def _script(self, t: float) -> None:
        if self.worker_trigger_m > 0:
            waiting = ~np.isfinite(self.worker_times)
            ahead = np.asarray(self.WORKER_X) - self.base_pose()[0]
            self.worker_times[waiting & (ahead <= self.worker_trigger_m)] = t
        pos, _ = self.worker_state(t)
        self.data.mocap_pos[:, :2] = pos

    def command_twist(self, linear_x: float, angular_z: float) -> None:
        """geometry_msgs/Twist on /cmd_vel (other components must be zero for a diff drive)."""
        self.base.accept([linear_x, angular_z], self.time_ns)

    def base_pose(self) -> np.ndarray:
        """World (x, y, yaw) of base_link."""
        return self.data.qpos[[self.jx, self.jy, self.jyaw]].copy()

    def _control(self, dt: float) -> None:
        v, w = self.base.step(dt, self.time_ns)
        if self._noise_rng is not None:       # Ornstein-Uhlenbeck: stationary std command_noise * NOISE_SCALE
            a = np.exp(-dt / self.NOISE_TAU_S)
            self._noise = a * self._noise + np.sqrt(1 - a * a) * self.command_noise * self.NOISE_SCALE \
                * self._noise_rng.standard_normal(2)
            v, w = np.clip(np.array([v, w]) + self._noise, self.base.lower, self.base.upper)
        self.executed = np.array([v, w])
        self.wheel_angle += self._wheel_rates() * dt
        yaw = self.data.qpos[self.jyaw]
        self.data.ctrl[:] = [v * np.cos(yaw), v * np.sin(yaw), w]

    def joint_state(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """Wheel joints as a diff-drive controller reports them (radius 0.08 m, separation 0.4 m)."""
        return ["left_wheel_joint", "right_wheel_joint"], self.wheel_angle.copy(), self._wheel_rates(), np.zeros(2)

    def _wheel_rates(self) -> np.ndarray:
        v, w = self.executed
        return np.array([v - 0.2 * w, v + 0.2 * w]) / 0.08

    def odometry(self) -> tuple[np.ndarray, np.ndarray]:
        """Exact wheel odometry: odom is the start pose."""
        qv = self.data.qvel
        return planar_odometry(self.base_pose(), self.odom_origin, qv[self.jx], qv[self.jy], qv[self.jyaw])

    def frames(self) -> tuple[list[Frame], list[Frame]]:
        """Static: map -> odom (start pose), base_link -> sensors; dynamic: odom -> base_link."""
        m = self.model
        static = [Frame("map", "odom", planar_pose(*self.odom_origin))]
        for child in ("lidar_link", "camera_link"):
            b = m.body(child).id
            static.append(Frame("base_link", child, _pose_matrix(m.body_pos[b], _quat_to_mat(m.body_quat[b]))))
        static += self.optical_frames()
        T, _ = self.odometry()
        return static, [Frame("odom", "base_link", T)]

    def _gt_bodies(self) -> list[str]:
        return ["base_link", *self.person_bodies]

    def person_clearance(self) -> float:
        """Distance from the AMR's footprint rectangle to the nearest worker's body circle [m]."""
        pos, _ = self.worker_state(self.data.time)
        return footprint_clearance(self.base_pose(), pos, self.HALF_LENGTH, self.HALF_WIDTH, self.WORKER_RADIUS)

    def _update_task(self) -> None:
        self.min_person_clearance = min(self.min_person_clearance, self.person_clearance())
        x, y, _ = self.base_pose()
        speed = float(np.hypot(*self.data.qvel[[self.jx, self.jy]]))
        at_goal = np.hypot(x - self.GOAL[0], y - self.GOAL[1]) < 0.3 and speed < 0.05
        self.success = bool(at_goal and self.collisions == 0)
        self.done = self.success or self.data.time >= self.time_limit_s

    def _progress(self) -> float:
        x, y, _ = self.base_pose()
        total = np.linalg.norm(self.GOAL - self.odom_origin[:2])
        return float(np.clip(1.0 - np.hypot(x - self.GOAL[0], y - self.GOAL[1]) / total, 0.0, 1.0))

    def _extra(self) -> dict[str, Any]:
        pos, vel = self.worker_state(self.data.time)
        return {"goal": self.GOAL.copy(), "worker_positions": pos, "worker_velocities": vel,
                "worker_start_times": self.worker_times.copy(), "worker_directions": self.worker_dirs.copy(),
                "worker_speed": self.worker_speed, "worker_half_span": self.WORKER_Y}


# ===================================================================================================== vehicle
class VehicleLane(Scenario):
    """Ackermann car follows the lane and stops behind a stopped (or slow, then stopping) car ahead.

    Options: max_steer (rad), max_steer_rate (rad/s), max_speed (m/s), max_accel, max_decel (m/s^2),
    cmd_timeout_s, obstacle_s (m along the lane), obstacle_speed (m/s; 0 = stopped).
    """

    name = "vehicle"
    model_file = "vehicle_lane/vehicle_lane.xml"
    camera = "front"
    lidar_body = "lidar_link"
    time_limit_s = 45.0
    WHEELBASE = 2.7
    FRONT = 3.65  # [m] base_link (rear axle) to front bumper
    OBSTACLE_HALF_LENGTH = 2.2

    def _randomise(self) -> None:
        o = self.options
        self.max_steer = float(o.get("max_steer", 0.5))
        self.drive = RateLimitedCommand(
            ["steering_angle", "speed"], lower=[-self.max_steer, -3.0],
            upper=[self.max_steer, float(o.get("max_speed", 15.0))],
            max_rate_up=[float(o.get("max_steer_rate", 0.6)), float(o.get("max_accel", 3.0))],
            max_rate_down=[float(o.get("max_steer_rate", 0.6)), float(o.get("max_decel", 6.0))],
            timeout_s=float(o.get("cmd_timeout_s", 0.5)), safe=[0.0, 0.0])
        m = self.model
        self.jx, self.jy, self.jyaw = (m.jnt_qposadr[m.joint(n).id] for n in ("base_x", "base_y", "base_yaw"))
        x, y, h = lane.centerline(0.0)
        off = self.rng.uniform(-0.3, 0.3)
        yaw0 = float(h) + self.rng.uniform(-0.05, 0.05)
        self.data.qpos[[self.jx, self.jy, self.jyaw]] = [float(x), float(y) + off, yaw0]
        self.odom_origin = np.array([float(x), float(y) + off, yaw0])
        self.obstacle_s0 = float(o.get("obstacle_s", self.rng.uniform(55.0, 75.0)))
        default_speed = 0.0 if self.rng.random() < 0.5 else self.rng.uniform(1.5, 3.0)
        self.obstacle_speed = float(o.get("obstacle_speed", default_speed))
        self.obstacle_stop_s = self.obstacle_s0 + (self.rng.uniform(15.0, 25.0) if self.obstacle_speed > 0 else 0.0)
        self.max_lateral = 0.0
        self.gap = float("inf")
        self.obstacle_bid = m.body("obstacle_car").id

    def obstacle_state(self, t: float) -> tuple[float, float]:
        """Obstacle (arc length s [m], speed [m/s]) at time t: slow cars stop at obstacle_stop_s."""
        if self.obstacle_speed <= 0:
            return self.obstacle_s0, 0.0
        s = self.obstacle_s0 + self.obstacle_speed * t
        return (self.obstacle_stop_s, 0.0) if s >= self.obstacle_stop_s else (s, self.obstacle_speed)

    def _script(self, t: float) -> None:
        s, _ = self.obstacle_state(t)
        x, y, h = lane.centerline(s)
        self.data.mocap_pos[0] = [float(x), float(y), 0.0]
        self.data.mocap_quat[0] = _yaw_quat(float(h))

    def command_ackermann(self, steering_angle: float, speed: float) -> None:
        """ackermann_msgs/AckermannDrive steering angle [rad] and speed [m/s]."""
        self.drive.accept([steering_angle, speed], self.time_ns)

    def base_pose(self) -> np.ndarray:
        """World (x, y, yaw) of base_link (rear-axle centre)."""
        return self.data.qpos[[self.jx, self.jy, self.jyaw]].copy()

    def _control(self, dt: float) -> None:
        steer, v = self.drive.step(dt, self.time_ns)
        yaw = self.data.qpos[self.jyaw]
        self.data.ctrl[:] = [v * np.cos(yaw), v * np.sin(yaw), v * np.tan(steer) / self.WHEELBASE]

    def speed(self) -> float:
        """Forward speed [m/s]."""
        yaw = self.data.qpos[self.jyaw]
        return float(np.cos(yaw) * self.data.qvel[self.jx] + np.sin(yaw) * self.data.qvel[self.jy])

    def joint_state(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """Steering angle [rad] and rear wheel speed [rad/s] (wheel radius 0.33 m)."""
        steer, v = self.drive.current
        return (["steering_joint", "rear_wheel_joint"], np.array([steer, 0.0]), np.array([0.0, v / 0.33]),
                np.zeros(2))

    odometry = FactoryFloor.odometry
    frames = FactoryFloor.frames

    def _gt_bodies(self) -> list[str]:
        return ["base_link", "obstacle_car"]

    def _update_task(self) -> None:
        x, y, _ = self.base_pose()
        s, lat = lane.project(x, y)
        self.max_lateral = max(self.max_lateral, abs(lat))
        s_obs, v_obs = self.obstacle_state(self.data.time)
        self.gap = s_obs - self.OBSTACLE_HALF_LENGTH - (s + self.FRONT)
        stopped = abs(self.speed()) < 0.1 and v_obs == 0.0
        self.success = bool(stopped and 1.0 <= self.gap <= 10.0 and self.collisions == 0 and self.max_lateral < 1.0)
        self.done = self.success or self.data.time >= self.time_limit_s

    def _progress(self) -> float:
        x, y, _ = self.base_pose()
        s, _ = lane.project(x, y)
        s_obs, _ = self.obstacle_state(self.data.time)
        return float(np.clip(s / max(s_obs - 8.0, 1.0), 0.0, 1.0))

    def _extra(self) -> dict[str, Any]:
        return {"gap_m": self.gap, "max_lateral_m": self.max_lateral}


SCENARIOS: dict[str, type[Scenario]] = {"arm": ArmCell, "amr": FactoryFloor, "vehicle": VehicleLane}
ALIASES = {"arm_cell": "arm", "factory_floor": "amr", "factory": "amr", "vehicle_lane": "vehicle"}


def _registry() -> dict[str, type[Scenario]]:
    from physical_ai.sim.fleet import FactoryFleet  # built on the classes above

    return {**SCENARIOS, FactoryFleet.name: FactoryFleet}


def canonical_name(name: str) -> str:
    """Scenario key ("arm", "amr", "vehicle", "fleet") for a key or alias such as the model directory name."""
    key = ALIASES.get(name, name)
    if key not in _registry():
        raise ValueError(f"unknown scenario {name!r}; choose from {sorted(_registry())}")
    return key


def make_scenario(name: str, seed: int = 0, options: dict[str, Any] | None = None) -> Scenario:
    """Build a scenario by name ("arm", "amr", "vehicle", "fleet" or the model directory name)."""
    return _registry()[canonical_name(name)](seed, options)

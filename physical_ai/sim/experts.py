"""Scripted experts: privileged-state controllers that solve each scenario's task.

Each expert maps an observation built from ground truth (`observe(scenario)`) to a command in the embodiment's
action space (see the ActionChunk contract):
- arm: {"joint_positions": (7,) rad, "gripper": opening m} for the forward position controller;
- amr: {"linear_x": m/s, "angular_z": rad/s};
- vehicle: {"steering_angle": rad, "speed": m/s}.
`apply(scenario, command)` sends it through the scenario's validated driver interface. Used for demonstrations
and as baselines; `run_episode` plays one seeded episode without ROS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np

from physical_ai.perception.parts import YAW_CENTRE, canonical_pose
from physical_ai.sim import lane
from physical_ai.sim.scenarios import (
    BIN_CENTRE,
    TABLE_Z,
    ArmCell,
    FactoryFloor,
    Scenario,
    VehicleLane,
    make_scenario,
)

Observation = dict[str, Any]
Command = dict[str, Any]


def _wrap(a: float) -> float:
    return float((a + np.pi) % (2 * np.pi) - np.pi)


def observe(sc: Scenario) -> Observation:
    """Privileged observation for the scenario's expert."""
    gt = sc.ground_truth()
    obs: Observation = {"time": sc.data.time, "bodies": dict(zip(gt.body_names, gt.body_poses, strict=True))}
    obs.update(gt.extra)
    if isinstance(sc, ArmCell):
        obs["joint_positions"] = sc.data.qpos[sc.qadr].copy()
    elif isinstance(sc, FactoryFloor):
        obs["pose"] = sc.base_pose()
        obs["velocity"] = sc.base.current.copy()
    elif isinstance(sc, VehicleLane):
        obs["pose"] = sc.base_pose()
        obs["speed"] = sc.speed()
        s_obs, v_obs = sc.obstacle_state(sc.data.time)
        obs["obstacle_s"], obs["obstacle_speed"] = s_obs, v_obs
    return obs


def apply(sc: Scenario, cmd: Command) -> None:
    """Send an expert command through the scenario's driver interface."""
    if isinstance(sc, ArmCell):
        sc.command_stream(list(cmd["joint_positions"]))
        sc.command_gripper([cmd["gripper"]])
    elif isinstance(sc, FactoryFloor):
        sc.command_twist(cmd["linear_x"], cmd["angular_z"])
    elif isinstance(sc, VehicleLane):
        sc.command_ackermann(cmd["steering_angle"], cmd["speed"])


# ========================================================================================================= arm
def top_down_rotation(yaw: float) -> np.ndarray:
    """The tcp's rotation for a top-down grasp whose fingers close along `yaw` (the tcp's y axis) [rad]."""
    y_axis = np.array([np.cos(yaw), np.sin(yaw), 0.0])
    z_axis = np.array([0.0, 0.0, -1.0])
    return np.column_stack([np.cross(y_axis, z_axis), y_axis, z_axis])


def closing_yaw(rot: np.ndarray) -> float:
    """The direction the fingers close along (the tcp's y axis) for a tcp rotation, about the vertical [rad]."""
    return float(np.arctan2(rot[1, 1], rot[0, 1]))


class ArmIK:
    """Damped least-squares inverse kinematics of the "tcp" site on a private MjData."""

    def __init__(self, model: mujoco.MjModel, qadr: np.ndarray, dadr: np.ndarray, lower: np.ndarray,
                 upper: np.ndarray) -> None:
        self.model, self.data = model, mujoco.MjData(model)
        self.qadr, self.dadr, self.lower, self.upper = qadr, dadr, lower, upper
        self.site = model.site("tcp").id
        self._jp = np.zeros((3, model.nv))
        self._jr = np.zeros((3, model.nv))

    def tcp_pose(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Forward kinematics: (position, 3x3 rotation) of the tcp for joint positions q."""
        self.data.qpos[self.qadr] = q
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_comPos(self.model, self.data)  # the site Jacobian needs cdof
        return self.data.site_xpos[self.site].copy(), self.data.site_xmat[self.site].reshape(3, 3).copy()

    def solve(self, pos: np.ndarray, rot: np.ndarray, seed: np.ndarray, rest: np.ndarray,
              iters: int = 200, tol: float = 1e-4) -> tuple[np.ndarray, float]:
        """Joint positions reaching (pos, rot) from `seed`, pulled toward `rest` in the null space; (q, error)."""
        q = seed.copy()
        err = np.inf
        for _ in range(iters):
            p, R = self.tcp_pose(q)
            e_pos = pos - p
            e_rot = 0.5 * (np.cross(R[:, 0], rot[:, 0]) + np.cross(R[:, 1], rot[:, 1]) + np.cross(R[:, 2], rot[:, 2]))
            e = np.concatenate([e_pos, e_rot])
            err = float(np.linalg.norm(e_pos) + 0.1 * np.linalg.norm(e_rot))
            if err < tol:
                break
            mujoco.mj_jacSite(self.model, self.data, self._jp, self._jr, self.site)
            J = np.vstack([self._jp[:, self.dadr], self._jr[:, self.dadr]])
            JJt = J @ J.T + 1e-4 * np.eye(6)
            dq = J.T @ np.linalg.solve(JJt, e)
            null = np.eye(len(q)) - J.T @ np.linalg.solve(JJt, J)
            dq += null @ (0.1 * (rest - q))
            q = np.clip(q + np.clip(dq, -0.2, 0.2), self.lower, self.upper)
        return q, err


@dataclass
class _Segment:
    q_from: np.ndarray
    q_to: np.ndarray
    g_from: float
    g_to: float
    duration: float


class ArmPickPlaceExpert:
    """Pick the target part from the top and drop it into the bin.

    The plan (pre-grasp, descend, close, lift, carry, lower, release, retreat) is a list of joint-space
    segments solved by IK at reset (call `plan` again if the part is moved); segments are cosine-interpolated
    at joint speeds well under the limits.
    """

    REST = np.array([0.0, 0.2, 0.0, 1.9, 0.0, 1.0, 0.0])
    OPEN, CLOSED = 0.08, 0.0

    def __init__(self, sc: ArmCell, speed: float = 1.0, yaw_offset: float = 0.0) -> None:
        """`yaw_offset` [rad] turns the grasp about the vertical from the canonical yaw (e.g. a quarter turn)."""
        self.ik = ArmIK(sc.model, sc.qadr, sc.dadr, sc.limits.lower, sc.limits.upper)
        self.model = sc.model
        self.speed = speed
        self.yaw_offset = yaw_offset
        self.segments: list[_Segment] = []
        self.t0 = 0.0

    def _grasp_rotation(self, part: str, part_quat: np.ndarray) -> np.ndarray:
        """Top-down grasp, fingers closing across the part at its canonical yaw.

        The yaw is what perception can tell (`physical_ai.perception.parts.canonical_pose`): the part's footprint
        yaw up to its symmetry (a quarter turn for the cube, a half turn for the prism and the gripper), a fixed
        yaw for the round cylinder. The policy sees only that, so the demonstrated grasp must depend on nothing else.
        """
        geom = self.model.geom(f"{part}_geom")
        if geom.type[0] == mujoco.mjtGeom.mjGEOM_CYLINDER:
            yaw = YAW_CENTRE
        else:
            R_part = np.zeros(9)
            mujoco.mju_quat2Mat(R_part, part_quat)
            ax = R_part.reshape(3, 3)[:, 0]
            yaw = float(canonical_pose(np.arctan2(ax[1], ax[0]), 2 * geom.size[0], 2 * geom.size[1])[0])
        return top_down_rotation(yaw + self.yaw_offset)

    def plan(self, obs: Observation) -> None:
        """Solve the whole pick-and-place from the current observation."""
        part = obs["bodies"][obs["target_part"]]
        q = np.asarray(obs["joint_positions"], dtype=float)
        R = self._grasp_rotation(obs["target_part"], part[3:])
        grasp_z = max(part[2] + 0.002, TABLE_Z + 0.023)
        above = np.array([part[0], part[1], grasp_z + 0.12])
        grasp = np.array([part[0], part[1], grasp_z])
        lift = np.array([part[0], part[1], TABLE_Z + 0.22])
        R_bin = R  # keep the wrist yaw while carrying
        over_bin = np.array([BIN_CENTRE[0], BIN_CENTRE[1], TABLE_Z + 0.22])
        in_bin = np.array([BIN_CENTRE[0], BIN_CENTRE[1], TABLE_Z + 0.13])
        waypoints = [(above, R, self.OPEN, None), (grasp, R, self.OPEN, None), (grasp, R, self.CLOSED, 0.6),
                     (lift, R, self.CLOSED, None), (over_bin, R_bin, self.CLOSED, None),
                     (in_bin, R_bin, self.CLOSED, None), (in_bin, R_bin, self.OPEN, 0.5),
                     (over_bin, R_bin, self.OPEN, None)]
        self.segments = []
        q_prev, g_prev = q, self.OPEN
        for pos, rot, g, dwell in waypoints:
            q_next, _ = self.ik.solve(pos, rot, q_prev, self.REST)
            dist = float(np.max(np.abs(q_next - q_prev)))
            duration = dwell if dwell is not None else max(0.4, 1.6 * dist / self.speed)
            self.segments.append(_Segment(q_prev, q_next, g_prev, g, duration))
            q_prev, g_prev = q_next, g
        self.t0 = obs["time"]

    def reset(self, obs: Observation) -> None:
        """Plan for a new episode."""
        self.plan(obs)

    def act(self, obs: Observation) -> Command:
        """Command at the observation's time."""
        t = obs["time"] - self.t0
        for seg in self.segments:
            if t <= seg.duration:
                s = 0.5 - 0.5 * np.cos(np.pi * np.clip(t / seg.duration, 0.0, 1.0))
                return {"joint_positions": seg.q_from + s * (seg.q_to - seg.q_from),
                        "gripper": float(seg.g_from + s * (seg.g_to - seg.g_from))}
            t -= seg.duration
        last = self.segments[-1]
        return {"joint_positions": last.q_to.copy(), "gripper": float(last.g_to)}


# ========================================================================================================= amr
class AmrStationExpert:
    """Drive to the drop-off station along the aisle, yielding to workers who cross ahead.

    Heading control steers toward a lookahead point on the aisle centreline (y = goal y). Speed is the minimum of
    the stopping profile to the goal and a yield rule: for each worker who is walking, the time window in which it
    occupies the robot's corridor is compared with the time the robot needs to clear the worker's walking line; if
    they overlap (with `time_margin_s`), the robot stops `stop_margin` short of that line.

    The rule uses only what the robot's sensors show (a worker's position and walking velocity), so that a policy
    imitating it can tell from its observations what to do: a worker standing at the end of a cross aisle gives no
    cue of whether or when it will start (yielding to it as well, from its schedule, taught the policy to stall
    before every standing worker, also one who had already crossed). A robot whose footprint is already at a
    walking worker's line drives on to clear it rather than stop in the worker's way.
    """

    def __init__(self, max_linear: float = 1.0, max_angular: float = 1.5, accel: float = 1.0,
                 corridor_half_width: float = 0.9, stop_margin: float = 0.8, time_margin_s: float = 1.0,
                 yield_to_workers: bool = True) -> None:
        self.v_max, self.w_max, self.accel = max_linear, max_angular, accel
        self.corridor, self.margin, self.time_margin = corridor_half_width, stop_margin, time_margin_s
        self.yield_to_workers = yield_to_workers  # False: the no-yield baseline of the benchmark

    def reset(self, obs: Observation) -> None:
        """Nothing to plan."""

    def _occupancy(self, obs: Observation, y_robot: float) -> list[tuple[float, float]]:
        """Per worker, the (start, end) times [s] it is within the corridor around the robot's path line.

        Read from ground truth (start time, direction, speed); used only for workers who are walking, whose
        motion the robot sees. A worker walks once from -dir*half_span to +dir*half_span along y.
        """
        out = []
        span, speed = obs["worker_half_span"], obs["worker_speed"]
        for t0, direction in zip(obs["worker_start_times"], obs["worker_directions"], strict=True):
            # y(t) = dir * (-span + s), s = (t - t0) * speed; inside while |y - y_robot| < corridor
            s_in = span + direction * y_robot - self.corridor
            s_out = span + direction * y_robot + self.corridor
            out.append((t0 + s_in / speed, t0 + s_out / speed))
        return out

    def _free_distance(self, obs: Observation) -> float:
        """Distance the robot may still drive before yielding to a crossing worker [m]."""
        x, y, yaw = obs["pose"]
        now, v = obs["time"], max(float(obs["velocity"][0]), 0.3)
        touching = FactoryFloor.HALF_LENGTH + FactoryFloor.WORKER_RADIUS + 0.1
        clear = touching - 0.1 + self.margin
        free = np.inf
        windows = self._occupancy(obs, y)
        for p, t0, (t_in, t_out) in zip(obs["worker_positions"], obs["worker_start_times"], windows, strict=True):
            ahead = np.cos(yaw) * (p[0] - x) + np.sin(yaw) * (p[1] - y)
            if now < t0:
                continue  # standing: no cue of when it will walk (see the class docstring)
            if ahead < touching or t_out < now:
                continue  # at or past its line (drive on to clear it), or it has crossed
            if now + (ahead + clear) / v + self.time_margin < t_in:
                continue  # we are past its line before it arrives
            free = min(free, ahead - clear)
        return free

    def act(self, obs: Observation) -> Command:
        """(linear_x, angular_z) for the observation."""
        x, y, yaw = obs["pose"]
        gx, gy = obs["goal"]
        dist_goal = float(np.hypot(gx - x, gy - y))
        look = min(1.5, max(dist_goal, 0.3))
        target = np.array([min(x + look, gx) if gx > x else max(x - look, gx), gy])
        heading = np.arctan2(target[1] - y, target[0] - x) if dist_goal > 0.15 else yaw
        err = _wrap(heading - yaw)
        w = float(np.clip(2.0 * err, -self.w_max, self.w_max))
        free = dist_goal - 0.05
        if self.yield_to_workers:
            free = min(free, self._free_distance(obs))
        v = min(self.v_max, float(np.sqrt(2 * 0.8 * self.accel * max(free, 0.0))))
        v *= max(0.0, np.cos(err)) ** 2
        return {"linear_x": float(v), "angular_z": w}


# ===================================================================================================== vehicle
class VehicleLaneExpert:
    """Pure pursuit on the lane centreline; speed from a stopping profile behind the car ahead."""

    def __init__(self, cruise: float = 8.0, decel: float = 2.5, standstill_gap: float = 4.0,
                 wheelbase: float = 2.7, max_steer: float = 0.5) -> None:
        self.cruise, self.decel, self.gap0 = cruise, decel, standstill_gap
        self.wheelbase, self.max_steer = wheelbase, max_steer

    def reset(self, obs: Observation) -> None:
        """Nothing to plan."""

    def act(self, obs: Observation) -> Command:
        """(steering_angle, speed) for the observation."""
        x, y, yaw = obs["pose"]
        v = obs["speed"]
        s, _ = lane.project(x, y)
        look = max(5.0, 1.0 * v)
        tx, ty, _ = lane.centerline(s + look)
        alpha = _wrap(float(np.arctan2(ty - y, tx - x)) - yaw)
        ld = float(np.hypot(tx - x, ty - y))
        steer = float(np.clip(np.arctan2(2 * self.wheelbase * np.sin(alpha), ld), -self.max_steer, self.max_steer))
        gap = obs["obstacle_s"] - VehicleLane.OBSTACLE_HALF_LENGTH - (s + VehicleLane.FRONT)
        v_obs = obs["obstacle_speed"]
        free = max(gap - self.gap0, 0.0)
        speed = min(self.cruise, float(np.sqrt(v_obs**2 + 2 * self.decel * free)))
        if free < 0.3 and v_obs == 0.0:
            speed = 0.0
        return {"steering_angle": steer, "speed": speed}


EXPERTS = {"arm": ArmPickPlaceExpert, "amr": AmrStationExpert, "vehicle": VehicleLaneExpert}


def make_expert(sc: Scenario) -> ArmPickPlaceExpert | AmrStationExpert | VehicleLaneExpert:
    """The expert for a scenario."""
    if isinstance(sc, ArmCell):
        return ArmPickPlaceExpert(sc)
    if isinstance(sc, FactoryFloor):
        return AmrStationExpert(max_linear=sc.base.upper[0], max_angular=sc.base.upper[1],
                                accel=sc.base.max_rate_up[0])
    return VehicleLaneExpert(max_steer=sc.max_steer)


def run_episode(name: str, seed: int, control_hz: float = 50.0, options: dict[str, Any] | None = None,
                settle_s: float = 1.0, expert: Any = None) -> tuple[bool, Scenario]:
    """Play one seeded episode with the scenario's expert, or `expert` (no ROS, no sensors); (success, scenario)."""
    sc = make_scenario(name, seed, options)
    expert = expert or make_expert(sc)
    expert.reset(observe(sc))
    steps = max(1, round(1.0 / (control_hz * sc.timestep)))
    while not sc.done:
        apply(sc, expert.act(observe(sc)))
        sc.step(steps)
    if sc.success and settle_s > 0:  # must stay solved (no part bouncing out, no drift)
        end = sc.data.time + settle_s
        while sc.data.time < end:
            apply(sc, expert.act(observe(sc)))
            sc.step(steps)
    return bool(sc.success), sc

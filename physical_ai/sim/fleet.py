"""The fleet scenario: three AMRs and crossing workers on one factory floor, one world, one clock.

The world is models/factory_floor/factory_floor.xml with its AMR copied once per robot (bodies, joints, geoms and
actuators named `robot1/...`); each robot's hull is visible to the others' LiDARs (their own is skipped), so every
robot perceives the others as moving obstacles, and workers cross the aisle at x = 0 and x = 3.5 m as in the
single-AMR scenario.

Each robot has a route: a frame `route` in the map, in which the route runs from the pick-up station pose to the
drop-off station pose of the single-AMR scenario (x = -6.5 m to +6.5 m on the route's x axis), which is the task the
shipped `amr_nav` policy was trained on. The simulator publishes map -> route on each robot's tf (as a fleet
manager assigning routes would), and that robot's policy reads its pose in `route` (`pose_frame: route`):
- robot1 eastbound in the lane y = +0.9 m, pick-up x = -6.5 -> drop-off x = +6.5;
- robot2 westbound in the other lane (y = -0.9 m), x = +8.4 -> -4.6: it meets robot1 and robot3 head-on;
- robot3 behind robot1 in its lane, x = -8.4 -> +4.6: it follows robot1 and stops behind it when robot1 yields to a
  worker.
Every goal is more than 1 m from the workers' aisles and, like the single AMR's, far from the stations' stands
(a stand beside the goal is a scene the policy never saw: in a first layout with a goal 0.6 m from the drop-off
stand, that robot reached its goal and then drove away from it).

A robot that reached its goal is parked there (its commands ignored, `FleetRobot.control`) until the episode ends.
Scoring per robot: success when it reached its goal (< 0.3 m, < 0.05 m/s) and never touched anything; contacts are
counted by kind (person, robot, static: shelves, walls, stands), and its clearances to people and to the other
robots are tracked. The episode ends when every robot is done or after `time_limit_s`.
"""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np

from physical_ai.sim.scenarios import (
    MODELS,
    FactoryFloor,
    Frame,
    GroundTruth,
    Scenario,
    _descendant_bodies,
    _pose_matrix,
    _quat_to_mat,
    diff_drive_command,
    footprint_clearance,
    optical_frames,
    planar_odometry,
    planar_pose,
)

HULL_GROUP = 3  # the AMR's chassis: in the single-AMR model group 1 (hidden from its own LiDAR); here visible


@dataclass(frozen=True)
class Route:
    """A robot's task: the map pose (x, y, yaw) of its route frame (its route runs from START to GOAL in it)."""

    robot: str
    origin: tuple[float, float, float]

    def to_map(self, x: float, y: float, yaw: float) -> np.ndarray:
        """A route-frame pose (x, y, yaw) in the map."""
        ox, oy, oyaw = self.origin
        c, s = np.cos(oyaw), np.sin(oyaw)
        return np.array([ox + c * x - s * y, oy + s * x + c * y, yaw + oyaw])


ROUTES = (Route("robot1", (0.0, 0.9, 0.0)), Route("robot2", (1.9, -0.9, np.pi)), Route("robot3", (-1.9, 0.9, 0.0)))


def fleet_model(robots: tuple[str, ...]) -> mujoco.MjModel:
    """The factory floor with its AMR (body tree and actuators) copied once per robot name, `<robot>/<name>`."""
    root = ET.parse(MODELS / FactoryFloor.model_file).getroot()
    world, actuators = root.find("worldbody"), root.find("actuator")
    amr = world.find("body[@name='base_link']")
    base_actuators = list(actuators)
    world.remove(amr)
    for act in base_actuators:
        actuators.remove(act)
    for robot in robots:
        body = copy.deepcopy(amr)
        for element in body.iter():
            if element.get("name"):
                element.set("name", f"{robot}/{element.get('name')}")
            if element.get("name") == f"{robot}/amr_chassis":
                element.set("group", str(HULL_GROUP))
        world.append(body)
        for act in base_actuators:
            twin = copy.deepcopy(act)
            twin.set("name", f"{robot}/{act.get('name')}")
            twin.set("joint", f"{robot}/{act.get('joint')}")
            actuators.append(twin)
    return mujoco.MjModel.from_xml_string(ET.tostring(root, encoding="unicode"))


class FleetRobot:
    """One AMR of the fleet: its driver interface, odometry, frames and score, as the simulator plays them.

    It answers what the simulator asks a one-robot scenario (`joint_state`, `odometry`, `frames`, `ground_truth`,
    `command_twist`), so the simulator node and `SimRunner` serve each robot in its own namespace.
    """

    camera_frame = "camera_link"
    HALF_LENGTH, HALF_WIDTH = FactoryFloor.HALF_LENGTH, FactoryFloor.HALF_WIDTH

    def __init__(self, fleet: FactoryFleet, route: Route) -> None:
        m = fleet.model
        self.fleet, self.route, self.name = fleet, route, route.robot
        self.root = m.body(f"{self.name}/base_link").id
        self.lidar_body = f"{self.name}/lidar_link"
        self.lidar_exclude_body = self.root  # its own hull; the others' are visible
        self.camera = f"{self.name}/front"
        joints = [m.joint(f"{self.name}/{j}") for j in ("base_x", "base_y", "base_yaw")]
        self.qadr = np.array([m.jnt_qposadr[j.id] for j in joints])
        self.dadr = np.array([m.jnt_dofadr[j.id] for j in joints])
        self.ctrl = np.array([m.actuator(f"{self.name}/{a}").id for a in ("base_vx", "base_vy", "base_wz")])
        self.geoms = set(np.flatnonzero(np.isin(m.geom_bodyid, list(_descendant_bodies(m, self.root)))).tolist())
        self.hull = m.geom(f"{self.name}/amr_chassis").id
        self.goal = self.goal_pose()[:2]

    def reset(self, rng: np.random.Generator) -> None:
        """Place the robot at its route's start (randomised as in the single-AMR scenario) and clear its score."""
        self.base = diff_drive_command(self.fleet.options)
        start = FactoryFloor.START + rng.uniform(-0.2, 0.2, 2)
        self.odom_origin = self.route.to_map(start[0], start[1], rng.uniform(-0.2, 0.2))
        self.fleet.data.qpos[self.qadr] = self.odom_origin
        self.wheel_angle = np.zeros(2)
        self.contacts = {"person": 0, "robot": 0, "static": 0}
        self.min_person_clearance = float("inf")
        self.min_robot_clearance = float("inf")
        self.reached = False

    # ---- driver --------------------------------------------------------------------------------------------------
    def command_twist(self, linear_x: float, angular_z: float) -> None:
        """geometry_msgs/Twist on <robot>/cmd_vel (other components must be zero for a diff drive)."""
        self.base.accept([linear_x, angular_z], self.fleet.time_ns)

    def control(self, dt: float) -> None:
        """Turn the rate-limited (v, w) into the planar actuators' velocity targets; a robot at its goal is parked.

        Parked: its task is done, and the fleet manager (which the simulator plays, as it assigns the routes)
        holds it at its station until the episode ends, as a task executive stops a robot's navigation when the
        task completes. Without it, a robot that arrived first kept executing its policy, which was never trained
        past the goal, while it waited for the others: in seed 200000 through the nodes robot1 drove 6 m back from
        its goal and giving way to the other robots that moved it around the aisle for 70 s until the time limit.
        (`reached` needs it below 0.05 m/s, so holding it still is within the base's deceleration.)
        """
        if self.reached:
            self.base.reset()  # the safe value: standstill
        v, w = self.base.step(dt, self.fleet.time_ns)
        self.wheel_angle += self._wheel_rates() * dt
        yaw = self.fleet.data.qpos[self.qadr[2]]
        self.fleet.data.ctrl[self.ctrl] = [v * np.cos(yaw), v * np.sin(yaw), w]

    def goal_pose(self) -> np.ndarray:
        """Its goal (x, y, yaw) in the map, as a fleet manager hands it out (the simulator's `<robot>/goal_pose`)."""
        return self.route.to_map(*FactoryFloor.GOAL, 0.0)

    def _wheel_rates(self) -> np.ndarray:
        v, w = self.base.current
        return np.array([v - 0.2 * w, v + 0.2 * w]) / 0.08

    # ---- state ------------------------------------------------------------------------------------------------
    def base_pose(self) -> np.ndarray:
        """World (x, y, yaw) of its base_link."""
        return self.fleet.data.qpos[self.qadr].copy()

    def speed(self) -> float:
        """Planar speed [m/s]."""
        return float(np.hypot(*self.fleet.data.qvel[self.dadr[:2]]))

    def joint_state(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """Wheel joints as a diff-drive controller reports them (radius 0.08 m, separation 0.4 m)."""
        return ["left_wheel_joint", "right_wheel_joint"], self.wheel_angle.copy(), self._wheel_rates(), np.zeros(2)

    def odometry(self) -> tuple[np.ndarray, np.ndarray]:
        """Exact wheel odometry: odom is the start pose."""
        qv = self.fleet.data.qvel[self.dadr]
        return planar_odometry(self.base_pose(), self.odom_origin, qv[0], qv[1], qv[2])

    def frames(self) -> tuple[list[Frame], list[Frame]]:
        """Its own tf tree. Static: map -> odom, map -> route, base_link -> sensors; dynamic: odom -> base_link."""
        m = self.fleet.model
        static = [Frame("map", "odom", planar_pose(*self.odom_origin)), Frame("map", "route", planar_pose(
            *self.route.origin))]
        for child in ("lidar_link", "camera_link"):
            b = m.body(f"{self.name}/{child}").id
            static.append(Frame("base_link", child, _pose_matrix(m.body_pos[b], _quat_to_mat(m.body_quat[b]))))
        static += optical_frames(m, self.camera, self.camera_frame)
        T, _ = self.odometry()
        return static, [Frame("odom", "base_link", T)]

    def others(self) -> list[FleetRobot]:
        """The other robots of the fleet."""
        return [r for r in self.fleet.robots if r is not self]

    def ground_truth(self) -> GroundTruth:
        """Its own view of the privileged state: itself as "base_link", the other robots, the workers."""
        fl = self.fleet
        names = ["base_link", *(f"{r.name}/base_link" for r in self.others()), *fl.person_bodies]
        ids = [self.root, *(r.root for r in self.others()), *(fl.model.body(n).id for n in fl.person_bodies)]
        poses = np.concatenate([fl.data.xpos[ids], fl.data.xquat[ids]], axis=1)
        twists = np.array([fl._body_twist(i) for i in ids])
        collisions = sum(self.contacts.values())
        return GroundTruth("amr", fl.time_ns, names, poses, twists, collisions, self.min_person_clearance,
                           self.progress(), self.success, self.done, self.extra())

    @property
    def success(self) -> bool:
        """Reached its goal and never touched anything."""
        return self.reached and sum(self.contacts.values()) == 0

    @property
    def done(self) -> bool:
        """Succeeded, or the episode's time is up."""
        return self.success or self.fleet.data.time >= self.fleet.time_limit_s

    def progress(self) -> float:
        """Fraction of the route's length covered (by distance left to the goal)."""
        x, y, _ = self.base_pose()
        total = np.linalg.norm(self.goal - self.odom_origin[:2])
        return float(np.clip(1.0 - np.hypot(x - self.goal[0], y - self.goal[1]) / total, 0.0, 1.0))

    def extra(self) -> dict[str, Any]:
        """Per-robot score details."""
        return {"goal": self.goal.copy(), "contacts": dict(self.contacts),
                "min_robot_clearance_m": self.min_robot_clearance}

    def update(self, people: np.ndarray) -> None:
        """Track clearances and the goal after a physics step."""
        fl = self.fleet
        pose = self.base_pose()
        self.min_person_clearance = min(self.min_person_clearance, footprint_clearance(
            pose, people, self.HALF_LENGTH, self.HALF_WIDTH, FactoryFloor.WORKER_RADIUS))
        fromto = np.zeros(6)
        for other in self.others():
            gap = mujoco.mj_geomDistance(fl.model, fl.data, self.hull, other.hull, 2.0, fromto)
            self.min_robot_clearance = min(self.min_robot_clearance, float(gap))
        at_goal = np.hypot(*(pose[:2] - self.goal)) < 0.3 and self.speed() < 0.05
        self.reached |= bool(at_goal)


class FactoryFleet(Scenario):
    """Three AMRs, each on its own route (module docstring), and two workers crossing the aisle.

    Options: as `FactoryFloor` for the bases and workers (max_linear, max_angular, max_accel, max_alpha,
    cmd_timeout_s, worker_times_s, worker_speed), time_limit_s (any scenario's; here 90 s by default).
    """

    name = "fleet"
    model_file = FactoryFloor.model_file
    robot_body = f"{ROUTES[0].robot}/base_link"
    person_bodies = FactoryFloor.person_bodies
    time_limit_s = 90.0

    def _load_model(self) -> mujoco.MjModel:
        return fleet_model(tuple(r.robot for r in ROUTES))

    def _setup(self) -> None:
        self.robots = [FleetRobot(self, route) for route in ROUTES]
        owner = {}
        for robot in self.robots:
            owner.update(dict.fromkeys(robot.geoms, robot))
        self._owner = owner
        m = self.model
        self._person_geoms = {g for g in range(m.ngeom) if m.body(m.geom_bodyid[g]).name in self.person_bodies}

    def rigs(self) -> list[tuple[str, Any, tuple[str, ...] | None]]:
        """The fleet's own ground truth in the node's namespace, and each robot's drivers in `<robot>/`."""
        return [("", self, ("ground_truth",)), *((r.name, r, None) for r in self.robots)]

    def robot(self, name: str) -> FleetRobot:
        """A robot by name."""
        return next(r for r in self.robots if r.name == name)

    # ---- lifecycle ------------------------------------------------------------------------------------------------
    def _randomise(self) -> None:
        o = self.options
        for robot in self.robots:
            robot.reset(self.rng)
        times = o.get("worker_times_s")
        self.worker_times = (np.asarray(times, float) if times is not None
                             else np.array([self.rng.uniform(2.0, 9.0), self.rng.uniform(6.0, 13.0)]))
        self.worker_dirs = self.rng.choice([-1.0, 1.0], size=len(self.person_bodies))
        self.worker_speed = float(o.get("worker_speed", 1.4))

    worker_state = FactoryFloor.worker_state
    WORKER_X, WORKER_Y = FactoryFloor.WORKER_X, FactoryFloor.WORKER_Y

    def _script(self, t: float) -> None:
        pos, _ = self.worker_state(t)
        self.data.mocap_pos[:, :2] = pos

    def _control(self, dt: float) -> None:
        for robot in self.robots:
            robot.control(dt)

    def _count_collisions(self) -> None:
        """New contacts of each robot, by what it touched (a robot-robot contact counts for both)."""
        d = self.data
        pairs: set[tuple[int, int]] = set()
        for g1, g2 in d.contact.geom[: d.ncon]:
            for mine, other in ((int(g1), int(g2)), (int(g2), int(g1))):
                if mine in self._owner and self._owner.get(other) is not self._owner[mine]:
                    pairs.add((mine, other))
        for mine, other in pairs - self._pairs:
            kind = "robot" if other in self._owner else "person" if other in self._person_geoms else "static"
            self._owner[mine].contacts[kind] += 1
        self.collisions = sum(sum(r.contacts.values()) for r in self.robots)
        self._pairs = pairs

    def _update_task(self) -> None:
        people, _ = self.worker_state(self.data.time)
        for robot in self.robots:
            robot.update(people)
        self.min_person_clearance = min(r.min_person_clearance for r in self.robots)
        self.success = all(r.success for r in self.robots)
        self.done = all(r.done for r in self.robots)

    # ---- the fleet's own ground truth -------------------------------------------------------------------------------
    def _gt_bodies(self) -> list[str]:
        return [*(f"{r.name}/base_link" for r in self.robots), *self.person_bodies]

    def _progress(self) -> float:
        return float(np.mean([r.progress() for r in self.robots]))

    def _extra(self) -> dict[str, Any]:
        return {r.name: {"success": r.success, "progress": r.progress(), **r.extra()} for r in self.robots}

    def joint_state(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """No joints of its own (each robot reports its wheels)."""
        return [], np.zeros(0), np.zeros(0), np.zeros(0)

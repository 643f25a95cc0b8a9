"""Physics-rollout world model: a private MuJoCo copy of the scene, seeded from the estimated state.

Each candidate chunk is stepped through that copy.

AMR: the robot is placed at its localised map pose and speed; every perceived moving obstacle (the nearest ones,
up to the scene's worker bodies) is placed at its perceived position and moved at its perceived velocity (constant-
velocity prediction, as the tracker predicts). Static structure (shelves, walls) comes from the scene model, i.e.
the map. A candidate's collision probability rises from 0 at `safe_clearance_m` to 1 at contact, so a near miss
counts as risk, and the rollout continues after the chunk with the robot braking to a stop for `tail_s` (a
chunk that ends inside a crossing where the worker would walk into the stopped robot is a collision too); progress
is the distance gained toward the goal over the chunk, normalised by the most the robot could gain at full speed.
"""

from __future__ import annotations

import numpy as np

from physical_ai.sim.scenarios import FactoryFloor, make_scenario
from physical_ai.world_model.api import Selection, WorldModel, WorldState

PERSON_CLASS = 1.0


class AmrPhysicsWorldModel(WorldModel):
    """MuJoCo rollout of the factory-floor AMR among predicted workers."""

    name = "physics"
    state_names = ("odom.x", "odom.y", "odom.yaw", "odom.vx", "odom.wz")  # the rollout starts at the base's speed

    def __init__(self, rule: Selection | None = None, safe_clearance_m: float = 0.3, moving_speed: float = 0.3,
                 max_range_m: float = 8.0, tail_s: float = 2.0) -> None:
        super().__init__(rule)
        self.sc: FactoryFloor = make_scenario("amr", 0, {"worker_times_s": [1e9, 1e9]})  # type: ignore[assignment]
        self.safe = safe_clearance_m
        self.moving_speed, self.max_range = moving_speed, max_range_m
        self.tail_s = tail_s
        self.n_workers = len(self.sc.person_bodies)
        self.goal = self.sc.GOAL.copy()

    def _movers(self, state: WorldState) -> tuple[np.ndarray, np.ndarray]:
        """Perceived movers (or people) as world positions and velocities, nearest first, up to n_workers."""
        f = state.obstacle_features
        ob = np.asarray(state.obstacles, dtype=float).reshape(-1, len(f))
        x, y, yaw = state.value("odom.x"), state.value("odom.y"), state.value("odom.yaw")
        if len(ob) == 0:
            return np.zeros((0, 2)), np.zeros((0, 2))
        local = ob[:, [f.index("x"), f.index("y")]]
        vel = ob[:, [f.index("vx"), f.index("vy")]]
        speed = np.linalg.norm(vel, axis=1)
        is_person = ob[:, f.index("class")] == PERSON_CLASS if "class" in f else np.zeros(len(ob), bool)
        small = (ob[:, f.index("length")] < 1.0) if "length" in f else np.ones(len(ob), bool)
        keep = ((speed > self.moving_speed) | (is_person & small)) & (np.linalg.norm(local, axis=1) < self.max_range)
        local, vel = local[keep], vel[keep]
        order = np.argsort(np.linalg.norm(local, axis=1))[: self.n_workers]
        c, s = np.cos(yaw), np.sin(yaw)
        R = np.array([[c, -s], [s, c]])
        return local[order] @ R.T + [x, y], vel[order] @ R.T

    def predict(self, state: WorldState, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Roll each candidate out; (collision_p, failure_p = 0, progress)."""
        sc = self.sc
        pos, vel = self._movers(state)
        parked = np.array([[1e3 + 10 * i, 1e3] for i in range(self.n_workers)])
        wpos = parked.copy()
        wvel = np.zeros_like(parked)
        wpos[: len(pos)], wvel[: len(vel)] = pos, vel
        x, y, yaw = state.value("odom.x"), state.value("odom.y"), state.value("odom.yaw")
        vx, wz = state.value("odom.vx"), state.value("odom.wz")
        goal = self.goal if state.goal is None else np.asarray(state.goal, float)
        d0 = float(np.hypot(*(goal - [x, y])))
        n_sub = max(1, round(state.dt / sc.timestep))
        k, h, _ = candidates.shape
        collision = np.zeros(k)
        progress = np.zeros(k)
        max_gain = max(1e-3, float(sc.base.upper[0]) * h * state.dt)
        for i, chunk in enumerate(candidates):
            sc.reset(0)
            t0 = sc.data.time
            sc.worker_state = lambda t, t0=t0: (wpos + (t - t0) * wvel, wvel)  # constant-velocity prediction
            sc.data.qpos[[sc.jx, sc.jy, sc.jyaw]] = [x, y, yaw]
            sc.data.qvel[[sc.jx, sc.jy, sc.jyaw]] = [vx * np.cos(yaw), vx * np.sin(yaw), wz]
            sc.base.reset(np.array([vx, wz]))
            sc.min_person_clearance = float("inf")
            clearance = float("inf")
            for action in chunk:
                sc.command_twist(*np.clip(action, sc.base.lower, sc.base.upper))
                sc.step(n_sub)
                clearance = min(clearance, sc.min_person_clearance)
                if sc.collisions:
                    break
            bx, by, _ = sc.base_pose()
            # then brake and wait: a chunk that leaves the robot where a worker walks into it even after a stop
            # (inside a crossing) is as bad as one that drives into the worker
            for _ in range(round(self.tail_s / state.dt)):
                if sc.collisions:
                    break
                sc.command_twist(0.0, 0.0)
                sc.step(n_sub)
                clearance = min(clearance, sc.min_person_clearance)
            hit = 1.0 if sc.collisions else float(np.clip((self.safe - clearance) / self.safe, 0.0, 1.0))
            collision[i] = hit
            progress[i] = np.clip((d0 - float(np.hypot(*(goal - [bx, by])))) / max_gain, 0.0, 1.0)
        return collision, np.zeros(k), progress

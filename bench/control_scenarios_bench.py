"""Trajectory correction in simulated scenarios: the MuJoCo scenario cores in-process, our correctors in the loop.

20 seeded runs per scenario, faster than real time (no ROS; the node wraps the same core objects):
- AMR crossing (factory floor): a go-to-goal planner stand-in feeds cmd_vel, the AMR corrector checks it against
  the workers (ground-truth tracks with velocity, as perception would report them) -> collisions, min clearance,
  goal reached. Baseline: the same planner without correction.
- Arm + hand: the arm follows chunks sweeping over the table while a hand reaches into the cell -> contacts,
  limit violations (commands outside position/velocity/acceleration limits, or refused by the driver).
  Baseline: chunks streamed without correction.
- Vehicle: lane following with a stopped or slow-then-stopping car ahead -> min margin to it, max lateral error.

Perception is ideal here (ground-truth obstacles at the control rate); perception's own errors are measured by its
benchmark. Usage: python bench/control_scenarios_bench.py [--runs 20] [--smoke]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from physical_ai.control.amr import AmrConfig, AmrCorrector  # noqa: E402
from physical_ai.control.arm import ArmConfig, ArmCorrector  # noqa: E402
from physical_ai.control.arm_collision import CapsuleArm  # noqa: E402
from physical_ai.control.limits import JointLimits  # noqa: E402
from physical_ai.control.vehicle import VehicleConfig, VehicleCorrector  # noqa: E402
from physical_ai.sim import lane  # noqa: E402
from physical_ai.sim.commands import CommandRejected  # noqa: E402
from physical_ai.sim.scenarios import ArmCell, FactoryFloor, VehicleLane  # noqa: E402


def bench(name: str, value: float, unit: str) -> None:
    print(f"BENCH {name} {value:.6g} {unit}", flush=True)


def _to_local(pose: np.ndarray, xy: np.ndarray) -> np.ndarray:
    c, s = np.cos(pose[2]), np.sin(pose[2])
    d = np.asarray(xy, float) - pose[:2]
    return np.column_stack((c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]))


# ------------------------------------------------------------------------------------------------------------ AMR
def amr_run(seed: int, corrected: bool) -> tuple[int, float, bool]:
    sim = FactoryFloor(seed)
    period = 0.01
    n_sub = round(period / sim.timestep)
    amr = AmrCorrector(AmrConfig(period_s=period))
    goal = sim.GOAL
    amr.set_goal(goal)  # (the scenario's odom frame is only used for messages; world frame here)
    while not sim.done:
        pose = sim.base_pose()
        d = _to_local(pose, goal[None])[0]
        dist = float(np.hypot(*d))
        heading = float(np.arctan2(d[1], d[0]))
        v_nom = min(1.0, 0.8 * dist) * max(0.0, np.cos(heading))
        w_nom = float(np.clip(1.5 * heading, -1.5, 1.5))
        if corrected:
            workers, vel = sim.worker_state(sim.data.time)
            c, s = np.cos(pose[2]), np.sin(pose[2])
            amr.set_pose(*pose)
            amr.set_obstacles(_to_local(pose, workers), np.full(len(workers), sim.WORKER_RADIUS),
                              vel @ np.array([[c, -s], [s, c]]))
            amr.submit_cmd_vel(v_nom, w_nom, sim.data.time)
            cmd = amr.step(sim.data.time)
            v_nom, w_nom = cmd.linear, cmd.angular
        sim.command_twist(v_nom, w_nom)
        sim.step(n_sub)
    return sim.collisions, sim.min_person_clearance, bool(sim.success)


def amr_crossing(runs: int) -> None:
    for corrected, prefix in ((True, "control.amr_crossing"), (False, "control.amr_crossing.uncorrected")):
        results = [amr_run(seed, corrected) for seed in range(runs)]
        bench(f"{prefix}.collisions", float(sum(r[0] for r in results)), "count")
        bench(f"{prefix}.min_clearance_m", float(min(r[1] for r in results)), "m")
        bench(f"{prefix}.goal_reached", float(np.mean([r[2] for r in results])), "fraction")


# ------------------------------------------------------------------------------------------------------------ arm
ARM_NAMES = [f"joint{i}" for i in range(1, 8)]


def arm_limits(sim: ArmCell) -> JointLimits:
    return JointLimits.from_lists(ARM_NAMES, sim.limits.lower, sim.limits.upper, [1.5] * 7, [5.0] * 7, [50.0] * 7)


def hand_spheres(sim: ArmCell) -> tuple[np.ndarray, np.ndarray]:
    """The hand capsule as 4 spheres along its axis (world frame)."""
    g = sim.model.geom("hand_geom").id
    pos, rot = sim.data.geom_xpos[g], sim.data.geom_xmat[g].reshape(3, 3)
    half, radius = sim.model.geom_size[g][1], sim.model.geom_size[g][0]
    ts = np.linspace(-half, half, 4)
    spacing = ts[1] - ts[0]
    return pos + ts[:, None] * rot[:, 2], np.full(4, radius + 0.5 * spacing)


def arm_run(seed: int, corrected: bool) -> tuple[int, int, float]:
    rng = np.random.default_rng(seed)
    sim = ArmCell(seed, {"hand_time_s": float(rng.uniform(1.0, 3.0)), "hand_duration_s": 3.0})
    limits = arm_limits(sim)
    arm = ArmCorrector(limits, ArmConfig(period_s=sim.timestep, clearance_m=0.05),
                       CapsuleArm(sim.model, ARM_NAMES, "col_"))
    q0 = sim.joint_state()[1][:7]
    arm.set_measured(q0)
    # Chunks sweep the gripper down to the front-right of the table and back: the hand reaches in right there.
    sweep_to = np.array([-0.225, 0.84, -0.193, 1.475, 0.056, 0.404, -1.416])
    period, violations, prev_v = sim.timestep, 0, np.zeros(7)
    hand_prev = None
    k = 0
    while sim.data.time < 8.0:
        now = sim.data.time
        if k % 50 == 0:  # a chunk every 0.1 s, 0.5 s long
            t = now + 0.02 * np.arange(26)
            phase = 0.5 - 0.5 * np.cos(2 * np.pi * t / 4.0)
            values = q0 + phase[:, None] * (sweep_to - q0)
            arm.submit_chunk(ARM_NAMES, values.ravel(), now, 0.02, 26, now)
            ref = values
        centres, radii = hand_spheres(sim)
        vel = np.zeros_like(centres) if hand_prev is None else (centres - hand_prev) / period
        hand_prev = centres
        if corrected:
            arm.set_obstacles(centres, radii, vel)
            cmd = arm.step(now)
            q, v, a = cmd.position, cmd.velocity, cmd.acceleration
        else:
            i = min(int((now - (k // 50) * 50 * period) / 0.02), 24)
            frac = ((now - (k // 50) * 50 * period) - 0.02 * i) / 0.02
            q = ref[i] + np.clip(frac, 0, 1) * (ref[i + 1] - ref[i])
            v = (ref[i + 1] - ref[i]) / 0.02
            a = (v - prev_v) / period
        violations += bool(limits.violations(q, v, a, tol=1e-6))
        prev_v = v
        try:
            sim.command_stream(q.tolist())
        except CommandRejected:
            violations += 1
        sim.step(1)
        k += 1
    # The hand is a kinematic (mocap) body without physical contacts: touching it is a negative clearance.
    touched = int(sim.min_person_clearance < 0.0)
    return sim.collisions + touched, violations, float(sim.min_person_clearance)


def arm_hand(runs: int) -> None:
    for corrected, prefix in ((True, "control.arm_hand"), (False, "control.arm_hand.uncorrected")):
        results = [arm_run(seed, corrected) for seed in range(runs)]
        bench(f"{prefix}.contacts", float(sum(r[0] for r in results)), "count")
        bench(f"{prefix}.limit_violations", float(sum(r[1] for r in results)), "count")
        bench(f"{prefix}.min_clearance_m", float(min(r[2] for r in results)), "m")


# -------------------------------------------------------------------------------------------------------- vehicle
SETTLE_S = 3.0  # the car starts up to 0.3 m off the lane centre; lane keeping is scored after this


def vehicle_run(seed: int) -> tuple[float, float, bool, float]:
    sim = VehicleLane(seed)
    period = 0.01
    n_sub = round(period / sim.timestep)
    cfg = VehicleConfig(period_s=period, front_overhang=sim.FRONT, max_decel=5.0)
    veh = VehicleCorrector(cfg)
    s_path = np.arange(0.0, lane.LENGTH, 0.5)
    x, y, _ = lane.centerline(s_path)
    veh.set_path(np.column_stack([x, y]))  # world frame, with world poses below
    min_gap, settled_lateral = np.inf, 0.0
    while not sim.done:
        pose = sim.base_pose()
        veh.set_pose(*pose, sim.speed())
        s_obs, v_obs = sim.obstacle_state(sim.data.time)
        ox, oy, oh = lane.centerline(s_obs)
        # The obstacle car's rear bumper point as the obstacle (radius 0), velocity along its heading.
        rear = np.array([[float(ox) - sim.OBSTACLE_HALF_LENGTH * np.cos(oh),
                          float(oy) - sim.OBSTACLE_HALF_LENGTH * np.sin(oh)]])
        local = _to_local(pose, rear)
        rel_h = float(oh) - pose[2]
        veh.set_obstacles(local, np.zeros(1), np.array([[v_obs * np.cos(rel_h), v_obs * np.sin(rel_h)]]))
        cmd = veh.step(sim.data.time)
        sim.command_ackermann(cmd.steering_angle, cmd.speed)
        sim.step(n_sub)
        min_gap = min(min_gap, sim.gap)
        if sim.data.time > SETTLE_S:
            settled_lateral = max(settled_lateral, abs(lane.project(*sim.base_pose()[:2])[1]))
    return float(min_gap), float(sim.max_lateral), bool(sim.success), settled_lateral


def vehicle(runs: int) -> None:
    results = [vehicle_run(seed) for seed in range(runs)]
    bench("control.vehicle_obstacle.min_margin_m", float(min(r[0] for r in results)), "m")
    bench("control.vehicle_lane.max_lateral_error_m", float(max(r[3] for r in results)), "m")
    bench("control.vehicle_lane.max_lateral_error_incl_start_offset_m", float(max(r[1] for r in results)), "m")
    bench("control.vehicle_obstacle.stopped_behind", float(np.mean([r[2] for r in results])), "fraction")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--only", choices=("amr", "arm", "vehicle"), default=None)
    parser.add_argument("--smoke", action="store_true", help="one run per scenario; figures not meaningful")
    args = parser.parse_args()
    if args.smoke:
        args.runs = 1
    if args.only in (None, "amr"):
        amr_crossing(args.runs)
    if args.only in (None, "arm"):
        arm_hand(args.runs)
    if args.only in (None, "vehicle"):
        vehicle(args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())

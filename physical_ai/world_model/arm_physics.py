"""Arm physics-rollout world model: will this chunk's grasp hold the part? Answered in a MuJoCo copy of the cell.

The copy is built from what the robot perceives, never from the simulator's state: the arm from the joint state
(positions, velocities, gripper opening), each perceived part matched to the cell's part catalogue by its fitted
size and placed at its perceived position and yaw (resting on the table), the target from the grounded
"is_target" token. Part materials are the catalogue's nominal ones for the cell variant (`materials`); a
part's per-episode mass and friction are not observable, so the copy cannot know them.

Each candidate chunk is played in the copy as the robot plays it: through the arm's trajectory-correction core
(config/arm.yaml's settings: blending, jerk-limited tracking, limits), started at the measured joint positions and
velocities, its commands streamed to the copy's position controllers. Played straight to the controllers, the copy
drove the fingers onto the table where the corrected arm stops short, and the check vetoed grasps for contacts that
never happen (hard seed 300001). If the chunk ends with the gripper over the target part (or, where grounding marked
another part or none, over any perceived part; failing that, the target beside them within AIM_XY_M), the copy then
completes the grasp the chunk is heading for (or has begun): straight down to the grasp height at the chunk's final
wrist orientation, close, lift `lift_m`; beside a part, that predicts a miss. `recentre` offers the variant of a
chunk aimed beside a part that ends over it. failure_p is 1 when the part is not in the fingers after the lift (it
slid out, was pushed away, or a finger landed on it); a chunk that starts with the part in the fingers fails when it
ends with the part dropped away from the bin. collision_p is 1 when the arm, playing the chunk, touches anything but
a part with its gripper (a contact it is in already when the chunk starts does not count while it lasts); the
completion's own contacts do not count (it is the model's stand-in for the policy's next chunks, not a motion the
robot is asked to make: its fingertips, closing at the part's centre 2 cm above the table, brushed the table in the
copy and vetoed every variant of a cube grasp that succeeds; hard seed 300002). progress is 1 for a grasp predicted
to hold, else 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mujoco
import numpy as np

from physical_ai.control.arm import arm_corrector
from physical_ai.sim.experts import ArmIK, closing_yaw, top_down_rotation
from physical_ai.sim.scenarios import (
    ARM_JOINTS,
    BIN_CENTRE,
    BIN_HALF_INNER,
    HARD_MATERIALS,
    PARTS,
    TABLE_Z,
    ArmCell,
    make_scenario,
)
from physical_ai.world_model.api import Selection, WorldModel, WorldState

# catalogue sizes (short side, long side, height) [m] in PARTS order, as perception fits them
CATALOGUE = np.array([[0.04, 0.04, 0.04], [0.04, 0.04, 0.05], [0.025, 0.07, 0.04]])
SIZE_TOLERANCE_M = 0.012
GRASP_XY_M = 0.03       # the chunk ends over the target part: tcp within this of its centre (horizontally)
GRASP_ABOVE_M = 0.25    # ... and at most this far above it (time to turn the wrist before the fingers arrive)
# A chunk ending within this of the grounded target (horizontally, and GRASP_ABOVE_M above it) but not over it is a
# grasp about to miss: it is judged by completing the grasp where it is, and a variant recentred on it is offered.
AIM_XY_M = 0.10
RECENTRE_MIN_M = 0.005  # a chunk ending this close to the part's centre (a finger's clearance across the prism) ...
RECENTRE_MIN_YAW = 0.05  # ... and this close to its axis [rad], top-down, is on the part already: no variant
RECENTRE_IK_TOL = 0.005  # [m] a recentred end pose the arm cannot reach within this is not offered
IN_FINGERS_M = 0.04     # a part whose centre is this close to the tcp is between the fingers
HELD_OPENING_M = 0.075  # fingers measuring less than this are closed on something (open: 0.08)
SETTLE_S = 0.3          # a held part placed in the copy's fingers settles in their grip this long (arm held) [s]
# The copy's corrector runs at this rate, not the robot's 1 kHz: its cycles integrate in 5 ms sub-steps either way
# (MAX_SUBSTEP_S), and at 1 kHz three candidates cost more than the chunk period on one core.
COPY_CORRECTOR_HZ = 100.0


def cosine_ramp(n: int) -> np.ndarray:
    """A cosine ease from 0 (excluded) to 1 (the last) in `n` samples."""
    return 0.5 - 0.5 * np.cos(np.pi * np.arange(1, n + 1) / n)


def stream_step(sc: ArmCell, q: np.ndarray, gripper: float, dt: float) -> None:
    """One step of joint targets as the position controller plays it (velocity-limited, interpolated)."""
    start = sc.target.copy()
    vmax = sc.limits.max_velocity * dt
    target = start + np.clip(np.clip(q, sc.limits.lower, sc.limits.upper) - start, -vmax, vmax)
    sc.command_gripper([float(np.clip(gripper, *sc.gripper_range))])
    n = max(1, round(dt / sc.timestep))
    sub = max(1, n // 5)
    for k in range(1, n // sub + 1):
        sc.command_stream(list(start + (target - start) * min(1.0, k * sub / n)))
        sc.step(sub)


def _move(sc: ArmCell, q_to: np.ndarray, gripper_to: float, duration: float, dt: float) -> None:
    """Cosine joint-space move (and gripper) from the current targets over `duration`."""
    q0, g0 = sc.target.copy(), sc.gripper_target
    for s in cosine_ramp(max(1, round(duration / dt))):
        stream_step(sc, q0 + s * (q_to - q0), g0 + s * (gripper_to - g0), dt)


def in_fingers(sc: ArmCell, part: str) -> bool:
    """The part's centre is within IN_FINGERS_M of the tcp (between the fingers)."""
    return bool(np.linalg.norm(sc.part_position(part) - sc.data.site("tcp").xpos) < IN_FINGERS_M)


def grasp_height(part_centre: np.ndarray) -> float:
    """The tcp height of a top-down grasp of a part with this centre (as the expert grasps) [m]."""
    return max(float(part_centre[2]) + 0.002, TABLE_Z + 0.023)


def complete_grasp(sc: ArmCell, ik: ArmIK, part: str, dt: float, lift_m: float = 0.12) -> bool:
    """From where the arm is: straight down to the grasp height, close, lift; is the part still in the fingers?

    Runs on any arm cell: the world model's copy, or a fork of the true simulation (its labels).
    """
    p = sc.part_position(part)
    tcp, R = sc.data.site("tcp").xpos.copy(), sc.data.site("tcp").xmat.reshape(3, 3).copy()
    grasp_z = grasp_height(p)
    q_grasp, _ = ik.solve(np.array([tcp[0], tcp[1], grasp_z]), R, sc.target, sc.target)
    _move(sc, q_grasp, sc.gripper_target, max(0.3, 3.0 * (tcp[2] - grasp_z)), dt)
    _move(sc, q_grasp, 0.0, 0.6, dt)
    q_lift, _ = ik.solve(np.array([tcp[0], tcp[1], grasp_z + lift_m]), R, q_grasp, q_grasp)
    _move(sc, q_lift, 0.0, 0.6, dt)
    _move(sc, q_lift, 0.0, 0.2, dt)
    lifted = sc.part_position(part)[2] > p[2] + 0.5 * lift_m
    return bool(lifted and in_fingers(sc, part))


def approaching(sc: ArmCell, part: str, xy_m: float = GRASP_XY_M) -> bool:
    """The tcp is over the part: within `xy_m` of its centre horizontally, at most GRASP_ABOVE_M above it."""
    p, tcp = sc.part_position(part), sc.data.site("tcp").xpos
    return bool(np.linalg.norm(tcp[:2] - p[:2]) < xy_m and tcp[2] - p[2] < GRASP_ABOVE_M)


class ArmPhysicsWorldModel(WorldModel):
    """MuJoCo rollout of candidate arm chunks, each completed into a grasp and lift when it approaches one."""

    name = "physics"
    sequential = True

    def __init__(self, rule: Selection | None = None, materials: str = "normal", lift_m: float = 0.12,
                 corrector_params: Mapping[str, Any] | None = None) -> None:
        """`corrector_params`: the trajectory_correction parameters the robot runs (None: config/arm.yaml's)."""
        super().__init__(rule)
        if corrector_params is None:
            from physical_ai.training.envs import robot_params

            corrector_params = robot_params("arm", "trajectory_correction")
        self.corrector_params = corrector_params
        self.sc: ArmCell = make_scenario("arm", 0, {"target_part": PARTS[0]})  # type: ignore[assignment]
        if materials == "hard":
            nominal = np.array([HARD_MATERIALS[p] for p in PARTS])
            self.sc.set_part_materials(nominal[:, 0], nominal[:, 1])
        elif materials != "normal":
            raise ValueError(f"arm physics world model: materials {materials!r}: normal | hard")
        sc = self.sc
        self.ik = ArmIK(sc.model, sc.qadr, sc.dadr, sc.limits.lower, sc.limits.upper)
        self.lift_m = lift_m
        self.base = sc.data.xpos[sc.robot_root].copy()  # base_link in the world (perceived parts are in base_link)
        self.part_adr = [sc.model.jnt_qposadr[sc.model.joint(f"{p}_free").id] for p in PARTS]
        self.finger_right_adr = sc.model.jnt_qposadr[sc.model.joint("finger_right_joint").id]
        self.half_height = CATALOGUE[:, 2] / 2

    # ---- the copy ------------------------------------------------------------------------------------------------
    def _match(self, state: WorldState) -> tuple[dict[int, np.ndarray], int]:
        """Perceived parts matched to catalogue entries: {part index: feature row}, target part index (-1: none)."""
        f = state.part_features
        rows = np.asarray(state.parts, dtype=float).reshape(-1, len(f))
        matched: dict[int, np.ndarray] = {}
        target = -1
        if len(rows) == 0 or "size_x" not in f:
            return matched, target
        sizes = rows[:, [f.index("size_x"), f.index("size_y"), f.index("size_z")]]
        sizes[:, :2] = np.sort(sizes[:, :2], axis=1)
        err = np.abs(sizes[:, None, :] - CATALOGUE[None]).max(axis=2)  # (n, parts)
        for i in np.argsort(err.min(axis=1)):
            j = int(np.argmin(err[i]))
            if err[i, j] > SIZE_TOLERANCE_M or j in matched:
                continue
            matched[j] = rows[i]
            if "is_target" in f and rows[i, f.index("is_target")] > 0.5:
                target = j
        return matched, target

    def _place(self, state: WorldState, matched: dict[int, np.ndarray]) -> None:
        """Reset the copy to the perceived scene and the measured arm."""
        sc, f = self.sc, state.part_features
        sc.reset(0)
        d = sc.data
        for j, adr in enumerate(self.part_adr):
            if j not in matched:
                d.qpos[adr:adr + 3] = [2.0 + j, 2.0, 0.05]  # not seen: out of the cell, on the floor
                continue
            row = matched[j]
            pos = row[[f.index("x"), f.index("y"), f.index("z")]] + self.base
            pos[2] = max(pos[2], TABLE_Z + self.half_height[j] + 0.0005)
            qx, qy, qz, qw = (row[f.index(k)] for k in ("qx", "qy", "qz", "qw"))
            # the canonical yaw is the short side's direction: the catalogue geoms have their short side along x
            d.qpos[adr:adr + 3] = pos
            d.qpos[adr + 3:adr + 7] = [qw, qx, qy, qz]
        names = state.state_names
        q = np.array([state.value(f"{j}.position") for j in ARM_JOINTS])
        d.qpos[sc.qadr] = q
        if all(f"{j}.velocity" in names for j in ARM_JOINTS):
            d.qvel[sc.dadr] = [state.value(f"{j}.velocity") for j in ARM_JOINTS]
        opening = state.value("gripper.position") if "gripper.position" in names else sc.gripper_range[1]
        d.qpos[sc.finger_qadr] = d.qpos[self.finger_right_adr] = opening / 2
        sc.target = q.copy()
        sc.gripper_target = opening
        sc._streaming = True
        mujoco.mj_forward(sc.model, d)
        self._seat_held_part(matched, opening)
        # Contacts the arm is in already are not the candidate's: counted, every candidate collided and was vetoed
        # and the arm, held still, never left the table its fingers had touched (hard seed 300038 through the
        # nodes: 45 vetoes). A contact broken and made again counts.
        sc._count_collisions()
        sc.collisions = 0

    def _seat_held_part(self, matched: dict[int, np.ndarray], opening: float) -> None:
        """A part perceived between closed fingers is placed where the fingers hold it, across the side they span.

        Half hidden by the fingers, a held part is perceived a centimetre or more off, and a lifted one where it
        lay (hard seed 300006: 12 mm along the prism's long side while the fingers held it across that side with
        5 mm to spare, and 13 cm below them); placed there, the copy dropped it in every candidate while the true
        arm carried it.
        """
        sc, d = self.sc, self.sc.data
        if opening >= HELD_OPENING_M:
            return
        tcp = d.site("tcp").xpos.copy()
        closing = closing_yaw(d.site("tcp").xmat.reshape(3, 3))
        for j in matched:
            adr = self.part_adr[j]
            if np.linalg.norm(d.qpos[adr:adr + 2] - tcp[:2]) >= IN_FINGERS_M:  # horizontally: see below
                continue
            short, long = CATALOGUE[j, :2]
            # the catalogue geom's short side is along its x axis: across the fingers, or along them when they
            # span its long side
            across = long if abs(opening - long) < abs(opening - short) else short
            yaw = closing + (np.pi / 2 if across == long else 0.0)
            d.qpos[adr:adr + 3] = tcp - [0.0, 0.0, 0.002]
            d.qpos[adr + 3:adr + 7] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
            # The fingers just clear of the part, then closing on it as the robot's do, until the grasp settles:
            # seated at the measured opening (the part's side less the squeeze), the overlap threw the part up and
            # out of the fingers as the chunk began (the same hard seed).
            d.qpos[sc.finger_qadr] = d.qpos[self.finger_right_adr] = across / 2 + 0.0005
            mujoco.mj_forward(sc.model, d)
            sc.command_gripper([sc.gripper_range[0]])
            sc.step(max(1, round(SETTLE_S / sc.timestep)))
            return

    def _under_gripper(self, target: str, matched: dict[int, np.ndarray]) -> str:
        """The part the chunk ends over (`approaching`): the target if so, else any other perceived part; '' if none.

        The grasp closes on whatever part is between the fingers: where grounding marked another part (or none) as
        the target, the target's fate is not what decides this grasp (held-out seed 400002: the target token sat on
        the cylinder 16 cm away while the gripper closed on the slippery prism, and the check predicted success).
        """
        if target and approaching(self.sc, target):
            return target
        over = next((PARTS[j] for j in matched if approaching(self.sc, PARTS[j])), "")
        if over:
            return over
        # none under the fingers, the target beside them: the grasp is judged where it would close (a predicted
        # miss). Only the grounded target: judged beside any part, a chunk still 26 cm from its cylinder was
        # turned a quarter for a part it was not after (in-process hard seed 300026; grounding had none).
        return target if target and approaching(self.sc, target, AIM_XY_M) else ""

    def recentre(self, state: WorldState, chunk: np.ndarray) -> np.ndarray | None:
        """The chunk moved to end over the target part, fingers across its short side; or None.

        The policy's aim is what fails most often: on the hard variant it closed its fingers 5 cm beside the prism
        (seeds 300000, 300006), and a quarter-turned grasp, across the prism's 70 mm side with the gripper's 80 mm,
        misses by a finger's width when the tcp is 7 mm off or the wrist a few degrees off the part's axis. The variant
        ends at the chunk's own height (at least the grasp height) top-down over the perceived, grounded target (none
        without one), closing across the part's perceived short side (its canonical yaw, the half turn nearest the
        chunk's); the joint change to that pose is eased in over the chunk's first half, so the descent happens over the
        part. None where the gripper is closed, the chunk ends on the part already (RECENTRE_MIN_M, RECENTRE_MIN_YAW),
        further than AIM_XY_M from it, or the pose is out of reach.
        """
        names = state.state_names
        if "gripper.position" in names and state.value("gripper.position") < HELD_OPENING_M:
            return None  # closed on something (or closing): not an approach
        matched, target = self._match(state)
        if target < 0:
            return None
        f = state.part_features
        q_end = np.asarray(chunk[-1, :len(ARM_JOINTS)], dtype=np.float64)
        tcp, rot = self.ik.tcp_pose(q_end)
        row = matched[target]
        p = row[[f.index("x"), f.index("y"), f.index("z")]] + self.base
        off = float(np.linalg.norm(p[:2] - tcp[:2]))
        if off >= AIM_XY_M or tcp[2] - p[2] > GRASP_ABOVE_M:
            return None
        part_yaw = 2.0 * np.arctan2(row[f.index("qz")], row[f.index("qw")])  # the short side's direction
        closing = closing_yaw(rot)
        turn = (part_yaw - closing + np.pi / 2) % np.pi - np.pi / 2  # the nearer of the two symmetric yaws
        if off < RECENTRE_MIN_M and abs(turn) < RECENTRE_MIN_YAW and rot[2, 2] < -0.99:
            return None
        # at the chunk's height, but not below the grasp height (a policy aiming beside the part aimed low, too)
        height = max(tcp[2], grasp_height(p))
        q_new, err = self.ik.solve(np.array([p[0], p[1], height]), top_down_rotation(closing + turn), q_end, q_end)
        if err > RECENTRE_IK_TOL:
            return None
        half = max(1, len(chunk) // 2)
        ease = np.concatenate([cosine_ramp(half), np.ones(len(chunk) - half)])
        out = np.array(chunk, dtype=np.float64)
        out[:, :len(ARM_JOINTS)] += ease[:, None] * (q_new - q_end)[None]
        return out

    def _play(self, state: WorldState, chunk: np.ndarray) -> None:
        """The chunk (joints then gripper per step) through a corrector started at the copy's arm, to its end."""
        sc = self.sc
        steps = max(1, round(1.0 / (COPY_CORRECTOR_HZ * sc.timestep)))
        corrector = arm_corrector(self.corrector_params, steps * sc.timestep)
        _, pos, vel, _ = sc.joint_state()
        # The gripper's command starts where the copy's is (closed on a held part), not at its measured opening: a
        # closed gripper measures the part's width, and commanded from there it let the held prism slide out.
        corrector.set_measured(pos[:7], sc.gripper_target, vel[:7])
        now = sc.data.time
        check = corrector.submit_chunk([*ARM_JOINTS, "gripper"], np.asarray(chunk).ravel(), now, state.dt,
                                       len(chunk), now)
        if check.reference is None:  # refused (as the robot's corrector would refuse it): the arm holds
            return
        for _ in range(round(len(chunk) * state.dt / (steps * sc.timestep))):
            _, pos, _, _ = sc.joint_state()
            corrector.set_measured(pos[:7], pos[7])
            cmd = corrector.step(sc.data.time)
            sc.command_stream(list(cmd.position))
            if np.isfinite(cmd.gripper):
                sc.command_gripper([cmd.gripper])
            sc.step(steps)

    def predict(self, state: WorldState, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(collision_p, failure_p, progress) per candidate (see the module docstring)."""
        sc = self.sc
        k = len(candidates)
        collision, failure, progress = np.zeros(k), np.zeros(k), np.zeros(k)
        matched, target = self._match(state)
        for i, chunk in enumerate(candidates):
            self._place(state, matched)
            part = PARTS[target] if target >= 0 else ""
            # the part in the fingers: the target, or whichever part grounding lost sight of under them
            held = next((PARTS[j] for j in ([target] if target >= 0 else []) + list(matched)
                         if sc.gripper_target < HELD_OPENING_M and in_fingers(sc, PARTS[j])), "")
            self._play(state, chunk)
            collision[i] = float(sc.collisions > 0)
            if held:
                p = sc.part_position(held)
                over_bin = bool(np.all(np.abs(p[:2] - BIN_CENTRE) < BIN_HALF_INNER + 0.03))
                failure[i] = float(not in_fingers(sc, held) and not over_bin)
            elif grasped := self._under_gripper(part, matched):
                ok = complete_grasp(sc, self.ik, grasped, state.dt, self.lift_m)
                failure[i], progress[i] = float(not ok), float(ok)
        return collision, failure, progress

"""Arm world model (issue 18): the physics rollout predicts, before the arm comes down, whether its grasp holds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from physical_ai.policy.observation import part_rows
from physical_ai.sim.experts import ArmPickPlaceExpert, apply, observe
from physical_ai.sim.scenarios import PARTS, make_scenario
from physical_ai.world_model.api import WorldModel, WorldState
from physical_ai.world_model.arm_physics import CATALOGUE, ArmPhysicsWorldModel
from physical_ai.world_model.checked_policy import wrist_variants

HEAVY_PRISM_SEED = 5  # hard variant: the target is the prism (test/sim/test_arm_variants.py)
DT = 0.05
ROOT = Path(__file__).resolve().parents[2]
NAMES = ("x", "y", "z", "qx", "qy", "qz", "qw", "size_x", "size_y", "size_z", "is_target")


def _over_the_prism() -> tuple[WorldState, np.ndarray]:
    """The expert's arm coming down toward the hard variant's prism, and its next second as a chunk.

    The belief is what perception reports (part centres, canonical yaws, catalogue sizes, the grounded target in
    base_link) and the joint state; the materials stay unknown to the model.
    """
    sc = make_scenario("arm", HEAVY_PRISM_SEED, {"variant": "hard"})
    expert = ArmPickPlaceExpert(sc)
    expert.reset(observe(sc))
    while sc.data.time < expert.segments[0].duration - 0.8:  # 0.8 s before it is over the part
        apply(sc, expert.act(observe(sc)))
        sc.step(10)
    base = sc.data.xpos[sc.robot_root]
    yaws = []
    for p in PARTS:
        R = sc.data.body(p).xmat.reshape(3, 3)
        yaws.append(np.arctan2(R[1, 0], R[0, 0]))
    rows = part_rows(np.array([sc.part_position(p) - base for p in PARTS]), yaws, CATALOGUE.copy(),
                     [1.0] * len(PARTS), NAMES)
    rows[:, NAMES.index("is_target")] = [p == sc.target_part for p in PARTS]
    _, pos, vel, _ = sc.joint_state()
    names = (*(f"joint{i}.position" for i in range(1, 8)), "gripper.position",
             *(f"joint{i}.velocity" for i in range(1, 8)))
    state = WorldState("arm", np.concatenate([pos[:7], [pos[7]], vel[:7]]), names, parts=rows, part_features=NAMES,
                       dt=DT)
    t0 = sc.data.time
    chunk = np.array([np.append(c["joint_positions"], c["gripper"])
                      for c in (expert.act({"time": t0 + DT * (i + 1)}) for i in range(20))])
    return state, chunk


@pytest.fixture(scope="module")
def over_the_prism() -> tuple[WorldState, np.ndarray]:
    return _over_the_prism()


def test_the_narrow_grasp_of_the_heavy_prism_is_predicted_to_drop_and_a_quarter_turn_to_hold(over_the_prism):
    state, chunk = over_the_prism
    cands, turns = wrist_variants(chunk, state.value("joint7.position"), 0.0, DT)
    assert turns[0] == 0.0 and len(cands) == 3
    pred = ArmPhysicsWorldModel(materials="hard").evaluate(state, cands)
    assert pred.failure_p[0] == 1.0  # the policy's grasp: slides out when lifted
    assert pred.failure_p[1:].min() == 0.0  # one quarter turn holds
    assert pred.chosen_index > 0 and pred.failure_p[pred.chosen_index] == 0.0
    assert not pred.collision_p.any()


def test_with_the_light_catalogue_parts_the_policy_s_grasp_is_kept(over_the_prism):
    state, chunk = over_the_prism
    cands, _ = wrist_variants(chunk, state.value("joint7.position"), 0.0, DT)
    pred = ArmPhysicsWorldModel(materials="normal").evaluate(state, cands)
    assert pred.failure_p[0] == 0.0 and pred.chosen_index == 0


@pytest.mark.parametrize("target", ["part_cube", None])
def test_a_grasp_is_judged_on_the_part_under_the_gripper_whatever_part_grounding_marked(over_the_prism, target):
    """Grounding marked another part as the target (or none): the fingers still close on the prism below them.

    Judged by the marked target alone, the narrow grasp of the slippery prism was predicted to hold (held-out seed
    400002 of the world-model bench: the target token sat on the cylinder 16 cm away).
    """
    state, chunk = over_the_prism
    rows = np.array(state.parts, float).reshape(-1, len(NAMES))
    rows[:, NAMES.index("is_target")] = [p == target for p in PARTS]
    marked = dataclasses.replace(state, parts=rows)
    cands, _ = wrist_variants(chunk, state.value("joint7.position"), 0.0, DT)
    pred = ArmPhysicsWorldModel(materials="hard").evaluate(marked, cands)
    assert pred.failure_p[0] == 1.0 and pred.failure_p[1:].min() == 0.0


def test_far_from_any_part_nothing_is_predicted_to_fail():
    sc = make_scenario("arm", HEAVY_PRISM_SEED)
    _, pos, _, _ = sc.joint_state()
    names = (*(f"joint{i}.position" for i in range(1, 8)), "gripper.position")
    state = WorldState("arm", pos[:8], names, parts=np.zeros((0, len(NAMES))), part_features=NAMES, dt=DT)
    hold = np.tile(pos[:8], (20, 1))
    pred = ArmPhysicsWorldModel().evaluate(state, hold[None])
    assert pred.failure_p[0] == 0.0 and pred.collision_p[0] == 0.0 and pred.chosen_index == 0


def test_wrist_variants_ramp_from_the_current_turn_and_keep_the_chosen_one_first():
    chunk = np.zeros((20, 8))
    cands, turns = wrist_variants(chunk, np.pi / 4, np.pi / 2, DT)
    assert turns[0] == pytest.approx(np.pi / 2) and len(turns) == 3
    np.testing.assert_allclose(cands[:, 0, 6], np.pi / 4, atol=0.05)  # no jump from where the wrist is
    np.testing.assert_allclose(cands[:2, -1, 6], turns[:2])  # a quarter turn or less is reached within the chunk
    assert abs(cands[2, -1, 6] - turns[2]) > 0.1  # three quarters (to -pi/2) takes longer
    assert np.abs(np.diff(cands[:, :, 6], axis=1)).max() / DT <= 2.5 * 1.01  # within the wrist's speed limit
    np.testing.assert_array_equal(cands[:, :, :6], 0.0)


class _VetoesEverything(WorldModel):
    """Predicts a collision for every candidate, as the physics copy did for every grasp variant on hard seed
    300006 from 1.5 s on (its fingers touched the table in the copy)."""

    name = "vetoes_everything"

    def predict(self, state, candidates):
        k = len(candidates)
        return np.ones(k), np.zeros(k), np.zeros(k)


def test_an_arm_whose_every_candidate_is_vetoed_holds_where_it_is(over_the_prism):
    """All vetoed: the arm holds its measured pose, not the vetoed chunk's first step, which crept along the vetoed
    descent a step per check and put the fingers on the table after five vetoes (in-process hard seed 300006)."""
    from physical_ai.policy.policy import TorchPolicy
    from physical_ai.world_model.checked_policy import WorldModelCheckedPolicy

    state, _ = over_the_prism
    policy = WorldModelCheckedPolicy(TorchPolicy(ROOT / "models" / "arm_pick", num_threads=1), _VetoesEverything(),
                                     k=3)
    names = policy.config.observation.state.names
    obs = {"state": np.array([state.value(n) for n in names]), "parts": state.parts, "instruction": "pick"}
    chunk = policy.infer(obs).values
    assert policy.last_prediction.chosen_index == -1
    measured = [state.value(f"{a}.position") for a in policy.config.action.names]
    np.testing.assert_allclose(chunk, np.tile(measured, (len(chunk), 1)), atol=1e-6)


def test_a_chunk_that_drives_the_fingers_through_the_table_is_predicted_to_collide(over_the_prism):
    """The copy plays each candidate through the arm's corrector (limits, jerk-limited tracking), which knows nothing
    of the table: a chunk ending 10 cm below the table top still hits it, and the expert's own chunk does not."""
    from physical_ai.sim.experts import ArmIK
    from physical_ai.sim.scenarios import TABLE_Z

    state, chunk = over_the_prism
    model = ArmPhysicsWorldModel(materials="normal")
    sc = model.sc
    ik = ArmIK(sc.model, sc.qadr, sc.dadr, sc.limits.lower, sc.limits.upper)
    q = np.array([state.value(f"joint{i}.position") for i in range(1, 8)])
    tcp, R = ik.tcp_pose(q)
    q_low, _ = ik.solve(np.array([tcp[0], tcp[1], TABLE_Z - 0.1]), R, q, q)
    down = np.column_stack([q + np.linspace(0.0, 1.0, 20)[:, None] * (q_low - q), np.full(20, 0.08)])
    pred = model.evaluate(state, np.stack([chunk, down]))
    assert pred.collision_p.tolist() == [0.0, 1.0]
    assert pred.chosen_index == 0

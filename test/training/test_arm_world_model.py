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
    return _belief(sc, _perceived_parts(sc)), _next_second(sc, expert)


def _perceived_parts(sc) -> np.ndarray:
    """The parts as perception reports them now: centres, canonical yaws, catalogue sizes, the grounded target."""
    base = sc.data.xpos[sc.robot_root]
    yaws = [np.arctan2(*sc.data.body(p).xmat.reshape(3, 3)[[1, 0], 0]) for p in PARTS]
    rows = part_rows(np.array([sc.part_position(p) - base for p in PARTS]), yaws, CATALOGUE.copy(),
                     [1.0] * len(PARTS), NAMES)
    rows[:, NAMES.index("is_target")] = [p == sc.target_part for p in PARTS]
    return rows


def _belief(sc, parts: np.ndarray) -> WorldState:
    """The joint state now (positions, gripper opening, velocities) with the given perceived parts."""
    _, pos, vel, _ = sc.joint_state()
    names = (*(f"joint{i}.position" for i in range(1, 8)), "gripper.position",
             *(f"joint{i}.velocity" for i in range(1, 8)))
    return WorldState("arm", np.concatenate([pos[:7], [pos[7]], vel[:7]]), names, parts=parts, part_features=NAMES,
                      dt=DT)


def _next_second(sc, expert) -> np.ndarray:
    """The expert's next second as a 20-step chunk (joints, gripper)."""
    t0 = sc.data.time
    return np.array([np.append(c["joint_positions"], c["gripper"])
                     for c in (expert.act({"time": t0 + DT * (i + 1)}) for i in range(20))])


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


class _FailsEverything(WorldModel):
    """Predicts every candidate's grasp to fail, none to collide (in-process hard seed 300024 from the first check)."""

    name = "fails_everything"

    def predict(self, state, candidates):
        k = len(candidates)
        return np.zeros(k), np.ones(k), np.zeros(k)


@pytest.mark.parametrize("model, lifted", [(_FailsEverything, True), (_VetoesEverything, False)])
def test_a_veto_for_predicted_failures_only_is_lifted_after_its_patience(over_the_prism, model, lifted):
    """Held above the part, the arm saw the same scene and the check vetoed the same grasps 60 times (in-process hard
    seed 300024): after FAILURE_VETO_PATIENCE such checks the policy's chunk goes. A predicted collision never."""
    from physical_ai.world_model.checked_policy import FAILURE_VETO_PATIENCE, WorldModelCheckedPolicy

    state, chunk = over_the_prism
    checks = FAILURE_VETO_PATIENCE + 2
    policy = WorldModelCheckedPolicy(_Scripted([chunk] * (2 * checks)), model(), k=3)  # type: ignore[arg-type]
    names = policy.config.observation.state.names
    obs = {"state": np.array([state.value(n) for n in names]), "parts": state.parts, "instruction": "pick"}
    chosen = [(policy.infer(obs), policy.last_prediction.chosen_index)[1] for _ in range(checks)]
    expected = [-1] * FAILURE_VETO_PATIENCE + [0, 0] if lifted else [-1] * (FAILURE_VETO_PATIENCE + 2)
    assert chosen == expected
    if lifted:
        # the policy's own chunk (its wrist ramped from the measured one, as every candidate's), not a hold
        np.testing.assert_allclose(policy._sent[:, [0, 1, 2, 3, 4, 5, 7]], chunk[:, [0, 1, 2, 3, 4, 5, 7]])
    policy.reset()  # a new episode starts patient again
    policy.infer(obs)
    assert policy.last_prediction.chosen_index == expected[0]


def _model_and_arm(state: WorldState):
    """A normal-catalogue arm model, an IK on its copy, and the belief's joints and tcp pose: (model, ik, q, tcp, R)."""
    from physical_ai.sim.experts import ArmIK

    model = ArmPhysicsWorldModel(materials="normal")
    sc = model.sc
    ik = ArmIK(sc.model, sc.qadr, sc.dadr, sc.limits.lower, sc.limits.upper)
    q = np.array([state.value(f"joint{i}.position") for i in range(1, 8)])
    return (model, ik, q, *ik.tcp_pose(q))


def test_a_chunk_that_drives_the_fingers_through_the_table_is_predicted_to_collide(over_the_prism):
    """The copy plays each candidate through the arm's corrector (limits, jerk-limited tracking), which knows nothing
    of the table: a chunk ending 10 cm below the table top still hits it, and the expert's own chunk does not."""
    from physical_ai.sim.scenarios import TABLE_Z

    state, chunk = over_the_prism
    model, ik, q, tcp, R = _model_and_arm(state)
    q_low, _ = ik.solve(np.array([tcp[0], tcp[1], TABLE_Z - 0.1]), R, q, q)
    down = np.column_stack([q + np.linspace(0.0, 1.0, 20)[:, None] * (q_low - q), np.full(20, 0.08)])
    pred = model.evaluate(state, np.stack([chunk, down]))
    assert pred.collision_p.tolist() == [0.0, 1.0]
    assert pred.chosen_index == 0


def test_a_contact_the_arm_is_in_already_is_not_the_candidate_s(over_the_prism):
    """Fingers on the table when the check starts: lifting away is no collision (counted, every candidate collided
    and the arm was held on the table for the rest of the episode: hard seed 300038 through the nodes, 45 vetoes);
    leaving and coming down onto it again is one."""
    from dataclasses import replace

    from physical_ai.sim.scenarios import TABLE_Z

    state, _ = over_the_prism
    model, ik, q, tcp, R = _model_and_arm(state)
    sc = model.sc
    q_touch, _ = ik.solve(np.array([tcp[0] - 0.08, tcp[1], TABLE_Z + 0.005]), R, q, q)  # beside the prism
    q_up, _ = ik.solve(np.array([tcp[0] - 0.08, tcp[1], TABLE_Z + 0.10]), R, q_touch, q_touch)
    values = state.state.copy()
    for i, name in enumerate(state.state_names):
        if name.startswith("joint") and name.endswith(".position"):
            values[i] = q_touch[int(name[5]) - 1]
        elif name.endswith(".velocity"):
            values[i] = 0.0
    touching = replace(state, state=values)
    model._place(touching, model._match(touching)[0])
    robot_contacts = sc.robot_geoms[sc.data.contact.geom[:sc.data.ncon]].sum(axis=1) == 1
    assert robot_contacts.any(), "the fingers do not touch the table: the test's premise"
    up = np.column_stack([q_touch + _ramp(10)[:, None] * (q_up - q_touch), np.full(10, 0.08)])
    stay_up, down_again = np.concatenate([up, up[-1:].repeat(10, axis=0)]), np.concatenate([up, up[::-1]])
    pred = model.evaluate(touching, np.stack([stay_up, down_again]))
    assert pred.collision_p.tolist() == [0.0, 1.0]


def _ramp(n: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(np.pi * np.arange(1, n + 1) / n)


def _aimed_beside(state: WorldState, chunk: np.ndarray, offset_m: np.ndarray) -> np.ndarray:
    """The chunk with its end moved `offset_m` horizontally (the joint change that moves its final tcp so)."""
    from physical_ai.sim.experts import ArmIK

    sc = ArmPhysicsWorldModel().sc
    ik = ArmIK(sc.model, sc.qadr, sc.dadr, sc.limits.lower, sc.limits.upper)
    q_end = chunk[-1, :7]
    tcp, R = ik.tcp_pose(q_end)
    q_off, err = ik.solve(tcp + np.array([*offset_m, 0.0]), R, q_end, q_end)
    assert err < 1e-3
    out = chunk.copy()
    out[:, :7] += q_off - q_end
    return out


@pytest.mark.parametrize("offset_m", [(0.05, 0.0), (0.0, -0.05)])
def test_a_grasp_aimed_beside_the_part_is_predicted_to_miss_and_its_recentred_variant_to_hold(over_the_prism,
                                                                                           offset_m):
    """The policy's failures on the hard variant were mostly its aim (fingers closing 5 cm beside the prism, seeds
    300000 and 300006), which no wrist turn helps: the model judges such a grasp where it would close, and offers the
    chunk moved over the perceived part, which ends within a centimetre of it."""
    state, chunk = over_the_prism
    beside = _aimed_beside(state, chunk, np.array(offset_m))
    model = ArmPhysicsWorldModel(materials="normal")
    centred = model.recentre(state, beside)
    assert centred is not None
    rows = np.asarray(state.parts).reshape(-1, len(NAMES))
    prism = rows[[p == "part_prism" for p in PARTS].index(True), :2] + model.base[:2]
    tcp, _ = model.ik.tcp_pose(centred[-1, :7])
    assert np.linalg.norm(tcp[:2] - prism) < 0.01
    assert model.recentre(state, chunk) is None  # the expert's own grasp is on the part already
    pred = model.evaluate(state, np.stack([beside, centred]))
    assert pred.failure_p.tolist() == [1.0, 0.0] and pred.chosen_index == 1
    assert not pred.collision_p.any()


class _Scripted:
    """Stands in for a policy: returns the given chunks in turn and records the observations it was shown."""

    def __init__(self, chunks: list[np.ndarray]) -> None:
        from physical_ai.policy.spec import load_config

        self.config = load_config(ROOT / "models" / "arm_pick")
        self.backend, self.chunks, self.seen = "scripted", list(chunks), []

    def _infer(self, obs):
        self.seen.append(obs)
        return self.chunks.pop(0)

    def reset(self):
        pass

    def executing(self, rows, delay_steps):
        pass


class _Verdicts(WorldModel):
    """Accepts every candidate at the first check, vetoes every one at the second."""

    name = "verdicts"

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def predict(self, state, candidates):
        self.calls += 1
        k = len(candidates)
        return np.zeros(k), np.full(k, float(self.calls > 1)), np.zeros(k)


def _holding_prism_turned(over_the_prism, turn: float, then_gripper: tuple[float, float] = (0.0, 0.08)):
    """A checked policy that chose a quarter-turned grasp and closed it on the prism, now measuring 70 mm; the
    policy's next chunk moves the gripper from `then_gripper[0]` to `then_gripper[1]`."""
    from physical_ai.world_model.checked_policy import WorldModelCheckedPolicy

    state, chunk = over_the_prism
    closing, then = chunk.copy(), chunk.copy()
    closing[:, 7] = np.linspace(0.08, 0.0, len(chunk))
    then[:, 7] = np.linspace(*then_gripper, len(chunk))
    scripted = _Scripted([closing, then])
    policy = WorldModelCheckedPolicy(scripted, _Verdicts(), k=3)  # type: ignore[arg-type]
    names = policy.config.observation.state.names
    obs = {"state": np.array([state.value(n) for n in names]), "parts": state.parts, "instruction": "pick"}
    policy.infer(obs)  # accepted: the fingers close
    policy.wrist_turn = turn
    held = dict(obs, state=obs["state"].copy())
    held["state"][names.index("gripper.position")] = 0.070  # across the prism's 70 mm side
    return policy, scripted, held, names


def test_a_veto_never_opens_the_fingers_on_a_held_part(over_the_prism):
    """Vetoed while holding, the arm holds its pose with the fingers as closed as last commanded: held at their
    measured opening they squeezed nothing and the lifted prism slid out (in-process hard seed 300000)."""
    policy, _, held, _ = _holding_prism_turned(over_the_prism, np.pi / 2)
    chunk = policy.infer(held).values
    assert policy.last_prediction.chosen_index == -1
    assert chunk[:, 7].max() <= 1e-9


def test_under_a_quarter_turn_the_policy_reads_the_held_prism_across_its_short_side(over_the_prism):
    """Turned, the fingers hold the prism across its 70 mm side, an opening the policy only saw with open fingers
    (it opened them again, in-process hard seeds 300000 and 300006): it is shown the 25 mm its own grasp reads."""
    policy, scripted, held, names = _holding_prism_turned(over_the_prism, np.pi / 2)
    policy.infer(held)
    shown = scripted.seen[-1]["state"]
    assert shown[names.index("gripper.position")] == pytest.approx(0.025)
    assert shown[names.index("joint7.position")] == pytest.approx(held["state"][names.index("joint7.position")]
                                                                  - np.pi / 2)
    policy, scripted, held, names = _holding_prism_turned(over_the_prism, 0.0)  # the policy's own grasp: as measured
    policy.infer(held)
    assert scripted.seen[-1]["state"][names.index("gripper.position")] == pytest.approx(0.070)


def test_a_part_held_across_its_long_side_is_carried_in_the_copy():
    """The heavy prism held at a quarter turn (across its 70 mm side) and lifted: the copy seats it in the fingers,
    where perception cannot place it (seen where it lay), and carries it as the true arm does. Placed where
    perceived and commanded from the measured opening, it slid out in every candidate (in-process hard seed
    300006, 54 vetoes while the true arm held the prism)."""
    sc = make_scenario("arm", HEAVY_PRISM_SEED, {"variant": "hard"})
    expert = ArmPickPlaceExpert(sc, yaw_offset=np.pi / 2)
    expert.reset(observe(sc))
    rows = _perceived_parts(sc)  # as last seen, on the table
    rest_z = sc.part_position(sc.target_part)[2]
    while sc.part_position(sc.target_part)[2] < rest_z + 0.03:  # closed and lifting
        apply(sc, expert.act(observe(sc)))
        sc.step(10)
        assert sc.data.time < 10.0, "the expert never lifted the prism"
    state, chunk = _belief(sc, rows), _next_second(sc, expert)
    assert 0.065 < state.value("gripper.position") < 0.075  # across the long side
    release = chunk.copy()
    release[:, 7] = np.linspace(0.0, 0.08, len(chunk))  # the fingers opening away from the bin: dropped
    pred = ArmPhysicsWorldModel(materials="hard").evaluate(state, np.stack([chunk, release]))
    assert pred.failure_p.tolist() == [0.0, 1.0] and pred.chosen_index == 0
    for action in chunk:  # and the true arm carries it on
        apply(sc, {"joint_positions": action[:7], "gripper": action[7]})
        sc.step(round(DT / sc.timestep))
    assert np.linalg.norm(sc.part_position(sc.target_part) - sc.data.site("tcp").xpos) < 0.04


def test_a_carry_predicted_to_drop_is_reported_but_not_stopped(over_the_prism):
    """Holding still does not keep a slipping part (in-process hard seeds 300006 and 300013: 54 vetoes each while the
    part slid down the fingers): a carry that keeps the fingers closed goes on, its predicted drop published."""
    policy, _, held, _ = _holding_prism_turned(over_the_prism, np.pi / 2, then_gripper=(0.0, 0.0))
    chunk = policy.infer(held).values
    pred = policy.last_prediction
    assert len(pred.failure_p) == 1  # holding: only the policy's carry is checked
    assert pred.chosen_index == 0 and pred.failure_p[0] == 1.0 and pred.risk == 1.0
    assert chunk[:, 7].max() <= 1e-9


class _Records(WorldModel):
    """Accepts (`veto` False) or vetoes every candidate for a collision, and keeps the candidates it was given."""

    name = "records"

    def __init__(self, veto: bool) -> None:
        super().__init__()
        self.veto, self.seen = veto, []

    def predict(self, state, candidates):
        self.seen.append(np.array(candidates))
        k = len(candidates)
        return np.full(k, float(self.veto)), np.zeros(k), np.zeros(k)


@pytest.mark.parametrize("veto", [False, True])
def test_the_check_starts_where_the_chunk_in_execution_leaves_the_arm(over_the_prism, veto):
    """Through the nodes a check took 0.4 s and more, while the robot played the chunk in execution: rolled out from
    the observation, the policy's chunk was judged clear of the table and the real arm, catching up with its fourth
    step, drove the fingers onto it (hard seed 300038: 4 collisions). Every candidate is rolled out from the rows the
    robot plays meanwhile, then its own; what is sent is the candidate itself, which the corrector takes (rows
    spliced in were refused as implausible, and shifted to continue from them, the arm lagged the policy's aim). A
    hold holds where those rows leave the arm, fingers no wider than they are."""
    from physical_ai.world_model.checked_policy import WorldModelCheckedPolicy

    state, chunk = over_the_prism
    model = _Records(veto)
    policy = WorldModelCheckedPolicy(_Scripted([chunk]), model, k=3)  # type: ignore[arg-type]
    names = policy.config.observation.state.names
    obs = {"state": np.array([state.value(n) for n in names]), "parts": state.parts, "instruction": "pick"}
    executing = chunk[::-1].copy()  # any rows unlike the policy's: the chunk backwards
    executing[:, 7] = 0.03
    policy.executing(executing, 3)
    sent = policy.infer(obs).values
    assert all(np.array_equal(c[:, :3], np.broadcast_to(executing[:3], c[:, :3].shape)) for c in model.seen)
    if veto:
        assert policy.last_prediction.chosen_index == -1
        np.testing.assert_array_equal(sent[:3], executing[:3])
        np.testing.assert_array_equal(sent[3:], np.broadcast_to(executing[2], sent[3:].shape))
    else:
        from physical_ai.control.arm import arm_corrector
        from physical_ai.sim.scenarios import ARM_JOINTS
        from physical_ai.training.envs import robot_params

        chosen = model.seen[0][policy.last_prediction.chosen_index]
        np.testing.assert_array_equal(sent[3:], chosen[3:])  # the rolled-out candidate from the row due on arrival
        cols = [0, 1, 2, 3, 4, 5, 7]
        np.testing.assert_array_equal(sent[:, cols], chunk[:, cols])  # the policy's own rows, not the executed ones
        corrector = arm_corrector(robot_params("arm", "trajectory_correction"), 0.001)
        check = corrector.check_chunk([*ARM_JOINTS, "gripper"], sent.ravel(), 0.0, DT, len(sent), 0.0)
        assert check.reference is not None, check.reasons  # the robot's corrector takes it


def test_the_rows_in_execution_apply_to_the_inference_they_were_given_for_only(over_the_prism):
    """An inference that raised leaves nothing behind: the next one, told of no chunk in execution (the runner after a
    reset), checks the policy's own rows."""
    from physical_ai.world_model.checked_policy import WorldModelCheckedPolicy

    class _RaisesFirst(_Scripted):
        def _infer(self, obs):
            if not self.seen:
                self.seen.append(obs)
                raise RuntimeError("backend error")
            return super()._infer(obs)

    state, chunk = over_the_prism
    model = _Records(veto=False)
    policy = WorldModelCheckedPolicy(_RaisesFirst([chunk]), model, k=3)  # type: ignore[arg-type]
    names = policy.config.observation.state.names
    obs = {"state": np.array([state.value(n) for n in names]), "parts": state.parts, "instruction": "pick"}
    executing = chunk[::-1].copy()
    policy.executing(executing, 3)
    with pytest.raises(RuntimeError):
        policy.infer(obs)
    policy.infer(obs)
    cols = [0, 1, 2, 3, 4, 5, 7]
    np.testing.assert_array_equal(model.seen[0][0][:, cols], chunk[:, cols])

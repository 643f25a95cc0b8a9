"""World-model API: choice and veto, the physics rollout's collision prediction, learned-model round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from physical_ai.world_model.api import Selection, WorldModel, WorldState, choose, sample_candidates
from physical_ai.world_model.learned import LearnedConfig, LearnedWorldModel, features, train_learned
from physical_ai.world_model.physics import AmrPhysicsWorldModel

STATE_NAMES = ("odom.x", "odom.y", "odom.yaw", "odom.vx", "odom.wz")
FEATS = ("x", "y", "length", "width", "vx", "vy", "class")


def test_choose_prefers_progress_and_vetoes_risk() -> None:
    rule = Selection(collision_weight=4.0, failure_weight=2.0, veto_threshold=0.5)
    scores, index, risk = choose(np.array([0.9, 0.0, 0.1]), np.zeros(3), np.array([1.0, 0.2, 0.8]), rule)
    assert index == 2 and risk == pytest.approx(0.1) and scores[0] < scores[2]
    _, index, risk = choose(np.array([0.9, 0.6]), np.array([0.0, 0.7]), np.array([1.0, 1.0]), rule)
    assert index == -1 and risk == 1.0


class _Scripted(WorldModel):
    """A sequential model whose verdict on candidate i is row i of `table` (collision, failure, progress)."""

    sequential = True

    def __init__(self, table: list[tuple[float, float, float]], rule: Selection | None = None) -> None:
        super().__init__(rule)
        self.table, self.predicted = np.array(table, dtype=float), []

    def predict(self, state: WorldState, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = self.table[[int(c[0, 0]) for c in candidates]]
        self.predicted.extend(int(c[0, 0]) for c in candidates)
        return rows[:, 0], rows[:, 1], rows[:, 2]


@pytest.mark.parametrize("table, keep_policy, predicted, chosen", [
    ([(0, 0, 0), (0, 0, 1), (0, 0, 1)], True, [0], 0),                   # the policy's chunk allowed: kept
    ([(0, 1, 1), (0, 0, 0), (0, 0, 1), (0, 0, 1)], True, [0, 1, 2], 2),  # stops at the first best-possible score
    ([(0, 1, 1), (0, 0, 0.5), (1, 0, 1)], True, [0, 1, 2], 1),           # none best: every candidate predicted
    ([(0, 1, 1), (1, 0, 1)], True, [0, 1], -1),                          # all vetoed
    ([(0, 0, 0.2), (0, 0, 1), (0, 0, 1)], False, [0, 1], 1),             # "best": the policy's chunk is not enough
])
def test_until_chosen_stops_at_the_choice_predicting_all_would_make(table, keep_policy, predicted, chosen) -> None:
    state = WorldState(embodiment="arm", state=np.zeros(1), state_names=("x",))
    cands = np.arange(len(table), dtype=float)[:, None, None] * np.ones((1, 3, 2))
    full = _Scripted(table, Selection(keep_policy=keep_policy)).evaluate(state, cands)
    model = _Scripted(table, Selection(keep_policy=keep_policy))
    lazy = model.evaluate(state, cands, until_chosen=True)
    assert model.predicted == predicted
    assert lazy.chosen_index == full.chosen_index == chosen and lazy.risk == full.risk
    assert np.isnan(lazy.failure_p[len(predicted):]).all()
    assert np.array_equal(lazy.failure_p[:len(predicted)], full.failure_p[:len(predicted)])


def test_sample_candidates_keeps_the_policy_chunk_first() -> None:
    chunk = np.tile([0.5, 0.0], (10, 1))
    c = sample_candidates(chunk, 5, np.array([0.3, 0.4]), np.random.default_rng(0), np.array([-1, -1.5]),
                          np.array([1, 1.5]))
    assert c.shape == (5, 10, 2) and np.array_equal(c[0], chunk)
    assert np.all(c[:, :, 0] <= 1.0) and np.any(np.abs(c[1:] - chunk).max(axis=(1, 2)) > 0.01)


def _state_with_worker_ahead(worker_y: float, worker_vy: float) -> WorldState:
    # robot in the main aisle at x = -1.5 heading +x at 1 m/s; a person crossing at x = 0 (1.5 m ahead)
    obstacles = np.array([[1.5, worker_y, 0.4, 0.4, 0.0, worker_vy, 1.0]])
    return WorldState(embodiment="amr", state=np.array([-1.5, 0.0, 0.0, 1.0, 0.0]), state_names=STATE_NAMES,
                      obstacles=obstacles, obstacle_features=FEATS, dt=0.1)


def test_physics_rollout_predicts_collision_with_crossing_worker() -> None:
    wm = AmrPhysicsWorldModel()
    full = np.tile([1.0, 0.0], (10, 1))
    stop = np.linspace([1.0, 0.0], [0.0, 0.0], 10)
    pred = wm.evaluate(_state_with_worker_ahead(-0.3, 0.0), np.stack([full, stop]))
    assert pred.collision_p[0] > 0.9, pred
    assert pred.collision_p[1] < pred.collision_p[0]
    assert pred.progress[0] > pred.progress[1]
    # with the aisle clear, full speed is safe and preferred
    clear = wm.evaluate(_state_with_worker_ahead(-4.5, 0.0), np.stack([full, stop]))
    assert clear.collision_p[0] == 0.0 and clear.chosen_index == 0


def test_learned_model_fits_and_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n, h = 600, 10
    cands = rng.uniform([-0.2, -1.0], [1.0, 1.0], (n, 1, 1, 2)) * np.ones((n, 1, h, 2))
    states = np.zeros((n, 5))
    obstacle = np.array([[1.0, 0.0, 0.4, 0.4, 0.0, 0.0, 1.0]])
    x = np.concatenate([features(s, obstacle, 7, c) for s, c in zip(states, cands, strict=True)])
    collision = (cands[:, 0, 0, 0] > 0.6).astype(float)  # driving fast at the person ahead collides
    progress = np.clip(cands[:, 0, 0, 0], 0, None) * 0.1
    layout = {"embodiment": "amr", "objects": "obstacles", "n_feat": 7, "horizon": h, "action_dim": 2}
    model = train_learned(x, collision, np.zeros(n), progress, layout, hidden=32, steps=600)
    model.save(tmp_path)
    loaded = LearnedWorldModel.load(tmp_path)
    assert isinstance(loaded.config, LearnedConfig)
    ws = WorldState(embodiment="amr", state=np.zeros(5), state_names=STATE_NAMES, obstacles=obstacle,
                    obstacle_features=FEATS)
    pred = loaded.evaluate(ws, np.stack([np.tile([0.95, 0.0], (h, 1)), np.tile([0.2, 0.0], (h, 1))]))
    assert pred.collision_p[0] > 0.5 > pred.collision_p[1]
    assert pred.chosen_index == 1
    with pytest.raises(ValueError, match="candidates"):
        loaded.evaluate(ws, np.zeros((2, 3, 2)))


def test_checked_policy_swaps_in_a_safe_candidate() -> None:
    from physical_ai.policy.defaults import default_config
    from physical_ai.policy.policy import Policy
    from physical_ai.world_model.checked_policy import WorldModelCheckedPolicy

    class FullSpeed(Policy):
        backend = "fake"

        def _infer(self, obs: dict) -> np.ndarray:
            return np.tile([1.0, 0.0], (self.config.chunk_length, 1))

    checked = WorldModelCheckedPolicy(FullSpeed(default_config("amr")), AmrPhysicsWorldModel(), k=4)
    state = _state_with_worker_ahead(-0.3, 0.0)
    obs = {"state": state.state, "obstacles": state.obstacles, "instruction": "drive"}
    result = checked.infer(obs)
    pred = checked.last_prediction
    assert pred is not None and pred.collision_p[0] > 0.9
    assert result.values[-1, 0] < 0.5  # not the policy's full-speed chunk: a slower or stopping one
    assert result.model_id.endswith("fake+wm_physics")


def test_checked_policy_gives_the_world_model_the_state_it_reads() -> None:
    """A pose-only policy (no velocity input) still has its chunks checked from the full odometry state."""
    from dataclasses import replace

    from physical_ai.policy.defaults import default_config
    from physical_ai.policy.policy import Policy
    from physical_ai.world_model.checked_policy import WorldModelCheckedPolicy

    class FullSpeed(Policy):
        backend = "fake"

        def _infer(self, obs: dict) -> np.ndarray:
            return np.tile([1.0, 0.0], (self.config.chunk_length, 1))

    config = default_config("amr")
    state_group = config.observation.state
    pose_only = replace(config, observation=replace(config.observation, state=replace(
        state_group, names=state_group.names[:3], units=state_group.units[:3], mean=state_group.mean[:3],
        std=state_group.std[:3])))
    checked = WorldModelCheckedPolicy(FullSpeed(pose_only), AmrPhysicsWorldModel(), k=4)
    state = _state_with_worker_ahead(-0.3, 0.0)
    obs = {"state": state.state[:3], "world_state": state.state, "obstacles": state.obstacles, "instruction": "go"}
    checked.infer(obs)
    assert checked.last_prediction is not None and checked.last_prediction.collision_p[0] > 0.9


def test_an_arm_policy_sees_its_own_wrist_while_the_check_turns_the_grasp() -> None:
    """After the check chose a quarter-turn grasp variant, the wrapped policy is shown its wrist without the turn
    (the world model still judges the measured one), and the turn goes on being laid over its chunks."""
    from physical_ai.policy.defaults import default_config
    from physical_ai.policy.policy import Policy
    from physical_ai.world_model.api import WorldModel
    from physical_ai.world_model.checked_policy import WorldModelCheckedPolicy

    config = default_config("arm")
    names = config.observation.state.names
    wrist = names.index("joint7.position")
    seen, judged = [], []

    class Hold(Policy):  # plans to keep its wrist where it sees it
        backend = "fake"

        def _infer(self, obs: dict) -> np.ndarray:
            seen.append(float(obs["state"][wrist]))
            return np.tile(np.append(np.full(7, obs["state"][wrist]), 0.08), (self.config.chunk_length, 1))

    class TurnedHolds(WorldModel):  # the grasp with the wrist where the policy keeps it fails, turned ones hold
        name = "fake"

        def predict(self, state, candidates):
            judged.append(state.value("joint7.position"))
            unturned = np.isclose(candidates[:, -1, wrist], 0.3)
            return np.zeros(len(candidates)), unturned.astype(float), np.zeros(len(candidates))

    checked = WorldModelCheckedPolicy(Hold(config), TurnedHolds(), k=3)
    state = np.zeros(len(names))
    state[wrist] = 0.3
    spec = config.observation
    obs = {"state": state, "parts": np.zeros((0, len(spec.parts.features.names))),
           "obstacles": np.zeros((0, len(spec.obstacles.features.names))), "instruction": "pick"}
    checked.infer(obs)
    assert checked.wrist_turn == pytest.approx(np.pi / 2)
    state[wrist] = 0.3 + np.pi / 2  # the arm has turned
    result = checked.infer(obs)
    assert seen == pytest.approx([0.3, 0.3])  # not the turned wrist
    assert judged == pytest.approx([0.3, 0.3 + np.pi / 2])
    assert result.values[-1, 6] == pytest.approx(0.3 + np.pi / 2)  # the turn stays on the chunk

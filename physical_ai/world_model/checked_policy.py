"""A policy wrapped with a world-model check: the drop-in the policy_inference node uses when enabled.

    policy = WorldModelCheckedPolicy(make_policy("torch", ckpt), AmrPhysicsWorldModel(), k=8)
    result = policy.infer(obs)          # the chosen candidate, or a stop/hold chunk when all were vetoed
    policy.last_prediction              # -> physical_ai_stack/WorldModelPrediction fields

Candidates are the policy's own chunk plus K-1 perturbations of it (see `api.sample_candidates`), the last one a
controlled stop for mobile bases. For an arm they are grasp variants instead: the policy's chunk with the wrist
(the last arm joint) turned to each of WRIST_TURNS relative to the policy's own wrist angle (a quarter turn either
way grasps a part across its other side); the first candidate keeps the turn chosen last, so the policy's chunk
runs unchanged until the world model predicts that its grasp fails. Where the chunk aims beside a perceived part, the
world model's `recentre` adds the chunk moved over that part, in each wrist turn (the policy's own chunk stays
first: it is kept unless predicted to fail, e.g. to miss). Once the fingers hold a part, only the policy's carry
is checked, and a predicted drop is reported without stopping it unless the chunk opens the fingers (holding still
does not keep a slipping part). Candidates are predicted in order until the choice is made (a rollout each: the
policy's chunk, when it passes, is the only one). An arm whose every candidate is predicted to fail, none to
collide, holds for FAILURE_VETO_PATIENCE checks and then runs the policy's chunk. Through the nodes every arm
candidate begins with the rows of the chunk in execution that the robot plays while the check runs
(`Policy.executing`), so the copy starts where the robot will be. The check runs inside `infer`,
so the node's asynchronous chunk runner, latency accounting and NaN handling apply unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from physical_ai.policy.policy import Policy
from physical_ai.world_model.api import Prediction, WorldModel, WorldState, sample_candidates
from physical_ai.world_model.arm_physics import HELD_OPENING_M

# Candidate spread per action unit: a tenth of a typical range (m/s, rad/s, rad, m).
DEFAULT_SPREAD = {"linear_x": 0.3, "angular_z": 0.4, "steering_angle": 0.05, "speed": 1.0, "gripper": 0.01}
WRIST_TURNS = (0.0, np.pi / 2, -np.pi / 2)  # arm grasp variants: wrist turn relative to the policy's [rad]
EMPTY_GRIP_M = 0.01  # fingers measuring less than this hold nothing (the narrowest part side is 25 mm) [m]
OPENING_MATCH_M = 0.005  # a gripper opening this close to a part's side is holding it across that side [m]
WRIST_TURN_SPEED = 2.5  # a change of turn is a cosine ramp peaking at this speed (the wrist's limit) [rad/s]
# An arm whose every candidate is predicted to miss or drop (none to collide) holds for this many checks, then runs
# the policy's chunk: held, it sees the same scene and the check gives the same verdict, so it would wait forever.
FAILURE_VETO_PATIENCE = 3


def wrist_variants(chunk: np.ndarray, wrist_now: float, keep: float, dt: float, wrist_column: int = 6
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Arm grasp variants of a chunk: (candidates (K, H, A), their wrist turns (K,)), `keep` first.

    Each candidate's wrist column is the policy's plus a turn that ramps from the arm's current turn
    (`wrist_now` minus the chunk's first wrist target) toward the candidate's at up to WRIST_TURN_SPEED; a turn
    too far to reach within the chunk is reached in the next ones.
    """
    chunk = np.asarray(chunk, dtype=np.float64)
    turns = np.array([keep, *(t for t in WRIST_TURNS if not np.isclose(t, keep))])
    now = wrist_now - chunk[0, wrist_column]
    delta = turns - now
    steps = np.maximum(1.0, np.ceil(np.pi * np.abs(delta) / (2 * WRIST_TURN_SPEED * dt)))  # cosine peak = speed
    t = np.arange(1, len(chunk) + 1)[None, :]
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.minimum(t / steps[:, None], 1.0))
    cands = np.repeat(chunk[None], len(turns), axis=0)
    cands[:, :, wrist_column] += now + delta[:, None] * ramp
    return cands, turns


class WorldModelCheckedPolicy(Policy):
    """Runs `policy`, scores K candidates with `world_model`, returns the chosen one (or a safe one if vetoed)."""

    def __init__(self, policy: Policy, world_model: WorldModel, k: int = 8, seed: int = 0) -> None:
        super().__init__(policy.config)
        self.backend = f"{policy.backend}+wm_{world_model.name}"
        self.policy, self.world_model, self.k = policy, world_model, k
        self.rng = np.random.default_rng(seed)
        names = policy.config.action.names
        self.spread = np.array([DEFAULT_SPREAD.get(n, 0.05) for n in names])
        self.last_prediction: Prediction | None = None
        self._stop_last = self.config.embodiment in ("amr", "vehicle")
        self._arm = self.config.embodiment == "arm"
        self.wrist_turn = 0.0  # arm: the grasp variant chosen last
        self._sent: np.ndarray | None = None  # the chunk returned last
        self._held_sides: tuple[float, float] | None = None  # (short, long) of a part held across its long side
        self._failure_vetoes = 0  # consecutive checks that vetoed every candidate for a predicted failure only
        self._prefix: np.ndarray | None = None  # arm: rows the robot plays before this check's chunk arrives

    def belief(self, obs: Mapping[str, Any]) -> WorldState:
        """WorldState from the same raw observation the policy sees."""
        spec = self.config.observation
        kwargs: dict[str, Any] = {}
        if spec.obstacles is not None:
            kwargs.update(obstacles=np.asarray(obs["obstacles"], float),
                          obstacle_features=spec.obstacles.features.names)
        if spec.parts is not None:
            kwargs.update(parts=np.asarray(obs["parts"], float), part_features=spec.parts.features.names)
        # "world_state": the state entries the world model reads, when they differ from the policy's
        if "world_state" in obs and self.world_model.state_names:
            state, names = obs["world_state"], self.world_model.state_names
        else:
            state, names = obs["state"], spec.state.names
        return WorldState(embodiment=self.config.embodiment, state=np.asarray(state, float), state_names=names,
                          dt=self.config.dt, **kwargs)

    def _policy_view(self, obs: Mapping[str, Any]) -> Mapping[str, Any]:
        """The observation as the wrapped policy is to see it: an arm's wrist without the grasp variant's turn.

        The turn is the check's, laid over the policy's chunks; seeing its wrist turned a quarter, the policy (which
        never saw that in training) wandered off the part it was grasping (in-process hard seed 300006: the turn
        chosen 0.8 s before the grasp, then the gripper drifted 15 cm away and never grasped).
        """
        if not (self._arm and self.wrist_turn):
            return obs
        names = self.config.observation.state.names
        state = np.array(obs["state"], dtype=np.float64)
        state[names.index("joint7.position")] -= self.wrist_turn
        opening = self._measured_opening(obs)
        if opening is not None:
            state[names.index("gripper.position")] = self._taught_opening(obs, opening)
        return {**obs, "state": state}

    def _measured_opening(self, obs: Mapping[str, Any]) -> float | None:
        """The gripper's measured opening [m]; None for a policy whose state has none."""
        names = self.config.observation.state.names
        if "gripper.position" not in names:
            return None
        return float(np.asarray(obs["state"])[names.index("gripper.position")])

    def _holding(self, obs: Mapping[str, Any]) -> bool:
        """The fingers are closed on a part: they measure more than an empty grip and less than open."""
        opening = self._measured_opening(obs)
        return opening is not None and EMPTY_GRIP_M < opening < HELD_OPENING_M

    def _opens_fingers(self, obs: Mapping[str, Any], chunk: np.ndarray) -> bool:
        """The chunk commands the gripper wider than it measures (a release)."""
        opening, actions = self._measured_opening(obs), self.config.action.names
        if opening is None or "gripper" not in actions:
            return False
        return bool(np.max(chunk[:, actions.index("gripper")]) > opening)

    def _taught_opening(self, obs: Mapping[str, Any], opening: float) -> float:
        """The gripper's opening as the policy's own grasp would read it, under a quarter-turned grasp.

        Turned, the fingers hold an oblong part across its long side: the hard prism read 70 mm, which the policy
        only ever saw with open fingers, and it opened them again with the prism lifted (in-process hard seeds
        300000, 300006). An opening within OPENING_MATCH_M of a perceived part's long side (one longer than its
        short side) reads as that part's short side; any other opening as measured. The sides are remembered
        while the fingers stay on them: a held part is often lost from sight under the fingers.
        """
        spec = self.config.observation.parts
        f = spec.features.names if spec is not None else ()
        if "parts" in obs and "size_x" in f and "size_y" in f:
            rows = np.asarray(obs["parts"], dtype=np.float64).reshape(-1, len(f))
            for short, long in rows[:, [f.index("size_x"), f.index("size_y")]]:
                if long - short > 2 * OPENING_MATCH_M and abs(opening - long) < OPENING_MATCH_M:
                    self._held_sides = (float(short), float(long))
        if self._held_sides is not None and abs(opening - self._held_sides[1]) < OPENING_MATCH_M:
            return self._held_sides[0]
        self._held_sides = None
        return opening

    def executing(self, rows: np.ndarray, delay_steps: int) -> None:
        """An arm's candidates begin with the rows the robot plays while the check runs (see `_infer`)."""
        self.policy.executing(rows, delay_steps)
        n = min(delay_steps, len(rows))
        self._prefix = np.array(rows[:n], dtype=np.float64) if self._arm and n > 0 else None

    def _infer(self, obs: Mapping[str, Any]) -> np.ndarray:
        prefix, self._prefix = self._prefix, None  # this inference's only: never a later one's, whatever is raised
        chunk = np.asarray(self.policy._infer(self._policy_view(obs)), dtype=np.float64)
        if not np.isfinite(chunk).all():
            return chunk  # the caller drops and counts non-finite chunks
        belief = self.belief(obs)
        holding = self._arm and self._holding(obs)
        if self._arm:
            wrist = float(np.asarray(obs["state"])[self.config.observation.state.names.index("joint7.position")])
            cands, turns = wrist_variants(chunk, wrist, self.wrist_turn, self.config.dt)
            if holding:  # the grasp is made: only the policy's carry is checked
                cands, turns = cands[:1], turns[:1]
            elif (centred := self.world_model.recentre(belief, chunk)) is not None:
                # aimed beside a part: the policy's grasp, then the recentred one in each turn
                more, more_turns = wrist_variants(centred, wrist, self.wrist_turn, self.config.dt)
                cands, turns = np.concatenate([cands[:1], more]), np.concatenate([turns[:1], more_turns])
        else:
            cands = sample_candidates(chunk, self.k, self.spread, self.rng)
        if self._stop_last and self.k > 2:
            cands[-2] = np.linspace(chunk[0], np.zeros(chunk.shape[1]), len(chunk))
            if self.config.embodiment == "amr":
                cands[-1] = np.linspace(chunk[0], [-0.3, 0.0], len(chunk))  # brake and back away
        rollouts = cands
        if prefix is not None and prefix.shape[1] == cands.shape[2]:
            # The robot plays the chunk in execution while the check runs (through the nodes on 2 cores: 0.4 s and
            # more), then the corrector takes the chosen chunk from the row due on its arrival. Rolled out from the
            # observation instead, the policy's chunk was judged clear of the table, and the real arm, catching up
            # with its fourth step, drove its fingers onto it (hard seed 300038 through the nodes: 4 collisions).
            # So the copy plays those rows, then the candidate's (its position controller takes the step as the
            # corrector would); the candidate itself is what is sent. Sent, the rows spliced in had made the
            # corrector refuse chunks as implausible, and shifted to continue from them, the arm lagged the policy's
            # aim. Neither version makes the check beat the policy alone through the nodes on 2 cores (hard seeds
            # 300040-300059: 0.65 shifted, 0.60 sent as is, 0.85 without the check; README, issue 18).
            prefix = prefix[:cands.shape[1]]
            rollouts = cands.copy()
            rollouts[:, :len(prefix)] = prefix
        else:
            prefix = None
        pred = self.world_model.evaluate(belief, rollouts, until_chosen=True)
        if (holding and pred.chosen_index < 0 and pred.collision_p[0] <= self.world_model.rule.veto_threshold
                and not self._opens_fingers(obs, cands[0])):
            # A carry predicted to drop its part is reported but not stopped: held still, the part slid out all the
            # same (in-process hard seeds 300006 and 300013: 54 vetoes each while the prism, then the cylinder,
            # slipped down the fingers). A chunk that opens the fingers, or collides, is still vetoed.
            pred = replace(pred, chosen_index=0, risk=float(max(pred.collision_p[0], pred.failure_p[0])))
        pred = self._patience(pred)
        self.last_prediction = pred
        if pred.chosen_index >= 0:
            if self._arm:
                self.wrist_turn = float(turns[pred.chosen_index])
            self._sent = cands[pred.chosen_index]
            return self._sent
        # every candidate vetoed: mobile bases brake to a stop, arms hold where they are
        if self._stop_last:
            return np.linspace(chunk[0], np.zeros(chunk.shape[1]), len(chunk))
        hold = self._measured_pose(obs, cands[0, 0])
        if prefix is not None:  # held where the chunk in execution leaves the arm, not pulled back to the observation
            last, actions = prefix[-1].copy(), self.config.action.names
            if "gripper" in actions:  # the fingers no wider than the hold would keep them
                last[actions.index("gripper")] = min(last[actions.index("gripper")], hold[actions.index("gripper")])
            hold = last
        self._sent = np.repeat(hold[None], len(chunk), axis=0)
        if prefix is not None:
            self._sent[:len(prefix)] = prefix
        return self._sent

    def _patience(self, pred: Prediction) -> Prediction:
        """An arm's veto for predicted failures only, lifted after FAILURE_VETO_PATIENCE checks in a row.

        Held above the part, the arm waited 60 checks for a grasp the check would accept (in-process hard seed
        300024, every candidate predicted to fail from the first check): the task failed for certain, where the
        policy's grasp might hold. The lifted veto sends the best-scored candidate predicted not to collide; a
        predicted collision is never lifted.
        """
        if not self._arm or pred.chosen_index >= 0:
            self._failure_vetoes = 0
            return pred
        no_collision = pred.collision_p <= self.world_model.rule.veto_threshold  # NaN (not predicted): False
        if not no_collision.any():
            return pred
        self._failure_vetoes += 1
        if self._failure_vetoes <= FAILURE_VETO_PATIENCE:
            return pred
        index = int(np.argmax(np.where(no_collision, pred.scores, -np.inf)))
        return replace(pred, chosen_index=index, risk=float(max(pred.collision_p[index], pred.failure_p[index])))

    def _measured_pose(self, obs: Mapping[str, Any], fallback: np.ndarray) -> np.ndarray:
        """The arm's measured pose as an action row; `fallback` is the vetoed chunk's first step.

        `fallback` stands for actions without a `<name>.position` state, and for a gripper closing tighter than it
        measures.

        Holding the vetoed chunk's first step instead crept along the vetoed motion, a step per check: the policy
        planned each chunk from where the arm had got to, and the arm came down onto the table after five vetoes
        (in-process hard seed 300006: six finger contacts).
        """
        names = self.config.observation.state.names
        state = np.asarray(obs["state"], float)
        pose = np.asarray(fallback, float).copy()
        for i, action in enumerate(self.config.action.names):
            if f"{action}.position" in names:
                measured = state[names.index(f"{action}.position")]
                # A gripper closed on a part measures the part's width: held there it would squeeze nothing and the
                # part slid out (in-process hard seed 300000, a lifted prism dropped after the veto of a chunk that
                # opened the fingers). A veto never opens them: the narrowest of the measured opening, the vetoed
                # chunk's first step and the last chunk sent.
                if action == "gripper":
                    sent = self._sent[:, i].min() if self._sent is not None else np.inf
                    pose[i] = min(measured, pose[i], sent)
                else:
                    pose[i] = measured
        return pose

    def health(self) -> str:
        """The wrapped backend's health."""
        return self.policy.health()

    @property
    def history_period_s(self) -> float:
        """The wrapped backend's observation-history period (0: none)."""
        return self.policy.history_period_s

    def observe(self, obs: Mapping[str, Any]) -> None:
        """Pass the control step's observation to the wrapped backend's history (as `_policy_view` shows it)."""
        self.policy.observe(self._policy_view(obs))

    def reset(self) -> None:
        """Reset the wrapped backend (and the arm's grasp variant)."""
        self.wrist_turn = 0.0
        self._sent = None
        self._held_sides = None
        self._failure_vetoes = 0
        self._prefix = None
        self.policy.reset()

    def close(self) -> None:
        """Close the wrapped backend."""
        self.policy.close()

"""The world-model interface the policy_inference node calls: score K candidate chunks, pick one or veto all.

    wm = LearnedWorldModel.load("models/amr_nav/world_model")        # or PhysicsWorldModel(...)
    pred = wm.evaluate(state, candidates)                            # candidates: (K, H, A) SI actions
    if pred.chosen_index >= 0: send(candidates[pred.chosen_index])   # else: every candidate vetoed, hold/stop

`state` is a `WorldState`: the policy's own observation (state vector in spec order, perceived obstacles and parts)
plus the names that say what each column means, so a model can be fed from the same observation the policy saw.
Scores, collision/failure probabilities and progress map one to one onto physical_ai_stack/WorldModelPrediction.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np


@dataclass
class WorldState:
    """What the robot believes now (never privileged simulator state)."""

    embodiment: str
    state: np.ndarray                           # (S,) in the order of `state_names`
    state_names: tuple[str, ...]
    obstacles: np.ndarray = field(default_factory=lambda: np.zeros((0, 7)))   # (n, F) base frame
    obstacle_features: tuple[str, ...] = ("x", "y", "length", "width", "vx", "vy", "class")
    parts: np.ndarray = field(default_factory=lambda: np.zeros((0, 7)))       # (m, F)
    part_features: tuple[str, ...] = ("x", "y", "z", "qx", "qy", "qz", "qw")
    goal: np.ndarray | None = None              # task goal in the state's frame (e.g. station x, y), if known
    dt: float = 0.1                             # [s] between chunk steps

    def value(self, name: str) -> float:
        """One named state entry."""
        return float(self.state[self.state_names.index(name)])


@dataclass(frozen=True)
class Prediction:
    """Per-candidate outcome predictions and the choice made from them."""

    scores: np.ndarray            # (K,) higher is better
    collision_p: np.ndarray       # (K,) [0, 1]
    failure_p: np.ndarray         # (K,) object dropped / grasp failed [0, 1]
    progress: np.ndarray          # (K,) predicted progress toward the goal over the chunk [0, 1]
    chosen_index: int             # -1: every candidate vetoed
    risk: float                   # risk of the chosen candidate (max of its probabilities), 1.0 when vetoed
    latency_ms: float
    model: str


@dataclass(frozen=True)
class Selection:
    """How predictions become a choice."""

    collision_weight: float = 4.0
    failure_weight: float = 2.0
    veto_threshold: float = 0.5   # a candidate whose collision or failure probability exceeds this is vetoed
    keep_policy: bool = True      # "check": keep candidate 0 (the policy's) unless vetoed; False: "best" score


def choose(collision_p: np.ndarray, failure_p: np.ndarray, progress: np.ndarray, rule: Selection
           ) -> tuple[np.ndarray, int, float]:
    """Scores, chosen index (-1 if all vetoed) and the chosen candidate's risk."""
    scores = progress - rule.collision_weight * collision_p - rule.failure_weight * failure_p
    risk = np.maximum(collision_p, failure_p)
    allowed = risk <= rule.veto_threshold
    if not allowed.any():
        return scores, -1, 1.0
    if rule.keep_policy and allowed[0]:
        return scores, 0, float(risk[0])
    masked = np.where(allowed, scores, -np.inf)
    index = int(np.argmax(masked))
    return scores, index, float(risk[index])


class WorldModel(ABC):
    """Predicts the outcome of candidate action chunks."""

    name = ""
    # Predictions cost one rollout per candidate (no batching): `evaluate(..., until_chosen=True)` stops at the choice.
    sequential = False
    # The state entries the model reads (e.g. odometry velocity a policy may not take); None = the policy's state.
    state_names: tuple[str, ...] | None = None

    def __init__(self, rule: Selection | None = None) -> None:
        self.rule = rule or Selection()

    def evaluate(self, state: WorldState, candidates: np.ndarray, until_chosen: bool = False) -> Prediction:
        """Predict each candidate's outcome and choose one (or veto all).

        Args:
            state: the current belief.
            candidates: (K, H, A) action chunks in SI units, action columns in the policy's order.
            until_chosen: for a `sequential` model, predict the candidates in order and stop once later ones
                cannot change the choice (the rule keeps an allowed policy chunk, or a candidate has the best
                score there is: no collision, no failure, full progress); the rest are NaN (not predicted). The
                choice is the one predicting them all would make.

        Raises:
            ValueError: candidates of the wrong shape or non-finite.
        """
        cand = np.asarray(candidates, dtype=np.float64)
        if cand.ndim != 3 or cand.shape[0] < 1:
            raise ValueError(f"candidates: expected (K, H, A), got shape {cand.shape}")
        if not np.isfinite(cand).all():
            raise ValueError("candidates: non-finite values")
        start = time.perf_counter()
        if until_chosen and self.sequential:
            collision_p, failure_p, progress = np.full((3, len(cand)), np.nan)
            for i in range(len(cand)):
                collision_p[i:i + 1], failure_p[i:i + 1], progress[i:i + 1] = self.predict(state, cand[i:i + 1])
                allowed = max(collision_p[i], failure_p[i]) <= self.rule.veto_threshold
                if allowed and ((i == 0 and self.rule.keep_policy)
                                or (collision_p[i] == 0 and failure_p[i] == 0 and progress[i] >= 1)):
                    break
        else:
            collision_p, failure_p, progress = self.predict(state, cand)
        scores, index, risk = choose(collision_p, failure_p, progress, self.rule)
        return Prediction(scores=scores, collision_p=collision_p, failure_p=failure_p, progress=progress,
                          chosen_index=index, risk=risk, latency_ms=(time.perf_counter() - start) * 1e3,
                          model=self.name)

    def recentre(self, state: WorldState, chunk: np.ndarray) -> np.ndarray | None:
        """A variant of `chunk` proposed from what the model perceives, or None (the default: none).

        The arm's physics model moves a grasp aimed beside a part onto it.
        """
        return None

    @abstractmethod
    def predict(self, state: WorldState, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(collision_p, failure_p, progress), each (K,)."""


def sample_candidates(chunk: np.ndarray, k: int, noise_std: np.ndarray, rng: np.random.Generator,
                      lower: np.ndarray | None = None, upper: np.ndarray | None = None) -> np.ndarray:
    """K candidates around a policy chunk: the chunk itself first, then copies with smooth random offsets.

    The offsets are a random constant plus a random linear drift over the chunk (scaled by `noise_std` per action
    channel), which is how a stochastic policy's samples differ: in intent, not in per-step jitter.
    """
    chunk = np.asarray(chunk, dtype=np.float64)
    h, a = chunk.shape
    ramp = np.linspace(0.0, 1.0, h)[None, :, None]
    offsets = rng.standard_normal((k - 1, 1, a)) + rng.standard_normal((k - 1, 1, a)) * ramp
    out = np.concatenate([chunk[None], chunk[None] + offsets * np.asarray(noise_std)[None, None, :]])
    if lower is not None and upper is not None:
        out = np.clip(out, lower, upper)
    return out

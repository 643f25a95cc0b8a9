"""VehicleEnv: the lane expert drives it, observations match the vehicle spec, the corrector core executes chunks."""

from __future__ import annotations

import numpy as np
import pytest

from physical_ai.policy.observation import pad_tokens
from physical_ai.training.envs import VEHICLE_TASK, VehicleEnv, make_env


@pytest.fixture()
def env() -> VehicleEnv:
    e = make_env("vehicle_lane", randomise=False, perception="node")
    assert isinstance(e, VehicleEnv)
    # lead car stopped 40 m along the lane: inside the LiDAR's range from the start
    e.scenario_options = lambda rng: {"obstacle_s": 40.0, "obstacle_speed": 0.0}
    e.randomise = True
    yield e
    e.close()


def _lead_in_base(e: VehicleEnv) -> np.ndarray:
    """Ground-truth lead car centre in base_link."""
    x, y, yaw = e.sc.base_pose()
    p = e.sc.data.xpos[e.sc.obstacle_bid][:2] - [x, y]
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([c * p[0] + s * p[1], -s * p[0] + c * p[1]])


def test_expert_steps_give_spec_observations(env: VehicleEnv) -> None:
    spec = env.spec
    assert spec.embodiment == "vehicle" and spec.action.names == ("steering_angle", "speed")
    assert spec.observation.state.names == ("odom.x", "odom.y", "odom.yaw", "odom.vx", "odom.wz")
    env.reset(3)
    lo, hi = env.action_limits()
    start = env.sc.base_pose()
    seen = 0
    for _ in range(20):
        obs = env.observe()
        assert set(obs) == set(spec.observation.groups())
        assert obs["state"].shape == (5,) and np.all(np.isfinite(obs["state"]))
        assert obs["instruction"] == VEHICLE_TASK
        feats = spec.observation.obstacles.features.names
        assert obs["obstacles"].ndim == 2 and obs["obstacles"].shape[1] == len(feats)
        values, mask = pad_tokens(obs["obstacles"], spec.observation.obstacles, "obstacles")
        assert values.shape == (spec.observation.obstacles.max_count, len(feats))
        assert mask.sum() == min(len(obs["obstacles"]), spec.observation.obstacles.max_count)
        if len(obs["obstacles"]):
            # the lead car is perceived where it is (cluster centres within a car length of the truth)
            truth = _lead_in_base(env)
            d = np.hypot(obs["obstacles"][:, 0] - truth[0], obs["obstacles"][:, 1] - truth[1])
            assert d.min() < 3.0
            seen += 1
        action = env.expert_action()
        assert action.shape == (2,) and np.all(action >= lo - 1e-9) and np.all(action <= hi + 1e-9)
        env.apply(action)
    assert seen >= 10  # tracked in most frames
    # the state is the map-frame pose: it matches the simulator's base pose, and the car drove along +x
    assert np.allclose(env.observe()["state"][:3], env.sc.base_pose(), atol=1e-9)
    assert env.sc.base_pose()[0] - start[0] > 3.0
    assert env.status().collisions == 0 and env.limit_violations == 0 and env.clamped_requests == 0


def test_corrector_core_executes_chunks_and_stops_behind_the_lead(env: VehicleEnv) -> None:
    env.reset(3)
    env.attach_corrector()
    gaps = []
    for _ in range(80):
        env.observe()  # feeds the tracked obstacles to the corrector
        # a policy that asks for 10 m/s straight ahead: the corrector must brake behind the lead car
        env.submit_chunk(np.tile([0.0, 10.0], (env.spec.chunk_length, 1)))
        env.apply(np.zeros(2))
        gaps.append(env.sc.gap)
        if abs(env.sc.speed()) < 0.05 and gaps[-1] < 20.0:
            break
    assert env.status().collisions == 0
    assert abs(env.sc.speed()) < 0.05
    assert gaps[-1] > 1.0  # stopped short of the lead car, not on it
    assert env.limit_violations == 0

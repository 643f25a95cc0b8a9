"""ArmEnv: perceived parts in base_link with the perception_fusion node's settings, grounded in the instruction."""

from __future__ import annotations

import numpy as np
import pytest

from physical_ai.training.envs import ArmEnv, make_env, robot_params


@pytest.fixture(scope="module")
def env() -> ArmEnv:
    e = make_env("arm")
    assert isinstance(e, ArmEnv)
    yield e
    e.close()


def test_parts_config_is_the_nodes(env: ArmEnv) -> None:
    fusion = robot_params("arm", "perception_fusion")
    env.reset(0)
    cfg = env.parts_cfg
    assert cfg.table_z == fusion["table_z_m"]
    assert cfg.workspace_x == (fusion["workspace_x_min_m"], fusion["workspace_x_max_m"])
    assert cfg.workspace_y == (fusion["workspace_y_min_m"], fusion["workspace_y_max_m"])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_exactly_the_named_part_is_the_target(env: ArmEnv, seed: int) -> None:
    env.reset(seed)
    obs = env.observe()
    names = env.spec.observation.parts.features.names
    assert obs["instruction"] == f"put the {env.sc.target_part.removeprefix('part_')} in the bin"
    parts = obs["parts"]
    assert parts.shape[1] == len(names) and 3 <= len(parts) <= env.spec.observation.parts.max_count
    targets = parts[parts[:, names.index("is_target")] == 1.0]
    assert len(targets) == 1
    # base_link frame (the node's base_frame): the base sits on the table top, 0.40 m above the world origin
    base = env.sc.data.xpos[env.sc.robot_root]
    truth = env.sc.part_position(env.sc.target_part) - base
    xyz = targets[0, [names.index(k) for k in ("x", "y", "z")]]
    assert np.linalg.norm(xyz[:2] - truth[:2]) < 0.015
    assert 0.0 < xyz[2] < 0.06

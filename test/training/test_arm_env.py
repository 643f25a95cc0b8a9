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


@pytest.mark.parametrize("seed", [1, 2, 5, 6])
def test_the_demonstrated_grasp_yaw_is_the_perceived_canonical_yaw(env: ArmEnv, seed: int) -> None:
    """The expert grasps at the yaw the policy can perceive (cube: up to a quarter turn; prism: a half turn)."""
    from physical_ai.sim import experts

    env.reset(seed)
    names = env.spec.observation.parts.features.names
    parts = env.observe()["parts"]
    target = parts[parts[:, names.index("is_target")] == 1.0][0]
    perceived = 2 * np.arctan2(target[names.index("qz")], target[names.index("qw")])
    obs = experts.observe(env.sc)
    R = env.expert._grasp_rotation(obs["target_part"], obs["bodies"][obs["target_part"]][3:])
    grasp = np.arctan2(R[1, 1], R[0, 1])  # the fingers close along the gripper's y axis
    assert abs(np.angle(np.exp(1j * (grasp - perceived)))) < np.radians(6)


def test_parts_start_resting_on_the_table(env: ArmEnv) -> None:
    """Every part starts on the table top (a cylinder's half-height is its second size, not its third)."""
    from physical_ai.sim.scenarios import PARTS, TABLE_Z

    env.reset(3)
    sc = env.sc
    for part in PARTS:
        z0 = sc.part_position(part)[2]
        sc.step(100)
        assert abs(sc.part_position(part)[2] - z0) < 0.002, part
        bottom = z0 - (sc.model.geom(f"{part}_geom").size[1] if part == "part_cylinder"
                       else sc.model.geom(f"{part}_geom").size[2])
        assert abs(bottom - TABLE_Z) < 0.002, part


def test_the_target_is_held_at_its_last_clear_fit_while_the_expert_grasps_it(env: ArmEnv) -> None:
    """The node's part memory in the env: one steady target token through the grasp, none once it is carried off."""
    fusion = robot_params("arm", "perception_fusion")
    env.reset(1)
    assert env.part_memory.cfg.hold_s == fusion["part_memory_hold_s"] > 0
    names = env.spec.observation.parts.features.names
    xy = [names.index("x"), names.index("y")]
    base = env.sc.data.xpos[env.sc.robot_root]
    truth = env.sc.part_position(env.sc.target_part)[:2] - base[:2]
    closed, carried = [], False
    for _ in range(200):
        parts = env.observe()["parts"]
        targets = parts[parts[:, names.index("is_target")] == 1.0]
        action = env.expert_action()
        if action[7] < 0.03 and not env.sc._lifted:  # fingers closing on the part: the hand hides it
            assert len(targets) == 1
            closed.append(np.linalg.norm(targets[0, xy] - truth))
        tcp = env.sc.data.site("tcp").xpos[:2] - base[:2]
        if env.sc._lifted and np.linalg.norm(tcp - truth) > 0.3:  # carried away: its old place is in view
            carried = True
            assert not any(np.linalg.norm(t[xy] - truth) < 0.03 for t in targets)
            break
        env.apply(action)
    assert len(closed) >= 3 and max(closed) < 0.015
    assert carried

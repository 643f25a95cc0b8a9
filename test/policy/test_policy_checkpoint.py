"""Checkpoint format: strict config validation, safetensors loading, torch vs ONNX equality, `physai export`."""

from __future__ import annotations

import argparse
import copy
import json
import pickle

import numpy as np
import pytest
import torch
from policy_testlib import make_checkpoint, raw_observation

from physical_ai.policy import export
from physical_ai.policy.defaults import default_config
from physical_ai.policy.model import build_model, count_parameters, load_checkpoint
from physical_ai.policy.observation import ObservationError, model_inputs, pad_tokens, tokenize_instruction
from physical_ai.policy.policy import make_policy
from physical_ai.policy.spec import ConfigError, check_compatible, load_config, parse_config


@pytest.fixture(scope="module")
def arm_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("arm_ckpt")
    make_checkpoint(path, "arm", small=False)
    export.export_onnx(path)
    return path


def _raw(embodiment: str = "arm") -> dict:
    return default_config(embodiment).to_json()


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda c: c.pop("dt"), "dt: missing"),
    (lambda c: c.update(dt="fast"), "dt: expected a number"),
    (lambda c: c.update(chunk_length=0), "chunk_length"),
    (lambda c: c.update(format_version=99), "format_version"),
    (lambda c: c["architecture"].update(n_heads=5), "architecture.n_heads"),
    (lambda c: c["architecture"].update(type="resnet"), "architecture.type"),
    (lambda c: c["observation"]["state"]["mean"].pop(), "observation.state.mean"),
    (lambda c: c["observation"]["state"]["std"].__setitem__(0, 0.0), "observation.state.std[0]"),
    (lambda c: c["observation"]["state"]["names"].__setitem__(0, "joint1.torque"), "observation.state.names"),
    (lambda c: c["observation"]["image"].update(shape=[1, 96, 96]), "observation.image.shape"),
    (lambda c: c["observation"]["parts"]["features"].__setitem__(0, "colour"), "observation.parts.features"),
    (lambda c: c["observation"].update(lidar={}), "observation: unknown groups ['lidar']"),
    (lambda c: c["action"]["names"].__setitem__(1, "joint1"), "action.names: duplicate"),
    (lambda c: c["action"].pop("units"), "action.units: missing"),
    (lambda c: c.update(observation={}), "observation: at least one"),
    (lambda c: c["observation"]["obstacles"].update(min_x="behind"), "observation.obstacles.min_x"),
])
def test_config_errors_name_the_field(mutate, field):
    raw = copy.deepcopy(_raw())
    mutate(raw)
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert field in str(info.value)


def test_config_round_trip_and_compatibility():
    config = default_config("amr")
    again = parse_config(json.loads(json.dumps(config.to_json())))
    assert again == config
    check_compatible(config, "amr", ["linear_x", "angular_z"])
    with pytest.raises(ConfigError, match="embodiment"):
        check_compatible(config, "arm")
    with pytest.raises(ConfigError, match=r"action\.names"):
        check_compatible(config, "amr", ["speed", "steering_angle"])


def test_objects_behind_min_x_are_no_tokens_and_the_bound_round_trips():
    raw = _raw("amr")
    raw["observation"]["obstacles"]["min_x"] = -0.5
    config = parse_config(json.loads(json.dumps(raw)))
    assert parse_config(config.to_json()) == config
    group = config.observation.obstacles
    rows = np.zeros((3, len(group.features.names)))
    rows[:, group.features.names.index("x")] = [2.0, -0.4, -2.3]  # ahead, beside the base, following behind
    values, mask = pad_tokens(rows, group, "obstacles")
    assert mask.sum() == 2
    assert sorted(values[mask > 0, group.features.names.index("x")]) == pytest.approx([-0.4, 2.0])
    assert "min_x" not in default_config("amr").to_json()["observation"]["obstacles"]


def test_load_config_errors_name_file_and_field(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="invalid JSON"):
        load_config(tmp_path)
    raw = _raw()
    raw["action"]["mean"] = [0.0]
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match=r"config.json: action.mean: expected a list of 8"):
        load_config(tmp_path)


def test_weights_must_match_config(tmp_path):
    make_checkpoint(tmp_path, "arm")
    raw = json.loads((tmp_path / "config.json").read_text())
    raw["architecture"]["d_model"] = 64
    raw["architecture"]["n_heads"] = 2
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="has shape"):
        load_checkpoint(tmp_path)


def test_pickle_is_never_loaded(tmp_path):
    make_checkpoint(tmp_path, "arm")
    # A pickle (what torch.save writes) in place of the safetensors file is refused, not unpickled.
    (tmp_path / "model.safetensors").write_bytes(pickle.dumps({"w": np.zeros(3)}))
    with pytest.raises(ConfigError, match="unreadable safetensors"):
        load_checkpoint(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match=r"model\.safetensors: not found"):
        make_policy("torch", tmp_path)


def test_default_models_are_small():
    for embodiment in ("arm", "amr", "vehicle"):
        n = count_parameters(build_model(default_config(embodiment)))
        assert 250_000 <= n <= 750_000, (embodiment, n)  # 1..3 MB of float32


def test_save_load_round_trip(tmp_path):
    config = make_checkpoint(tmp_path, "vehicle", seed=3)
    policy = make_policy("torch", tmp_path)
    obs = raw_observation(config)
    expected = build_model(config, seed=3)
    inputs = model_inputs(config, obs)
    with torch.inference_mode():
        want = expected(*(torch.from_numpy(inputs[n]) for n in expected.input_names))[0].numpy()
    got = policy.infer(obs)
    np.testing.assert_allclose(got.values, want, rtol=0, atol=1e-6)
    assert got.names == ("steering_angle", "speed") and got.dt == config.dt and got.values.shape == (10, 2)


def test_onnx_matches_torch(arm_ckpt):
    torch_policy = make_policy("torch", arm_ckpt)
    onnx_policy = make_policy("onnx", arm_ckpt, num_threads=1)
    for seed in range(5):
        obs = raw_observation(torch_policy.config, seed)
        a = torch_policy.infer(obs).values
        b = onnx_policy.infer(obs).values
        assert a.shape == b.shape == (20, 8)
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)
    # Different inputs must give different actions (the comparison above is not trivially of constants).
    assert not np.allclose(torch_policy.infer(raw_observation(torch_policy.config, 0)).values,
                           torch_policy.infer(raw_observation(torch_policy.config, 1)).values)


def test_physai_export_cli(tmp_path, capsys):
    make_checkpoint(tmp_path, "amr")
    parser = argparse.ArgumentParser()
    export.add_arguments(parser)
    assert export.run(parser.parse_args([str(tmp_path)])) == 0
    assert (tmp_path / "model.onnx").is_file()
    assert "max |onnx - torch|" in capsys.readouterr().out
    (tmp_path / "config.json").write_text("{}")
    assert export.run(parser.parse_args([str(tmp_path)])) == 1
    assert "format_version: missing" in capsys.readouterr().err


def test_onnx_backend_checks_inputs(tmp_path, arm_ckpt):
    make_checkpoint(tmp_path, "amr")
    with pytest.raises(ConfigError, match="not found"):
        make_policy("onnx", tmp_path)
    with pytest.raises(ConfigError, match=r"do not match config\.json"):
        make_policy("onnx", tmp_path, onnx_path=arm_ckpt / "model.onnx")


def test_observation_errors(arm_ckpt):
    policy = make_policy("torch", arm_ckpt)
    obs = raw_observation(policy.config)
    for key in ("image", "state", "parts", "instruction"):
        broken = dict(obs)
        del broken[key]
        with pytest.raises(ObservationError, match=key):
            policy.infer(broken)
    bad = dict(obs, state=np.full(15, np.nan))
    with pytest.raises(ObservationError, match="non-finite"):
        policy.infer(bad)
    with pytest.raises(ObservationError, match="state: expected 15"):
        policy.infer(dict(obs, state=np.zeros(3)))


def test_instruction_tokens_are_stable():
    a = tokenize_instruction("Pick the cube", 8, 512)
    assert a.tolist() == tokenize_instruction("pick  the CUBE!", 8, 512).tolist()
    assert (a[:3] > 0).all() and (a[3:] == 0).all()


def test_lerobot_backend_without_lerobot(arm_ckpt, tmp_path, monkeypatch):
    # LeRobot runs in its own environment; without one the backend says how to create it.
    monkeypatch.setenv("PHYSAI_LEROBOT_ENV", str(tmp_path / "no-env"))
    with pytest.raises(ConfigError, match=r"no LeRobot environment at .*no-env: create it with `physai lerobot setup`"):
        make_policy("lerobot", arm_ckpt, lerobot_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"set lerobot_dir .* or the uri"):
        make_policy("lerobot", arm_ckpt)


def test_unknown_backend(arm_ckpt):
    with pytest.raises(ConfigError, match="backend: 'tensorrt'"):
        make_policy("tensorrt", arm_ckpt)


def test_assemble_state_from_sources():
    from physical_ai.policy.observation import assemble_state

    yaw = 0.7
    pose = np.eye(4)
    pose[:2, :2] = [[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]
    pose[:2, 3] = [1.5, -2.0]
    twist = np.array([0.4, 0.0, 0.0, 0.0, 0.0, -0.3])
    state = assemble_state(["odom.x", "odom.y", "odom.yaw", "odom.vx", "odom.wz", "joint2.velocity",
                            "tactile.left.force", "tactile.left.slip"],
                           joints={"joint2": (0.1, 0.25, 0.0)}, odom=(pose, twist),
                           tactile={"left": (3.5, True, True)})
    np.testing.assert_allclose(state, [1.5, -2.0, yaw, 0.4, -0.3, 0.25, 3.5, 1.0])
    with pytest.raises(ObservationError, match="joint 'joint9'"):
        assemble_state(["joint9.position"], joints={"joint2": (0.0, 0.0, 0.0)})
    with pytest.raises(ObservationError, match="no odometry"):
        assemble_state(["odom.vx"])
    with pytest.raises(ObservationError, match="tactile pad 'right'"):
        assemble_state(["tactile.right.force"], tactile={"left": (1.0, False, False)})

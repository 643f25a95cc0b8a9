"""Request/response key maps for remote policies: presets, overrides, and nothing dropped silently."""

from __future__ import annotations

import numpy as np
import pytest

from physical_ai.policy.keymap import IGNORE, KeyMapError, make_keymap

ARM_GROUPS = ("image", "wrist_image", "state", "instruction")


def _obs(state_dim: int = 8) -> dict:
    return {"image": np.zeros((4, 4, 3), np.uint8), "wrist_image": np.ones((4, 4, 3), np.uint8),
            "state": np.arange(state_dim, dtype=np.float32), "instruction": "pick the cube"}


def test_libero_preset_round_trip() -> None:
    keys = make_keymap(ARM_GROUPS, "libero")
    request = keys.encode(_obs())
    assert sorted(request) == ["observation/image", "observation/state", "observation/wrist_image", "prompt"]
    assert request["prompt"] == "pick the cube"
    back = keys.decode(request)
    assert np.array_equal(back["wrist_image"], _obs()["wrist_image"]) and back["instruction"] == "pick the cube"


def test_droid_preset_splits_and_joins_the_state() -> None:
    keys = make_keymap(ARM_GROUPS, "droid", state_dim=8)
    request = keys.encode(_obs())
    assert list(request["observation/joint_position"]) == list(range(7))
    assert list(request["observation/gripper_position"]) == [7.0]
    assert "observation/exterior_image_1_left" in request and "observation/wrist_image_left" in request
    assert np.array_equal(keys.decode(request)["state"], np.arange(8))
    with pytest.raises(KeyMapError, match="cover the state's 9 values"):
        make_keymap(ARM_GROUPS, "droid", state_dim=9)


def test_every_group_must_be_carried_and_every_key_must_have_a_group() -> None:
    with pytest.raises(KeyMapError, match=r"\['obstacles'\] are not carried"):
        make_keymap(("image", "state", "obstacles"), "libero")
    with pytest.raises(KeyMapError, match="carry groups this policy's spec does not have"):
        make_keymap(("state",), "physai", ["observation/img=image"])
    with pytest.raises(KeyMapError, match="expected one of"):
        make_keymap(("state",), "physai", ["observation/x=depth"])
    with pytest.raises(KeyMapError, match="not one of"):
        make_keymap(("state",), "aloha")


def test_overrides_rename_a_camera_and_remove_keys() -> None:
    keys = make_keymap(("image", "state"), "lerobot", ["observation.images.top=", "observation.images.front=image"])
    assert sorted(keys.encode(_obs())) == ["observation.images.front", "observation.state"]


def test_server_side_ignores_preset_keys_of_absent_groups_and_refuses_unknown_keys() -> None:
    keys = make_keymap(("image", "state", "instruction"), "libero", server=True)
    assert keys.ignored_keys() == ["observation/wrist_image"]
    request = make_keymap(ARM_GROUPS, "libero").encode(_obs())
    obs = keys.decode(request)
    assert sorted(obs) == ["image", "instruction", "state"]
    with pytest.raises(KeyMapError, match=r"request keys \['observation/depth'\] are not in the key map"):
        keys.decode({**request, "observation/depth": np.zeros(3)})
    with pytest.raises(KeyMapError, match=r"request lacks \['observation/state'\]"):
        keys.decode({k: v for k, v in request.items() if k != "observation/state"})
    assert dict(keys.request)["observation/wrist_image"].group == IGNORE

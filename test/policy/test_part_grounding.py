"""The "is_target" part feature: the instruction's part name grounded in perceived part labels (one shared function)."""

from __future__ import annotations

import numpy as np
import pytest

from physical_ai.policy.observation import ObservationError, ground_parts, instruction_part_label, part_rows

NAMES = ("x", "y", "z", "size_x", "size_y", "size_z", "is_target")


def _parts() -> tuple[np.ndarray, list[str]]:
    rows = np.array([[0.40, -0.10, 0.02, 0.040, 0.040, 0.042, 0.0],     # cube
                     [0.50, 0.05, 0.02, 0.038, 0.035, 0.030, 0.0],      # cylinder
                     [0.45, 0.10, 0.02, 0.070, 0.025, 0.043, 0.0],      # prism, fitted as a box
                     [0.30, 0.38, 0.04, 0.180, 0.178, 0.070, 0.0]])     # the bin: also a "box", too wide to grasp
    return rows, ["cube", "cylinder", "box", "box"]


@pytest.mark.parametrize(("text", "label"), [("put the cube in the bin", "cube"),
                                              ("Put the PRISM in the bin", "box"),
                                              ("put the cylinder in the bin", "cylinder"),
                                              ("tidy up", None), ("", None)])
def test_instruction_names_a_perceived_label(text: str, label: str | None) -> None:
    assert instruction_part_label(text) == label


@pytest.mark.parametrize(("text", "flags"), [("put the cube in the bin", [1, 0, 0, 0]),
                                              ("put the cylinder in the bin", [0, 1, 0, 0]),
                                              ("put the prism in the bin", [0, 0, 1, 0]),
                                              ("wave", [0, 0, 0, 0])])
def test_only_the_named_graspable_part_is_the_target(text: str, flags: list[int]) -> None:
    values, labels = _parts()
    values[:, -1] = 7.0  # whatever was there is overwritten
    out = ground_parts(values, labels, text, NAMES)
    np.testing.assert_array_equal(out[:, -1], flags)
    np.testing.assert_array_equal(out[:, :-1], values[:, :-1])
    assert values[0, -1] == 7.0  # the input is not modified


def test_without_the_feature_values_pass_through_and_mismatches_are_errors() -> None:
    values, labels = _parts()
    out = ground_parts(values[:, :-1], labels, "put the cube in the bin", NAMES[:-1])
    np.testing.assert_array_equal(out, values[:, :-1])
    assert ground_parts(np.zeros((0, len(NAMES))), [], "put the cube in the bin", NAMES).shape == (0, len(NAMES))
    with pytest.raises(ObservationError, match="labels"):
        ground_parts(values, labels[:2], "put the cube in the bin", NAMES)


def test_node_part_messages_get_the_same_grounding() -> None:
    """policy_inference turns DetectedPartArray into features + labels and grounds them with the same function."""
    from geometry_msgs.msg import Vector3
    from physical_ai_stack.msg import DetectedPart, DetectedPartArray

    from physical_ai_nodes.policy_inference import part_features

    values, labels = _parts()
    msg = DetectedPartArray()
    for row, label in zip(values, labels, strict=True):
        part = DetectedPart(label=label, confidence=1.0, size=Vector3(x=row[3], y=row[4], z=row[5]))
        part.pose.pose.position.x, part.pose.pose.position.y, part.pose.pose.position.z = row[:3]
        msg.parts.append(part)
    features, got_labels = part_features(msg, NAMES)
    assert got_labels == labels
    # the training env's features of the same fits (identity orientation: yaw 0)
    expected = part_rows(values[:, :3], np.zeros(len(values)), values[:, 3:6], np.ones(len(values)), NAMES)
    np.testing.assert_allclose(features, expected)
    np.testing.assert_allclose(features[:, NAMES.index("size_x")], np.minimum(values[:, 3], values[:, 4]))
    for text in ("put the cube in the bin", "put the prism in the bin"):
        np.testing.assert_array_equal(ground_parts(features, got_labels, text, NAMES),
                                      ground_parts(expected, labels, text, NAMES))


POSE_NAMES = ("x", "y", "z", "qx", "qy", "qz", "qw", "size_x", "size_y", "size_z", "is_target")


@pytest.mark.parametrize(("sides", "period"), [((0.040, 0.041), np.pi / 2),   # cube: a quarter turn
                                               ((0.070, 0.025), np.pi),       # prism: a half turn
                                               ((0.181, 0.178), np.pi / 2)])  # bin
def test_part_pose_features_do_not_depend_on_the_fits_symmetric_choice(sides: tuple[float, float],
                                                                       period: float) -> None:
    """A fit may name either axis of a box and any of its symmetric yaws: the features must not change."""
    yaw = 0.3
    pos, size = np.array([[0.4, -0.1, 0.02]]), np.array([[*sides, 0.04]])
    ref = part_rows(pos, [yaw], size, [1.0], POSE_NAMES)
    for k in range(-3, 4):
        np.testing.assert_allclose(part_rows(pos, [yaw + k * period], size, [1.0], POSE_NAMES), ref, atol=1e-9)
    # the same box described along its other axis: yaw a quarter turn on, sides swapped
    swapped = np.array([[sides[1], sides[0], 0.04]])
    np.testing.assert_allclose(part_rows(pos, [yaw + np.pi / 2], swapped, [1.0], POSE_NAMES), ref, atol=1e-9)
    i = POSE_NAMES.index
    assert ref[0, i("size_x")] <= ref[0, i("size_y")]
    canonical = 2 * np.arctan2(ref[0, i("qz")], ref[0, i("qw")])
    assert np.pi / 2 - period / 2 - 1e-9 <= canonical < np.pi / 2 + period / 2


def test_node_and_env_features_agree_for_a_turned_quaternion() -> None:
    """policy_inference reads the yaw from the message's quaternion; a symmetric turn of the fit changes nothing."""
    from geometry_msgs.msg import Vector3
    from physical_ai_stack.msg import DetectedPart, DetectedPartArray

    from physical_ai_nodes.policy_inference import part_features

    msg = DetectedPartArray()
    for yaw in (0.2, 0.2 + np.pi):  # the prism's fit, either way round
        part = DetectedPart(label="box", confidence=0.9, size=Vector3(x=0.07, y=0.025, z=0.043))
        part.pose.pose.orientation.z, part.pose.pose.orientation.w = np.sin(yaw / 2), np.cos(yaw / 2)
        msg.parts.append(part)
    features, _ = part_features(msg, POSE_NAMES)
    np.testing.assert_allclose(features[0], features[1], atol=1e-9)
    np.testing.assert_allclose(features[0], part_rows(np.zeros((1, 3)), [0.2], [[0.07, 0.025, 0.043]], [0.9],
                                                      POSE_NAMES)[0], atol=1e-9)

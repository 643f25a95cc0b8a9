"""The "is_target" part feature: the instruction's part name grounded in perceived part labels (one shared function)."""

from __future__ import annotations

import numpy as np
import pytest

from physical_ai.policy.observation import ObservationError, ground_parts, instruction_part_label

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
    np.testing.assert_allclose(features[:, :-1], values[:, :-1])
    for text in ("put the cube in the bin", "put the prism in the bin"):
        np.testing.assert_array_equal(ground_parts(features, got_labels, text, NAMES),
                                      ground_parts(values, labels, text, NAMES))

"""The arm cell's perception: the robot's own points and the parts on the table are not obstacles; a hand is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from physical_ai.perception.camera import depth_to_points
from physical_ai.perception.classify import ClassifyConfig
from physical_ai.perception.lidar import CLASS_PART, CLASS_UNKNOWN, Cluster, SegmentationConfig
from physical_ai.perception.parts import Part, PartsConfig
from physical_ai.perception.pipeline import FrameInput, FusionPipeline, PipelineConfig, mark_parts
from physical_ai.perception.self_filter import BodySpheres, outside_spheres

ARM_XML = Path(__file__).resolve().parents[2] / "models" / "arm_cell" / "arm_cell.xml"
JOINTS = [f"joint{i}" for i in range(1, 8)]


def _overhead_view(boxes: list[tuple[tuple[float, float], tuple[float, float], float]]) -> np.ndarray:
    """Points an overhead depth camera sees of a table (z = 0) with boxes ((x, y) centre, (sx, sy) size, height)."""
    xs, ys = np.meshgrid(np.arange(0.0, 0.8, 0.005), np.arange(-0.4, 0.4, 0.005), indexing="ij")
    z = np.zeros_like(xs)
    for (cx, cy), (sx, sy), h in boxes:
        inside = (np.abs(xs - cx) <= sx / 2) & (np.abs(ys - cy) <= sy / 2)
        z[inside] = np.maximum(z[inside], h)
    return np.stack([xs, ys, z], axis=-1).reshape(-1, 3).astype(np.float32)


def test_outside_spheres_keeps_exactly_the_points_outside():
    rng = np.random.default_rng(0)
    pts = rng.uniform(-1, 1, (5000, 3))
    centres = np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]])
    radii = np.array([0.3, 0.2])
    keep = outside_spheres(pts, centres, radii)
    inside = (np.linalg.norm(pts[:, None] - centres, axis=2) <= radii).any(axis=1)
    np.testing.assert_array_equal(keep, ~inside)
    assert inside.sum() > 50
    assert outside_spheres(np.zeros((0, 3)), centres, radii).shape == (0,)
    assert outside_spheres(pts, np.zeros((0, 3)), np.zeros(0)).all()


def test_body_spheres_cover_the_links_pad_the_hand_and_include_the_base():
    plain = BodySpheres.from_file(ARM_XML, JOINTS, "col_", padding_m=0.02)
    padded = BodySpheres.from_file(ARM_XML, JOINTS, "col_", padding_m=0.02, hand_body="gripper_base",
                                   hand_padding_m=0.07, static_bodies=["base_link"])
    q = np.zeros(7)
    c0, r0 = plain.at(q)
    c1, r1 = padded.at(q)
    assert len(c1) == len(c0) + 1                      # the base's cylinder
    hand = r1[:len(r0)] > r0 + 0.03
    assert 0 < hand.sum() < len(r0)                    # only the gripper's spheres grow
    assert np.all(c0[hand, 2] > c0[~hand, 2].max() - 0.1)  # ...and they are the top of the upright arm
    with pytest.raises(ValueError, match="hand body"):
        BodySpheres.from_file(ARM_XML, JOINTS, "col_", hand_body="no_such_body")
    with pytest.raises(ValueError, match="static bodies"):
        BodySpheres.from_file(ARM_XML, JOINTS, "col_", static_bodies=["no_such_body"])


def test_mark_parts_tells_parts_from_a_hand_and_from_things_in_the_air():
    part = Part("cube", np.array([0.5, 0.0, 0.02]), 0.0, np.array([0.04, 0.04, 0.04]), np.eye(6), 1.0)
    on_part = Cluster(np.array([0.505, 0.0, 0.02]), np.array([0.06, 0.04, 0.04]), 0.0, 50)
    hand = Cluster(np.array([0.5, 0.02, 0.15]), np.array([0.1, 0.08, 0.3]), 0.0, 500)      # reaching down to it
    floating = Cluster(np.array([0.5, 0.0, 0.3]), np.array([0.04, 0.04, 0.04]), 0.0, 50)   # not on the table
    elsewhere = Cluster(np.array([0.2, 0.3, 0.02]), np.array([0.04, 0.04, 0.04]), 0.0, 50)
    clusters = [on_part, hand, floating, elsewhere]
    mark_parts(clusters, [part], table_z=0.0)
    assert [c.classification for c in clusters] == [CLASS_PART, CLASS_UNKNOWN, CLASS_UNKNOWN, CLASS_UNKNOWN]
    # Something of a size the cell does not handle is no part, even lying on the table where a part could be.
    on_part.classification = CLASS_UNKNOWN
    wide = Part("cube", np.array([0.5, 0.0, 0.02]), 0.0, np.array([0.06, 0.06, 0.04]), np.eye(6), 1.0)
    mark_parts([on_part], [wide], table_z=0.0, catalogue=np.array([[0.025, 0.07, 0.04], [0.18, 0.18, 0.07]]))
    assert on_part.classification == CLASS_UNKNOWN
    mark_parts([on_part], [part], table_z=0.0, catalogue=np.array([[0.04, 0.04, 0.04]]))
    assert on_part.classification == CLASS_PART
    # Half hidden under the gripper, a part is still that part; a flat hand the size of the bin is not the bin.
    half_seen = Part("cube", np.array([0.5, 0.0, 0.02]), 0.0, np.array([0.02, 0.04, 0.04]), np.eye(6), 1.0)
    flat_hand = Part("box", np.array([0.2, 0.3, 0.02]), 0.0, np.array([0.09, 0.17, 0.04]), np.eye(6), 1.0)
    under, hand_on_table = (Cluster(p.position.copy(), p.size.copy(), 0.0, 50) for p in (half_seen, flat_hand))
    mark_parts([under, hand_on_table], [half_seen, flat_hand], table_z=0.0,
               catalogue=np.array([[0.04, 0.04, 0.04], [0.18, 0.18, 0.07]]))
    assert (under.classification, hand_on_table.classification) == (CLASS_PART, CLASS_UNKNOWN)


def test_pipeline_drops_the_robot_keeps_a_hand_and_labels_the_part():
    """Depth-like points of a table scene: a part, the robot's link, a hand. Only the hand stays an obstacle."""
    part = ((0.5, -0.2), (0.04, 0.04), 0.04)
    link = ((0.3, 0.1), (0.08, 0.08), 0.5)       # the arm standing up through the view
    hand = ((0.6, 0.25), (0.08, 0.1), 0.3)
    depth = _overhead_view([part, link, hand])
    cfg = PipelineConfig(
        segmentation=SegmentationConfig(x_range=(-0.2, 1.0), y_range=(-0.6, 0.6), cell_size=0.02,
                                        ground_threshold=0.01, max_height=1.2, default_ground_z=0.0,
                                        min_cluster_points=10),
            classify=ClassifyConfig(vehicle_length_prior=0.0),
        parts=PartsConfig(table_z=0.0, workspace_x=(0.15, 0.8), workspace_y=(-0.55, 0.55)),
        people_detector="off", occupancy_enabled=False, part_catalogue=np.array([[0.04, 0.04, 0.04]]))
    body = (np.array([[0.3, 0.1, 0.1], [0.3, 0.1, 0.3], [0.3, 0.1, 0.5]]), np.full(3, 0.1))
    seen = FusionPipeline(cfg).process(FrameInput(stamp_ns=1, depth=[depth], body_spheres=body))
    classes = sorted((round(float(o.cluster.center[0]), 1), o.cluster.classification) for o in seen.obstacles)
    assert classes == [(0.5, CLASS_PART), (0.6, CLASS_UNKNOWN)]
    unfiltered = FusionPipeline(cfg).process(FrameInput(stamp_ns=1, depth=[depth]))
    assert len(unfiltered.obstacles) == 3   # without the filter the link is an obstacle too


def test_depth_back_projection_matches_the_pinhole_model():
    rng = np.random.default_rng(1)
    depth = rng.uniform(0.5, 2.0, (48, 64)).astype(np.float32)
    depth[3, 5] = np.nan
    depth[7, 9] = 0.0
    K = np.array([[60.0, 0.0, 31.5], [0.0, 61.0, 23.5], [0.0, 0.0, 1.0]])
    T = np.eye(4)
    T[:3, :3] = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    T[:3, 3] = [0.1, 0.2, 1.3]
    pts = depth_to_points(depth, K, T, stride=2, max_range=1.8)
    v, u = np.mgrid[0:48:2, 0:64:2]
    d = depth[::2, ::2]
    ok = np.isfinite(d) & (d > 0.05) & (d < 1.8)
    cam = np.stack([(u[ok] - 31.5) / 60.0 * d[ok], (v[ok] - 23.5) / 61.0 * d[ok], d[ok]], axis=1)
    np.testing.assert_allclose(pts, cam @ T[:3, :3].T + T[:3, 3], atol=1e-5)

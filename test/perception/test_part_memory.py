"""Part memory: a part the arm hides from the overhead camera keeps its last clear fit; forgotten when seen gone."""

from __future__ import annotations

import numpy as np

from physical_ai.perception.classify import ClassifyConfig
from physical_ai.perception.part_memory import PartMemory, PartMemoryConfig, robot_covers
from physical_ai.perception.parts import Part, PartsConfig
from physical_ai.perception.pipeline import FrameInput, FusionPipeline, PipelineConfig

CAMERA = np.array([0.4, 0.0, 1.0])
NO_ROBOT = (np.zeros((0, 3)), np.zeros(0))
MS = 1_000_000


def part(x: float, y: float, label: str = "cube", size: tuple[float, float, float] = (0.04, 0.04, 0.04)) -> Part:
    return Part(label=label, position=np.array([x, y, size[2] / 2]), yaw=0.0, size=np.array(size),
                covariance=np.eye(6), confidence=1.0)


def hand_at(x: float, y: float, z: float, r: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    return np.array([[x, y, z]]), np.array([r])


def test_robot_covers_uses_the_cameras_perspective_and_touching():
    pos = np.array([[0.4, 0.0, 0.02], [0.7, 0.0, 0.02]])
    sizes = np.full((2, 3), 0.04)
    # a sphere right above the first part, high up: its shadow covers that part only
    np.testing.assert_array_equal(robot_covers(pos, sizes, *hand_at(0.4, 0.0, 0.5), CAMERA, 0.0), [True, False])
    # a sphere half-way to the camera, 0.2 m beside the second part along the camera's ray: its shadow lands
    # twice as far from the camera axis (0.4 + 0.15 * 2 = 0.7), on the part
    np.testing.assert_array_equal(robot_covers(pos, sizes, *hand_at(0.55, 0.0, 0.52, 0.02), CAMERA, 0.0),
                                  [False, True])
    # a finger beside the part at its height (below its top): covered only when it is close
    assert robot_covers(pos[:1], sizes[:1], *hand_at(0.45, 0.0, 0.01, 0.01), CAMERA, 0.02)[0]
    assert not robot_covers(pos[:1], sizes[:1], *hand_at(0.52, 0.0, 0.01, 0.01), CAMERA, 0.02)[0]
    assert robot_covers(np.zeros((0, 3)), np.zeros((0, 3)), *hand_at(0.4, 0.0, 0.5), CAMERA, 0.0).shape == (0,)


def test_a_hidden_part_keeps_its_last_clear_fit_and_misfits_under_the_arm_are_dropped():
    mem = PartMemory(PartMemoryConfig(hold_s=5.0, margin_m=0.02))
    cube, cyl = part(0.4, 0.0), part(0.6, 0.2, "cylinder", (0.04, 0.04, 0.05))
    assert mem.update([cube, cyl], 0, NO_ROBOT, CAMERA) == [cube, cyl]
    # the hand comes down over the cube: the cube vanishes, and the gripper is fitted as a part beside it
    ghost = part(0.43, 0.03, "box", (0.03, 0.09, 0.2))
    out = mem.update([cyl, ghost], 500 * MS, hand_at(0.4, 0.0, 0.15), CAMERA)
    assert out[0] is cyl and out[1] is cube and len(out) == 2
    # still hidden 4 s after it was last seen: held; past hold_s: forgotten
    assert cube in mem.update([cyl], 4000 * MS, hand_at(0.4, 0.0, 0.15), CAMERA)
    assert cube in mem.update([cyl], 4900 * MS, hand_at(0.4, 0.0, 0.15), CAMERA)
    assert mem.update([cyl], 5100 * MS, hand_at(0.4, 0.0, 0.15), CAMERA) == [cyl]


def test_forgotten_when_its_place_is_seen_empty_or_it_is_seen_elsewhere_or_on_reset():
    mem = PartMemory(PartMemoryConfig(hold_s=5.0))
    cube = part(0.4, 0.0)
    mem.update([cube], 0, NO_ROBOT, CAMERA)
    assert mem.update([], 100 * MS, hand_at(0.4, 0.0, 0.15), CAMERA) == [cube]
    # picked: the hand moved away and the table shows where the cube was
    assert mem.update([], 200 * MS, hand_at(0.1, 0.4, 0.3), CAMERA) == []
    # seen elsewhere while its old place is still hidden: the held pose goes, the new one is reported
    mem.update([cube], 300 * MS, NO_ROBOT, CAMERA)
    moved = part(0.6, -0.2)
    assert mem.update([moved], 400 * MS, hand_at(0.4, 0.0, 0.15), CAMERA) == [moved]
    # a part of another kind seen elsewhere does not replace it
    mem.update([cube], 500 * MS, NO_ROBOT, CAMERA)
    prism = part(0.6, -0.2, "box", (0.025, 0.07, 0.04))
    assert mem.update([prism], 600 * MS, hand_at(0.4, 0.0, 0.15), CAMERA) == [prism, cube]
    mem.reset()
    assert mem.update([], 700 * MS, hand_at(0.4, 0.0, 0.15), CAMERA) == []
    # a clock that jumps back (a simulator reset) forgets too
    mem.update([cube], 800 * MS, NO_ROBOT, CAMERA)
    assert mem.update([], 10 * MS, hand_at(0.4, 0.0, 0.15), CAMERA) == []


def test_off_passes_every_fit_through():
    mem = PartMemory(PartMemoryConfig(hold_s=0.0))
    cube = part(0.4, 0.0)
    assert mem.update([cube], 0, hand_at(0.4, 0.0, 0.15), CAMERA) == [cube]
    assert mem.update([], MS, hand_at(0.4, 0.0, 0.15), CAMERA) == []


def _table_with_box(cx: float, cy: float) -> np.ndarray:
    xs, ys = np.meshgrid(np.arange(0.2, 0.8, 0.005), np.arange(-0.3, 0.3, 0.005), indexing="ij")
    z = np.where((np.abs(xs - cx) <= 0.02) & (np.abs(ys - cy) <= 0.02), 0.04, 0.0)
    return np.stack([xs, ys, z], axis=-1).reshape(-1, 3).astype(np.float32)


def test_pipeline_reports_the_hidden_part_until_reset():
    cfg = PipelineConfig(parts=PartsConfig(workspace_x=(0.2, 0.8), workspace_y=(-0.3, 0.3)), people_detector="off",
                         occupancy_enabled=False, part_memory=PartMemoryConfig(hold_s=5.0))
    pipe = FusionPipeline(cfg)
    seen = pipe.process(FrameInput(stamp_ns=0, depth=[_table_with_box(0.5, 0.1)], body_spheres=hand_at(0.1, -0.3, 0.6),
                                   depth_origin=CAMERA)).parts
    assert len(seen) == 1 and np.allclose(seen[0].position[:2], [0.5, 0.1], atol=0.01)
    # the arm over the part: the camera sees the hand (a 6 cm block at z 0.2 hiding the part), not the part
    hidden = _table_with_box(0.9, 0.9)
    over = (np.abs(hidden[:, 0] - 0.5) <= 0.05) & (np.abs(hidden[:, 1] - 0.1) <= 0.05)
    hidden[over, 2] = 0.2
    held = pipe.process(FrameInput(stamp_ns=100 * MS, depth=[hidden], body_spheres=hand_at(0.5, 0.1, 0.2, 0.06),
                                   depth_origin=CAMERA)).parts
    assert len(held) == 1 and np.allclose(held[0].position, seen[0].position)
    pipe.reset()
    after = pipe.process(FrameInput(stamp_ns=200 * MS, depth=[hidden], body_spheres=hand_at(0.5, 0.1, 0.2, 0.06),
                                    depth_origin=CAMERA)).parts
    assert after == []


def test_a_frame_without_depth_reports_no_part_search_not_an_empty_table():
    """A colour frame that triggered a cycle while depth was late (or came first after a reset) says nothing about
    the parts. Reported as an empty list, policy_inference planned a chunk on a table without parts, and the arm
    set off the wrong way at the start of every episode after the first (ROS eval, seeds 100006-100008)."""
    cfg = PipelineConfig(parts=PartsConfig(workspace_x=(0.2, 0.8), workspace_y=(-0.3, 0.3)), people_detector="off",
                         occupancy_enabled=False, part_memory=PartMemoryConfig(hold_s=5.0))
    pipe = FusionPipeline(cfg)
    assert pipe.process(FrameInput(stamp_ns=0, body_spheres=NO_ROBOT, depth_origin=CAMERA)).parts is None
    seen = pipe.process(FrameInput(stamp_ns=50 * MS, depth=[_table_with_box(0.5, 0.1)], body_spheres=NO_ROBOT,
                                   depth_origin=CAMERA)).parts
    assert len(seen) == 1
    assert pipe.process(FrameInput(stamp_ns=100 * MS, body_spheres=NO_ROBOT, depth_origin=CAMERA)).parts is None
    again = pipe.process(FrameInput(stamp_ns=150 * MS, depth=[_table_with_box(0.5, 0.1)], body_spheres=NO_ROBOT,
                                    depth_origin=CAMERA)).parts
    assert len(again) == 1 and np.allclose(again[0].position, seen[0].position, atol=0.005)
    # without a depth view configured at all, no part search either
    assert FusionPipeline(PipelineConfig(people_detector="off", occupancy_enabled=False)).process(
        FrameInput(stamp_ns=0, depth=[_table_with_box(0.5, 0.1)])).parts is None


def test_a_cluster_where_a_hidden_part_is_stays_a_part_when_gripper_remnants_spoil_its_fit():
    """The arm over a part leaves points of its fingers beside it: the part's fit grows beyond the catalogue, yet the
    cluster there is the remembered part, not an obstacle the arm would back away from."""
    from physical_ai.perception.lidar import CLASS_PART, CLASS_UNKNOWN, SegmentationConfig

    def view(remnant: bool) -> np.ndarray:
        xs, ys = np.meshgrid(np.arange(0.2, 0.8, 0.005), np.arange(-0.3, 0.3, 0.005), indexing="ij")
        z = np.where((np.abs(xs - 0.5) <= 0.02) & (np.abs(ys - 0.1) <= 0.02), 0.04, 0.0)
        if remnant:  # a fingertip's last points, touching the part's side
            z[(xs > 0.52) & (xs <= 0.545) & (np.abs(ys - 0.1) <= 0.01)] = 0.03
        return np.stack([xs, ys, z], axis=-1).reshape(-1, 3).astype(np.float32)

    def pipeline(memory: bool) -> FusionPipeline:
        return FusionPipeline(PipelineConfig(
            segmentation=SegmentationConfig(x_range=(0.15, 0.85), y_range=(-0.35, 0.35), cell_size=0.02,
                                            ground_threshold=0.01, max_height=1.2, default_ground_z=0.0,
                                            min_cluster_points=10),
            classify=ClassifyConfig(vehicle_length_prior=0.0),
            parts=PartsConfig(workspace_x=(0.2, 0.8), workspace_y=(-0.3, 0.3)), people_detector="off",
            occupancy_enabled=False, part_catalogue=np.array([[0.04, 0.04, 0.04]]),
            part_memory=PartMemoryConfig(hold_s=5.0 if memory else 0.0)))

    far, above = hand_at(0.2, -0.3, 0.6), hand_at(0.5, 0.1, 0.25)  # the hand high above the part: no points removed
    classes = {}
    for memory in (False, True):
        pipe = pipeline(memory)
        pipe.process(FrameInput(stamp_ns=0, depth=[view(False)], body_spheres=far, depth_origin=CAMERA))
        out = pipe.process(FrameInput(stamp_ns=100 * MS, depth=[view(True)], body_spheres=above, depth_origin=CAMERA))
        near = [o.cluster for o in out.obstacles if np.hypot(*(o.cluster.center[:2] - [0.5, 0.1])) < 0.03]
        assert len(near) == 1
        classes[memory] = near[0].classification
    assert classes == {False: CLASS_UNKNOWN, True: CLASS_PART}

"""Perception that holds on real sensors: classes from evidence, ground from the mount, the robot's own body removed,
one parameter table, the camera detector off the LiDAR path (issue 21, issue 15 item 6)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from testdata import DATASETS

from physical_ai.bringup.stack import node_params, source_root
from physical_ai.perception.classify import ClassifyConfig, classify_clusters
from physical_ai.perception.datasets import load_nuscenes
from physical_ai.perception.detector_thread import DetectorThread
from physical_ai.perception.evaluation import evaluate, frame_input
from physical_ai.perception.lidar import (
    CLASS_PERSON,
    CLASS_STATIC,
    CLASS_UNKNOWN,
    CLASS_VEHICLE,
    SegmentationConfig,
    segment,
)
from physical_ai.perception.params import PARAMS, pipeline_config
from physical_ai.perception.pipeline import FrameInput, FusionPipeline, PipelineConfig

NUSCENES = DATASETS / "nuscenes_sample"


def _block(rng, lo, hi, n):
    return rng.uniform(lo, hi, (n, 3))


def _floor(rng, n=20000, extent=12.0, z=0.0):
    xy = rng.uniform(-extent, extent, (n, 2))
    return np.column_stack([xy, z + rng.normal(0, 0.01, n)])


def _classes(points, cfg=None):
    cfg = cfg or SegmentationConfig(x_range=(-12, 12), y_range=(-12, 12), cell_size=0.1, ground_threshold=0.05,
                                    max_height=2.5)
    seg = segment(np.asarray(points, np.float32), cfg)
    classify_clusters(seg.clusters, cfg.max_height, ClassifyConfig())
    return seg, {tuple(np.round(c.center[:2]).astype(int)): c.classification for c in seg.clusters}


def test_slivers_floating_points_and_cut_columns_are_not_people_a_standing_person_is():
    rng = np.random.default_rng(0)
    person = _block(rng, (3.8, 1.8, 0.05), (4.2, 2.2, 1.75), 400)        # 0.4 x 0.4 x 1.7, on the floor
    door_frame = _block(rng, (6.0, -3.05, 0.05), (6.05, -2.95, 2.0), 300)  # a 5 cm sliver of a frame or desk leg
    foliage = _block(rng, (-4.2, 4.0, 1.6), (-3.8, 4.4, 1.75), 200)       # a floating branch at head height
    column = _block(rng, (-6.2, -6.2, 0.05), (-5.8, -5.8, 3.0), 500)      # continues above the height cut-off
    _, classes = _classes(np.concatenate([_floor(rng), person, door_frame, foliage, column]))
    assert classes[(4, 2)] == CLASS_PERSON
    assert classes[(6, -3)] == CLASS_UNKNOWN
    assert classes[(-4, 4)] == CLASS_UNKNOWN
    assert classes[(-6, -6)] == CLASS_UNKNOWN


def test_barriers_and_canopies_are_not_vehicles_a_car_is():
    rng = np.random.default_rng(1)
    car = _block(rng, (5.0, -1.0, 0.3), (9.4, 0.8, 1.5), 3000)
    barrier_row = _block(rng, (-8.0, 5.0, 0.05), (-2.0, 5.3, 0.95), 800)   # a 6 m row of 1 m barriers
    canopy = _block(rng, (-9.0, -8.0, 1.3), (-5.0, -6.5, 2.4), 800)        # a tree crown over the road
    seg_cfg = SegmentationConfig(x_range=(-12, 12), y_range=(-12, 12), cell_size=0.2, ground_threshold=0.25,
                                 max_height=3.5)
    _, classes = _classes(np.concatenate([_floor(rng), car, barrier_row, canopy]), seg_cfg)
    assert classes[(7, 0)] == CLASS_VEHICLE
    assert classes[(-5, 5)] == CLASS_UNKNOWN
    assert classes[(-7, -7)] == CLASS_UNKNOWN


def test_a_row_of_touching_barriers_is_reported_in_pieces_a_car_side_is_not():
    rng = np.random.default_rng(6)
    row = _block(rng, (-8.0, 5.0, 0.3), (-2.0, 5.3, 0.95), 800)          # three 2 m barriers that touch
    car_side = _block(rng, (3.0, -4.0, 0.3), (7.4, -3.8, 1.5), 1500)      # a car seen side-on: as thin, taller
    cfg = SegmentationConfig(x_range=(-12, 12), y_range=(-12, 12), cell_size=0.2, ground_threshold=0.25,
                             max_height=3.5)
    pipe = FusionPipeline(PipelineConfig(segmentation=cfg, people_detector="off", occupancy_enabled=False))
    res = pipe.process(FrameInput(stamp_ns=0, clouds=[np.concatenate([_floor(rng), row, car_side]).astype(
        np.float32)]))
    pieces = sorted(float(o.cluster.center[0]) for o in res.obstacles if o.cluster.center[1] > 4)
    assert np.allclose(pieces, [-7, -5, -3], atol=0.3)
    car = [o.cluster for o in res.obstacles if o.cluster.center[1] < -2]
    assert len(car) == 1 and car[0].classification == CLASS_VEHICLE


def _tracking_pipeline(x_range: tuple[float, float]) -> FusionPipeline:
    """A LiDAR-only pipeline on a flat floor (5 cm ground threshold), tracking over successive frames."""
    return FusionPipeline(PipelineConfig(segmentation=SegmentationConfig(x_range=x_range, y_range=(-10, 10),
                                                                         cell_size=0.1, ground_threshold=0.05),
                                         people_detector="off", occupancy_enabled=False))


def test_a_walking_person_shaped_track_becomes_a_person_a_standing_one_does_not():
    """Wider than a standing person (swinging legs, carrying something): only its motion makes it a person."""
    rng = np.random.default_rng(2)
    pipe = _tracking_pipeline(x_range=(-10, 10))
    floor = _floor(rng, 8000, 10.0)
    for k in range(8):
        x = 2.0 + 1.2 * 0.1 * k
        walker = _block(rng, (x - 0.5, 1.8, 0.05), (x + 0.5, 2.2, 1.7), 300)    # 1.0 x 0.4 m footprint
        stander = _block(rng, (-4.5, -3.2, 0.05), (-3.5, -2.8, 1.7), 300)
        res = pipe.process(FrameInput(stamp_ns=k * 100_000_000,
                                      clouds=[np.concatenate([floor, walker, stander]).astype(np.float32)]))
    by_y = {round(float(o.cluster.center[1])): o.cluster.classification for o in res.obstacles}
    assert by_y[2] == CLASS_PERSON and by_y[-3] == CLASS_UNKNOWN


def test_a_track_seen_as_a_person_stays_one_while_its_shape_allows_it():
    """A worker classed a person by shape, then wider than a standing person (legs apart, an arm out) before its
    track has walked three frames: still a person. Its twin, the same wide box never seen narrow, is not one."""
    rng = np.random.default_rng(3)
    pipe = _tracking_pipeline(x_range=(-10, 10))
    floor = _floor(rng, 8000, 10.0)
    for k in range(4):
        half = 0.2 if k == 0 else 0.5          # 0.4 m on the first frame, 1.0 m after
        worker = _block(rng, (2.0 - half, 1.8, 0.05), (2.0 + half, 2.2, 1.7), 300)
        twin = _block(rng, (-4.5, -3.2, 0.05), (-3.5, -2.8, 1.7), 300)
        res = pipe.process(FrameInput(stamp_ns=k * 100_000_000,
                                      clouds=[np.concatenate([floor, worker, twin]).astype(np.float32)]))
        by_y = {round(float(o.cluster.center[1])): o.cluster.classification for o in res.obstacles}
        assert by_y[2] == CLASS_PERSON and by_y[-3] == CLASS_UNKNOWN, k
    # wider than a person even walking (moving_length 1.2 m): no longer one
    wide = _block(rng, (0.8, 1.8, 0.05), (3.2, 2.2, 1.7), 600)
    res = pipe.process(FrameInput(stamp_ns=4 * 100_000_000, clouds=[np.concatenate([floor, wide]).astype(np.float32)]))
    assert len(res.obstacles) == 1 and res.obstacles[0].cluster.classification != CLASS_PERSON


def test_ground_comes_from_the_mount_when_desks_outnumber_the_floor():
    """Indoors, little floor in view and benches at 0.45 m over most of it: the fit may only refine the mount's
    plane, so the benches stay obstacles; with no floor at all the mount's plane is used and the reason reported."""
    rng = np.random.default_rng(3)
    floor = _floor(rng, 1500, 1.5)                                          # floor only right around the robot
    benches = np.concatenate([_block(rng, (x, y, 0.44), (x + 2.5, y + 2.5, 0.46), 4000)
                              for x in (-9, -5, 2, 6) for y in (-9, -5, 2, 6)])
    cfg = SegmentationConfig(x_range=(-12, 12), y_range=(-12, 12), cell_size=0.1, ground_threshold=0.05)
    seg = segment(np.concatenate([floor, benches]).astype(np.float32), cfg)
    assert abs(seg.plane[3]) < 0.05 and seg.plane[2] > 0.999
    assert sum(c.num_points for c in seg.clusters) > 0.9 * len(benches)
    seg = segment(benches.astype(np.float32), cfg)
    assert seg.ground_status in ("offset", "few_ground_points") and np.allclose(seg.plane, [0, 0, 1, 0])


def test_ground_fit_refines_a_slightly_tilted_mount():
    rng = np.random.default_rng(4)
    xy = rng.uniform(-20, 20, (20000, 2))
    floor = np.column_stack([xy, 0.03 * xy[:, 0] + 0.08 + rng.normal(0, 0.02, len(xy))])  # 1.7 deg, 8 cm up
    seg = segment(floor.astype(np.float32), SegmentationConfig(x_range=(-20, 20), y_range=(-20, 20)))
    assert seg.ground_status == "fit" and abs(seg.plane[0] + 0.03) < 0.005 and abs(seg.plane[3] + 0.08) < 0.03
    assert seg.clusters == []


def test_the_robots_own_body_is_cropped():
    rng = np.random.default_rng(5)
    roof = _block(rng, (-0.5, -0.8, 1.4), (2.0, 0.8, 1.6), 3000)
    person = _block(rng, (5.8, -0.2, 0.05), (6.2, 0.2, 1.75), 300)
    cfg = SegmentationConfig(x_range=(-12, 12), y_range=(-12, 12), self_crop_box=np.array([-1, 3.5, -1, 1, -1, 2]))
    seg = segment(np.concatenate([_floor(rng), roof, person]).astype(np.float32), cfg)
    assert seg.self_points >= len(roof) and [round(float(c.center[0])) for c in seg.clusters] == [6]


@pytest.mark.parametrize("robot", ["amr", "vehicle", "arm"])
def test_a_yaml_file_configures_what_the_node_runs(robot):
    """Without ROS the same table turns the same stages on: the old YAML reader silently dropped the people
    detector and the occupancy grid that the node turns on."""
    params = node_params(source_root() / "config" / f"{robot}.yaml", "perception_fusion")
    cfg = pipeline_config(params)
    assert cfg.people_detector == params["people_detector"] and cfg.occupancy_enabled == params["occupancy_enabled"]
    assert cfg.segmentation.ground_threshold == params["ground_threshold_m"]
    assert (CLASS_VEHICLE in cfg.classify.classes) == (robot == "vehicle")
    assert {"x_min_m", "ground_z_m", "classes", "people_detector"} <= {p.name for p in PARAMS} & set(params)


def _ros_type(value) -> str:
    """The ROS parameter type a YAML value gets (rclpy refuses a value of another type than the declared one)."""
    if isinstance(value, list):
        return f"{_ros_type(value[0]) if value else 'empty'} array"
    return {bool: "bool", int: "integer", float: "double", str: "string"}[type(value)]


@pytest.mark.parametrize("robot", ["amr", "vehicle", "arm"])
def test_every_configured_value_has_its_parameter_s_type(robot):
    """rclpy refuses a value of another type than the parameter's, and the node dies at start: the arm's
    `people_detector: off` is YAML for false, not the string 'off', and perception never came up on the arm."""
    params = node_params(source_root() / "config" / f"{robot}.yaml", "perception_fusion")
    declared = {p.name: p.default for p in PARAMS}
    wrong = {k: (v, declared[k]) for k, v in params.items() if k in declared and _ros_type(v) != _ros_type(declared[k])}
    assert not wrong, f"config/{robot}.yaml perception_fusion: value vs declared default: {wrong}"


def test_parameter_table_rejects_bad_values():
    with pytest.raises(ValueError, match="classes"):
        pipeline_config({"classes": ["person", "forklift"]})
    with pytest.raises(ValueError, match="cell_size_m"):
        pipeline_config({"cell_size_m": 5.0})
    with pytest.raises(ValueError, match="self_crop_box_m"):
        pipeline_config({"self_crop_box_m": [1.0, 0.0, -1.0, 1.0, 0.0, 2.0]})


def test_detector_thread_takes_the_newest_image_and_never_blocks_submit():
    calls = []

    def slow_detect(image, bgr):
        calls.append(int(image[0, 0, 0]))
        time.sleep(0.2)
        return np.array([[0, 0, 10, 10, float(image[0, 0, 0])]])

    worker = DetectorThread(slow_detect, rate_hz=50.0)
    try:
        start = time.monotonic()
        for k in range(1, 6):
            worker.submit("cam", k, np.full((4, 4, 3), k, np.uint8))
            time.sleep(0.01)
        assert time.monotonic() - start < 0.15                     # submitting never waited for the detector
        deadline = time.monotonic() + 3
        while (worker.latest("cam") or (0,))[0] != 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        stamp, boxes = worker.latest("cam")
        assert stamp == 5 and boxes[0, 4] == 5
        assert calls[0] == 1 and calls[-1] == 5 and len(calls) < 5 and worker.replaced >= 1
    finally:
        worker.close()


@pytest.mark.skipif(not NUSCENES.exists(), reason=f"nuScenes sample not found at {NUSCENES}")
def test_nuscenes_with_the_vehicle_configuration():
    """The real frame: the ego car is not reported, few class claims on unannotated structure, objects found.

    The issue's targets: recall@1m >= 0.9 of the 15 objects (14/15 here: a pedestrian stands 0.2 m from an
    unlabelled object, one obstacle for both), <= 3 claims on unannotated structure.
    """
    rec = load_nuscenes(NUSCENES)
    params = node_params(source_root() / "config" / "vehicle.yaml", "perception_fusion")
    score, _ = evaluate(rec, pipeline_config(params), repeats=1, cameras=False)
    assert score.objects == 15
    assert score.ego_reported == 0 and score.self_points > 8000
    assert score.recall_1m >= 0.9 and score.recall_2m >= 0.9
    assert score.false_person_vehicle <= 3
    person_right, person_claims = score.claims["person"]
    assert person_claims and person_right / person_claims >= 0.75


@pytest.mark.skipif(not NUSCENES.exists(), reason=f"nuScenes sample not found at {NUSCENES}")
def test_camera_detections_arrive_later_without_holding_the_lidar_cycle():
    """With the detector in its thread, the cycle that hands over 1600x900 images returns before any detection is
    done; later cycles fuse each camera's newest detections (as a standing scene at 10 Hz)."""
    rec = load_nuscenes(NUSCENES)
    params = node_params(source_root() / "config" / "vehicle.yaml", "perception_fusion")
    pipe = FusionPipeline(pipeline_config(params))
    if pipe.detector is None or not pipe.detector.available:
        pytest.skip(f"camera people detector unavailable: {getattr(pipe.detector, 'unavailable_reason', 'off')}")
    try:
        frame = frame_input(rec)
        frame.cameras = [c for c in frame.cameras if c.name == "CAM_FRONT"]
        pipe.process(frame)
        assert pipe.detector_thread is not None and pipe.detector_thread.runs == 0
        deadline = time.monotonic() + 120
        while pipe.detector_thread.runs < len(frame.cameras) and time.monotonic() < deadline:
            time.sleep(0.05)
        frame.stamp_ns = 100_000_000
        res = pipe.process(frame)
        assert pipe.detector_thread.runs >= len(frame.cameras) and len(res.people_boxes) == len(frame.cameras)
        assert {pipe.detector_thread.latest(c.name)[0] for c in frame.cameras} == {0}
    finally:
        pipe.close()


def test_a_wall_coming_into_view_is_a_still_structure_not_a_moving_obstacle():
    """A wall's visible part grows frame by frame (its centroid slides along it at 1 m/s here): the tracker reads that
    as motion, but a structure longer than any vehicle does not move, so no velocity, prediction or 'moving'."""
    rng = np.random.default_rng(7)
    pipe = _tracking_pipeline(x_range=(-15, 15))
    floor = _floor(rng, 8000, 10.0)
    for k in range(8):
        end = -2.0 + 2.0 * k                                                # the visible end advances 2 m per frame
        wall = _block(rng, (-12.0, 4.0, 0.05), (end, 4.2, 2.0), 3000)
        res = pipe.process(FrameInput(stamp_ns=k * 1_000_000_000, clouds=[np.concatenate([floor, wall]).astype(
            np.float32)]))
    walls = [o for o in res.obstacles if o.cluster.center[1] > 3]
    assert len(walls) == 1 and walls[0].cluster.classification == CLASS_STATIC
    assert not walls[0].moving and np.allclose(walls[0].velocity, 0.0)
    assert np.allclose(walls[0].predicted, walls[0].predicted[0])

"""Unit tests of the ROS-free perception core on synthetic scenes with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from physical_ai.perception.camera import CameraModel, PersonDetector, depth_to_points, fuse_clusters
from physical_ai.perception.classify import ClassifyConfig, classify_clusters
from physical_ai.perception.lidar import (
    CLASS_PERSON,
    CLASS_UNKNOWN,
    CLASS_VEHICLE,
    SENSOR_CAMERA,
    SENSOR_DEPTH,
    SENSOR_LIDAR,
    Cluster,
    SegmentationConfig,
    segment,
)
from physical_ai.perception.occupancy import INFLATED, LETHAL, OccupancyConfig, build_grid
from physical_ai.perception.parts import PartsConfig, detect_parts, table_segmentation
from physical_ai.perception.pipeline import FrameInput, FusionPipeline, PipelineConfig
from physical_ai.perception.sync import SensorSpec, SensorSync
from physical_ai.perception.tactile import TactileConfig, TactileProcessor
from physical_ai.perception.tracking import Tracker, TrackerConfig

MS = 1_000_000


def box_points(center, size, yaw, n, rng):
    """Points on the surface-ish volume of an oriented box standing at z = center[2] - size[2]/2."""
    local = (rng.random((n, 3)) - 0.5) * np.asarray(size)
    c, s = np.cos(yaw), np.sin(yaw)
    x = local[:, 0] * c - local[:, 1] * s + center[0]
    y = local[:, 0] * s + local[:, 1] * c + center[1]
    return np.column_stack([x, y, local[:, 2] + center[2]])


def ground(rng, n=20000, extent=15.0, tilt=0.0):
    xy = rng.uniform(-extent, extent, (n, 2))
    return np.column_stack([xy, tilt * xy[:, 0] + rng.normal(0, 0.02, n)])


def test_segment_finds_car_and_person_with_oriented_extent():
    rng = np.random.default_rng(1)
    car = box_points((8.0, -3.0, 0.75), (4.4, 1.8, 1.5), 0.5, 3000, rng)
    person = box_points((4.0, 2.0, 0.85), (0.4, 0.5, 1.7), 0.0, 600, rng)
    pts = np.concatenate([ground(rng, tilt=0.02), car, person]).astype(np.float32)
    cfg = SegmentationConfig(x_range=(-15, 15), y_range=(-15, 15))
    seg = segment(pts, cfg)
    classify_clusters(seg.clusters, cfg.max_height, ClassifyConfig())
    assert abs(seg.plane[0] + 0.02) < 0.01 and seg.ground_status == "fit"     # tilted ground recovered
    by_dist = {k: min(seg.clusters, key=lambda c, p=p: np.linalg.norm(c.center[:2] - p))
               for k, p in (("car", (8.0, -3.0)), ("person", (4.0, 2.0)))}
    car_c, person_c = by_dist["car"], by_dist["person"]
    assert np.linalg.norm(car_c.center[:2] - (8, -3)) < 0.2
    assert car_c.classification == CLASS_VEHICLE
    assert abs(car_c.size[0] - 4.4) < 0.3 and abs(car_c.size[1] - 1.8) < 0.3
    assert abs(((car_c.yaw - 0.5) + np.pi / 2) % np.pi - np.pi / 2) < 0.1
    assert person_c.classification == CLASS_PERSON and abs(person_c.size[2] - 1.7) < 0.25
    assert len(seg.clusters) == 2


def test_segment_empty_and_ground_only():
    cfg = SegmentationConfig()
    assert segment(np.zeros((0, 3), np.float32), cfg).clusters == []
    assert segment(ground(np.random.default_rng(2)).astype(np.float32), cfg).clusters == []


def test_scan_points_skip_ground_removal_and_depth_adds_overhang():
    """A 2D scan sees a table's legs; only the depth camera sees its overhanging top: both reach the output."""
    rng = np.random.default_rng(3)
    legs = np.concatenate([box_points((3 + dx, dy, 0.2), (0.05, 0.05, 0.0), 0, 30, rng)
                           for dx in (0, 1.0) for dy in (-0.5, 0.5)])
    legs[:, 2] = 0.2                                                # scan plane height
    top = box_points((3.5, 0.0, 0.72), (1.2, 1.2, 0.04), 0, 800, rng)
    floor = ground(rng, 4000, 6.0)
    pipe = FusionPipeline(PipelineConfig(segmentation=SegmentationConfig(x_range=(-6, 6), y_range=(-6, 6)),
                                         people_detector="off"))
    res = pipe.process(FrameInput(stamp_ns=0, scans=[legs.astype(np.float32)],
                                  depth=[np.concatenate([top, floor]).astype(np.float32)]))
    table = [o for o in res.obstacles if np.linalg.norm(o.cluster.center[:2] - (3.5, 0)) < 0.4]
    assert table and table[0].cluster.sensors == SENSOR_LIDAR | SENSOR_DEPTH
    assert table[0].cluster.size[0] > 1.0
    depth_only = pipe.process(FrameInput(stamp_ns=10**8, depth=[np.concatenate([top, floor]).astype(np.float32)]))
    assert [o.cluster.sensors for o in depth_only.obstacles] == [SENSOR_DEPTH]


def test_tracker_person_walking_is_moving_with_heading_and_prediction():
    trk = Tracker(TrackerConfig())
    heading = np.radians(30)
    v = 1.4 * np.array([np.cos(heading), np.sin(heading)])
    rng = np.random.default_rng(4)
    ids = set()
    for k in range(20):
        t = k * 0.1
        person = Cluster(center=np.array([*(np.array([2.0, -1.0]) + v * t + rng.normal(0, 0.03, 2)), 0.85]),
                         size=np.array([0.5, 0.4, 1.7]), yaw=0.0, num_points=100, classification=CLASS_PERSON)
        wall = Cluster(center=np.array([5.0, 5.0, 1.0]), size=np.array([3, 0.2, 2.0]), yaw=0.0, num_points=300)
        out = trk.update([person, wall], int(t * 1e9))
        ids.add(tuple(sorted(o.id for o in out)))
    assert len(ids) == 1                                            # ids stable
    p = next(o for o in out if o.cluster.classification == CLASS_PERSON)
    w = next(o for o in out if o.cluster.classification == CLASS_UNKNOWN)
    assert abs(p.speed - 1.4) < 0.15 and abs(p.heading - heading) < 0.1
    assert w.speed < 0.15
    pred = trk.predict_positions(p, None)
    assert np.allclose(pred[-1], p.x[:2] + v * 1.0, atol=0.2)


def test_tracker_uses_robot_pose_so_ego_motion_is_not_obstacle_velocity():
    trk = Tracker(TrackerConfig())
    for k in range(15):
        t = k * 0.1
        T = np.eye(4)
        T[0, 3] = 1.0 * t                                           # robot drives forward at 1 m/s
        obstacle_in_base = np.array([5.0 - 1.0 * t, 0.0, 0.5])      # a static obstacle approaches in base frame
        out = trk.update([Cluster(center=obstacle_in_base, size=np.ones(3), yaw=0, num_points=50)], int(t * 1e9), T)
    assert out[0].speed < 0.1
    assert np.linalg.norm(trk.predict_positions(out[0], T)[0] - obstacle_in_base[:2]) < 0.1


def test_tracker_does_not_hand_a_track_a_far_cluster_when_another_track_claims_its_own():
    """Two tracks near a walking worker (a duplicate) and a shelf post 1.8 m away, inside the 2 m gate.

    A forced rectangular assignment gave one of the worker's tracks the post (ROS trace, seed 100014: the worker's
    velocity estimate jumped to 3 m/s); the post must start its own track instead.
    """
    trk = Tracker(TrackerConfig(gate_m=2.0))
    person = Cluster(center=np.array([0.0, 0.0, 0.85]), size=np.array([0.4, 0.2, 1.7]), yaw=0.0, num_points=80,
                     classification=CLASS_PERSON)
    trk.update([person], 0)
    a = trk.tracks[0]
    a.x[2:] = [0.0, -1.4]
    b_cluster = Cluster(center=np.array([0.05, -0.05, 0.85]), size=np.array([0.4, 0.2, 1.7]), yaw=0.0,
                        num_points=80)
    trk.tracks.append(type(a)(id=99, x=np.array([0.05, -0.05, 0.0, -1.4]), P=a.P.copy(), cluster=b_cluster))
    post = Cluster(center=np.array([-1.2, -1.4, 0.9]), size=np.array([0.1, 0.1, 1.8]), yaw=0.0, num_points=6)
    walked = Cluster(center=np.array([0.0, -0.14, 0.85]), size=np.array([0.4, 0.2, 1.7]), yaw=0.0, num_points=80)
    out = trk.update([walked, post], int(0.1e9))
    by_cluster = {id(o.cluster): o for o in out}
    assert by_cluster[id(post)].id not in (a.id, 99), "the post was handed to a worker track"
    assert by_cluster[id(walked)].id in (a.id, 99)
    assert all(t.speed < 2.0 for t in trk.tracks)


def test_tracker_reads_no_motion_from_a_still_shelf_whose_cluster_merges_with_the_stand_in_front():
    """Fleet robot2 at its start (seed 200000): shelf_5's face is one cluster on the first frame, merged with the
    drop-off stand in front of it from the second. The box widened 0.43 m towards the robot, its centre moved 0.22 m,
    and the new track read 1.1 m/s into the lane from that (still 'moving' at 0.45 m/s after 0.4 s), which held the
    robot's corrector as "path blocked by a moving obstacle". Later the two split again (the same in reverse)."""
    trk = Tracker(TrackerConfig())
    yaw = -0.17
    across = np.array([-np.sin(yaw), np.cos(yaw)])
    face = np.array([1.90, 0.88])
    speeds = []
    for k in range(14):
        merged = 1 <= k < 10
        centre = face - 0.215 * across * merged
        out = trk.update([Cluster(center=np.array([*centre, 0.73]), size=np.array([4.31, 0.53 if merged else 0.10,
                                                                                  1.45]), yaw=yaw, num_points=7000)],
                         int(k * 0.1e9))
        assert len(out) == 1 and out[0].id == 1
        speeds.append(out[0].speed)
    assert max(speeds) < TrackerConfig().moving_speed, np.round(speeds, 2)


def test_tracker_keeps_a_walking_persons_speed_while_its_box_changes_shape():
    """Its legs swing both box ends out and in (the centre moves with it: 0.35-0.85 m long at two steps a second),
    or its back half is hidden for a frame (one end jumps 0.4 m): the speed stays a walk, from its first steps."""
    trk = Tracker(TrackerConfig())
    v = np.array([1.4, 0.0])
    for k in range(25):
        t = k * 0.1
        centre, length = np.array([-2.0, 1.0]) + v * t, 0.6 + 0.25 * np.sin(2 * np.pi * 2.0 * t)
        if k in (2, 12, 18):                                                  # its back half hidden
            centre, length = centre + np.array([0.2, 0.0]), length - 0.4
        out = trk.update([Cluster(center=np.array([*centre, 0.85]), size=np.array([length, 0.4, 1.7]), yaw=0.0,
                                  num_points=100)], int(t * 1e9))
        if k >= 8:
            assert abs(out[0].speed - 1.4) < 0.3, (k, out[0].speed)
            assert abs(out[0].heading) < 0.2


def make_sync(camera_age_ms=300, wait_ms=30):
    return SensorSync({"lidar": SensorSpec(500 * MS), "camera": SensorSpec(camera_age_ms * MS)}, ["lidar", "camera"],
                      slop_ns=20 * MS, max_wait_ns=wait_ms * MS)


def test_sync_matches_camera_within_slop_and_waits_a_bounded_time():
    s = make_sync()
    s.add("lidar", -100 * MS, "pc-1", now_ns=-95 * MS)            # LiDAR alive: it drives the cycles
    s.poll(-95 * MS)
    s.add("camera", 0, "img0", now_ns=5 * MS)
    s.add("lidar", 0, "pc0", now_ns=6 * MS)
    [b] = s.poll(6 * MS)
    assert b.data["camera"][1] == "img0" and not b.degraded
    # Next LiDAR frame at 100 ms: the camera is alive but late; the frame waits at most 30 ms.
    s.add("lidar", 100 * MS, "pc1", now_ns=106 * MS)
    assert s.poll(110 * MS) == []
    s.add("camera", 105 * MS, "img1", now_ns=120 * MS)              # arrives within the wait
    [b] = s.poll(120 * MS)
    assert b.data["camera"][1] == "img1" and not b.degraded
    s.add("lidar", 200 * MS, "pc2", now_ns=206 * MS)                 # camera late beyond the bound
    assert s.poll(230 * MS) == []
    [b] = s.poll(237 * MS)
    assert b.data["lidar"][1] == "pc2" and b.data["camera"][1] == "img1"


def test_sync_late_camera_never_drops_lidar_and_dead_camera_is_degraded():
    s = make_sync()
    s.add("lidar", -100 * MS, "pc-1", now_ns=-100 * MS)
    s.add("camera", 0, "img0", now_ns=0)
    s.poll(0)
    out = []
    for k in range(1, 10):                                          # camera silent from here on
        s.add("lidar", k * 100 * MS, f"pc{k}", now_ns=k * 100 * MS + MS)
        out += s.poll(k * 100 * MS + 2 * MS)
    out += s.poll(2000 * MS)
    assert [b.data["lidar"][1] for b in out] == [f"pc{k}" for k in range(1, 10)]
    assert not out[0].degraded and all(b.degraded and b.stale == ["camera"] for b in out[3:])
    # Once the camera is dead there is no waiting at all.
    s.add("lidar", 1000 * MS, "pc10", now_ns=1000 * MS)
    [b] = s.poll(1000 * MS)
    assert b.degraded


def test_sync_falls_back_to_the_next_trigger_when_the_lidar_dies():
    s = make_sync()
    s.add("lidar", 0, "pc0", now_ns=0)
    s.poll(100 * MS)
    s.add("camera", 600 * MS, "img", now_ns=600 * MS)               # lidar silent for 600 ms > 500 ms age
    [b] = s.poll(600 * MS)
    assert b.trigger == "camera" and b.stale == ["lidar"]


def test_tactile_contact_location_slip_and_bad_input():
    proc = TactileProcessor(TactileConfig(taxel_pitch=0.004, contact_on_n=0.5, contact_off_n=0.3))
    rows, cols = 4, 4
    p = np.zeros((rows, cols))
    assert not proc.process("left", rows, cols, p.ravel(), 0).in_contact
    p[0, 3] = 1e5                                                   # 1e5 Pa * 16e-6 m^2 = 1.6 N at one corner
    r = proc.process("left", rows, cols, p.ravel(), 10 * MS)
    assert r.in_contact and abs(r.normal_force - 1.6) < 1e-6 and not r.slip
    assert np.allclose(r.location[:2], [1.5 * 0.004, -1.5 * 0.004])
    q = np.zeros((rows, cols))
    q[1, 3] = 1e5                                                   # contact moved 4 mm in 10 ms: slip
    assert proc.process("left", rows, cols, q.ravel(), 20 * MS).slip
    q[1, 3] = 0.25e5                                                # 0.4 N: between off and on -> still in contact
    assert proc.process("left", rows, cols, q.ravel(), 30 * MS).in_contact
    with pytest.raises(ValueError):
        proc.process("left", 4, 4, np.zeros(15), 40 * MS)
    with pytest.raises(ValueError):
        proc.process("left", 1, 2, np.array([np.nan, 1.0]), 40 * MS)


def test_occupancy_inflates_people_wider():
    cfg = OccupancyConfig(size_m=10.0, resolution=0.1)
    pts = np.array([[2.0, 2.0], [-2.0, -2.0]])
    grid = build_grid(pts, np.array([CLASS_PERSON, CLASS_UNKNOWN]), np.array([[0.0, 0.0]]), cfg)
    assert grid.shape == (100, 100) and grid[50, 50] == 0 and grid[0, 0] == -1

    def inflated_radius(x, y):
        row, col = int((y + 5) / 0.1), int((x + 5) / 0.1)
        assert grid[row, col] == LETHAL
        line = grid[row, col:]
        return np.argmax(line < INFLATED) * 0.1

    assert inflated_radius(2.0, 2.0) >= 0.75 and inflated_radius(-2.0, -2.0) <= 0.45


@pytest.mark.parametrize("seed", range(8))
def test_occupancy_inflation_is_every_cell_within_the_class_radius(seed):
    """The inflated cells are those whose centre is within the class's radius of an occupied cell's centre (the
    Euclidean distance transform's definition), for any resolution and radius."""
    import scipy.ndimage as ndi

    rng = np.random.default_rng(seed)
    cfg = OccupancyConfig(size_m=12.0, resolution=float(rng.choice([0.05, 0.1, 0.17])),
                          inflation_m={0: float(rng.uniform(0, 1)), 1: float(rng.uniform(0, 1))},
                          default_inflation_m=0.3)
    pts = rng.uniform(-7, 7, (int(rng.integers(1, 400)), 2))
    cls = rng.integers(0, 3, len(pts))
    grid = build_grid(pts, cls, rng.uniform(-6, 6, (200, 2)), cfg)
    n = grid.shape[0]
    cells = np.floor((pts + cfg.size_m / 2) / cfg.resolution).astype(int)
    inside = ((cells >= 0) & (cells < n)).all(axis=1)
    expected = np.zeros((n, n), bool)
    for k in np.unique(cls[inside]):
        occ = np.zeros((n, n), bool)
        occ[cells[inside & (cls == k), 1], cells[inside & (cls == k), 0]] = True
        radius = cfg.inflation_m.get(int(k), cfg.default_inflation_m)
        expected |= ndi.distance_transform_edt(~occ) * cfg.resolution <= radius
    assert np.array_equal(grid == INFLATED, expected & (grid != LETHAL))


def _render_depth(K, T_world_cam, shape, boxes, cylinders, table_z=0.0):
    """Ray-cast an overhead depth image of a table with boxes (cx, cy, sx, sy, h, yaw) and cylinders (cx, cy, r, h)."""
    h, w = shape
    v, u = np.mgrid[0:h, 0:w]
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u, float)], -1)
    R, o = T_world_cam[:3, :3], T_world_cam[:3, 3]
    d_world = rays @ R.T
    best = np.full((h, w), np.inf)

    def in_box(x, y, b):
        u = (x - b[0]) * np.cos(b[5]) + (y - b[1]) * np.sin(b[5])
        v = -(x - b[0]) * np.sin(b[5]) + (y - b[1]) * np.cos(b[5])
        return (np.abs(u) <= b[2] / 2) & (np.abs(v) <= b[3] / 2)

    surfaces = [(table_z, lambda x, y: np.ones_like(x, bool))]
    surfaces += [(table_z + b[4], lambda x, y, b=b: in_box(x, y, b)) for b in boxes]
    surfaces += [(table_z + c[3], lambda x, y, c=c: np.hypot(x - c[0], y - c[1]) <= c[2]) for c in cylinders]
    for top_z, inside in surfaces:
        t = (top_z - o[2]) / d_world[..., 2]
        x, y = o[0] + t * d_world[..., 0], o[1] + t * d_world[..., 1]
        hit = inside(x, y) & (t > 0)
        best = np.where(hit & (t < best), t, best)
    return best.astype(np.float32)                                  # rays have unit z in the camera: t = depth


def test_parts_pose_from_overhead_depth():
    K = np.array([[600.0, 0, 320], [0, 600.0, 240], [0, 0, 1]])
    T_world_cam = np.array([[1.0, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, 1.0], [0, 0, 0, 1]])   # 1 m above, looking down
    depth = _render_depth(K, T_world_cam, (480, 640), boxes=[(0.10, 0.05, 0.06, 0.06, 0.06, 0.4),
                                                            (-0.15, -0.1, 0.12, 0.05, 0.04, -0.3)],
                          cylinders=[(0.0, 0.2, 0.03, 0.08)])
    pts = depth_to_points(depth, K, T_world_cam, stride=1, max_range=2.0)
    parts = detect_parts(pts, PartsConfig(workspace_x=(-0.4, 0.4), workspace_y=(-0.35, 0.35)))
    assert len(parts) == 3
    by_label = {}
    for p in parts:
        by_label.setdefault(p.label, []).append(p)
    cube, box, cyl = by_label["cube"][0], by_label["box"][0], by_label["cylinder"][0]
    assert np.linalg.norm(cube.position[:2] - (0.10, 0.05)) < 0.005 and abs(cube.size[2] - 0.06) < 0.006
    assert np.linalg.norm(box.position[:2] - (-0.15, -0.1)) < 0.005
    assert abs(((box.yaw + 0.3) + np.pi / 2) % np.pi - np.pi / 2) < 0.05 and abs(box.size[0] - 0.12) < 0.01
    assert np.linalg.norm(cyl.position[:2] - (0.0, 0.2)) < 0.005
    for p in parts:
        assert np.all(np.linalg.eigvalsh(p.covariance) > 0)
    assert cyl.covariance[5, 5] > box.covariance[5, 5]             # a cylinder's yaw is unobservable


def test_the_table_under_the_parts_is_fitted_without_bias_from_its_depth_noise():
    # The arm camera's view of the table: ~3.5 mm between points, the simulator's 2 mm depth noise. With the lowest
    # point of each 2 cm cell the plane came out 1.6 mm low, which the arm policy read as taller, shifted parts.
    rng = np.random.default_rng(0)
    x, y = np.meshgrid(np.arange(0.1, 0.9, 0.0035), np.arange(-0.6, 0.6, 0.0035))
    pts = np.stack([x.ravel(), y.ravel(), rng.normal(0.0, 0.002, x.size)], axis=1).astype(np.float32)
    seg = segment(pts, table_segmentation(PartsConfig(workspace_x=(0.15, 0.8), workspace_y=(-0.55, 0.55))))
    assert seg.ground_status == "fit"
    assert abs(seg.plane[3]) < 3e-4                                 # the table's height at the origin [m]


def test_camera_projection_colour_and_person_box():
    T_cam_base = np.array([[0, -1, 0, 0], [0, 0, -1, 1.0], [1, 0, 0, 0], [0, 0, 0, 1.0]])    # optical frame at z=1
    cam = CameraModel(np.array([[300.0, 0, 160], [0, 300, 120], [0, 0, 1]]), 320, 240, T_cam_base)
    uv, ok = cam.project(np.array([[5.0, 0.0, 1.0], [-5.0, 0.0, 1.0]], np.float32))
    assert ok.tolist() == [True, False] and uv[0].tolist() == [160, 120]
    foot = cam.ground_point(160, 180, np.array([0, 0, 1.0, 0]))
    assert np.allclose(foot, [5.0, 0, 0], atol=1e-6)
    image = np.zeros((240, 320, 3), np.uint8)
    image[:, :, 0] = 255
    pts = np.array([[5.0, 0.1 * k, 0.5 + 0.1 * k] for k in range(5)], np.float32)
    c = Cluster(center=np.array([5.0, 0.2, 0.85]), size=np.array([0.5, 0.5, 1.7]), yaw=0, num_points=5,
                point_index=np.arange(5))
    fuse_clusters([c], pts, cam, image, np.array([[100.0, 60, 200, 200, 1.0]]), ClassifyConfig())
    assert np.allclose(c.color, [1, 0, 0]) and c.sensors & SENSOR_CAMERA and c.classification == CLASS_PERSON


def test_person_detector_handles_empty_and_tiny_images():
    det = PersonDetector()
    assert det.detect(np.zeros((0, 0, 3), np.uint8)).shape == (0, 5)
    assert det.detect(np.zeros((50, 30, 3), np.uint8)).shape == (0, 5)
    if det.available:
        assert det.detect(np.zeros((256, 256, 3), np.uint8)).shape == (0, 5)

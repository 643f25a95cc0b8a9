"""Unit tests of the ROS-free simulator core: command validation, controllers, sensors, tactile, experts."""

from __future__ import annotations

import os
import threading
import time

import mujoco
import numpy as np
import pytest

from physical_ai.sim import lane
from physical_ai.sim.commands import (
    NS,
    CommandRejected,
    JointLimits,
    JointTrajectoryFollower,
    RateLimitedCommand,
    check_stamp,
)
from physical_ai.sim.experts import apply, make_expert, observe, run_episode
from physical_ai.sim.runner import RENDER_NICE, SensorGeometry, SimRunner, StreamConfig
from physical_ai.sim.scenarios import PARTS, make_scenario
from physical_ai.sim.sensors import Lidar, RgbdCamera, SensorNoise, TactilePads, add_depth_noise, add_rgb_noise


def _limits(n: int = 3) -> JointLimits:
    return JointLimits([f"j{i}" for i in range(n)], -np.ones(n), np.ones(n), np.full(n, 2.0))


# ---- command validation -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("names", "times", "positions", "reason"), [
    (["j0", "j1", "j2"], [1.0], [[0.1, float("nan"), 0.0]], "nan"),
    (["j0", "j1", "j2"], [1.0], [[0.1, 0.2]], "wrong_length"),
    (["j0", "j1", "j2"], [1.0], [[0.1, 1.5, 0.0]], "out_of_range"),
    (["j0", "jX"], [1.0], [[0.1, 0.2]], "unknown_joint"),
    (["j0", "j0"], [1.0], [[0.1, 0.2]], "duplicate_joint"),
    (["j0"], [1.0, 0.5], [[0.1], [0.2]], "bad_timing"),
    (["j0"], [0.1], [[0.9]], "too_fast"),
    (["j0"], [], [], "empty"),
])
def test_bad_trajectories_are_rejected_and_the_hold_is_kept(names, times, positions, reason):
    f = JointTrajectoryFollower(_limits(), np.array([0.0, 0.1, 0.2]))
    with pytest.raises(CommandRejected) as err:
        f.set_trajectory(names, times, positions, None, 0, 0)
    assert err.value.reason == reason
    np.testing.assert_allclose(f.sample(5 * NS), [0.0, 0.1, 0.2])


def test_trajectory_interpolates_from_current_state_and_holds_the_end():
    f = JointTrajectoryFollower(_limits(), np.zeros(3))
    f.set_trajectory(["j2", "j0"], [1.0, 2.0], [[0.5, 0.2], [0.8, 0.4]], None, 0, 10 * NS)
    np.testing.assert_allclose(f.sample(10 * NS), [0.0, 0.0, 0.0])
    np.testing.assert_allclose(f.sample(10 * NS + NS // 2), [0.1, 0.0, 0.25])  # linear, j1 untouched
    np.testing.assert_allclose(f.sample(12 * NS), [0.4, 0.0, 0.8])
    np.testing.assert_allclose(f.sample(99 * NS), [0.4, 0.0, 0.8])
    # with velocities the segment is a cubic that hits the end velocity
    f.set_trajectory(["j0"], [1.0], [[0.0]], [[0.0]], 0, 99 * NS)
    mid = f.sample(99 * NS + NS // 2)[0]
    assert 0.0 < mid < 0.4 and abs(mid - 0.2) < 1e-9  # symmetric Hermite with zero end velocities


@pytest.mark.parametrize(("stamp_s", "reason"), [(8.0, "stale_stamp"), (12.0, "future_stamp")])
def test_stamps_in_the_past_or_future_are_rejected(stamp_s, reason):
    with pytest.raises(CommandRejected) as err:
        check_stamp(int(stamp_s * NS), 10 * NS, max_age_s=0.5, max_future_s=0.5)
    assert err.value.reason == reason
    check_stamp(int(9.8 * NS), 10 * NS, 0.5, 0.5)
    check_stamp(0, 10 * NS, 0.5, 0.5)  # zero stamp means "now"


def test_rate_limited_base_respects_acceleration_and_times_out_to_stop():
    base = RateLimitedCommand(["v", "w"], [-1, -1.5], [1, 1.5], [1.0, 2.0], [1.0, 2.0], 0.5, [0, 0])
    base.accept([1.0, 1.5], 0)
    v = [base.step(0.01, int(i * 0.01 * NS))[0] for i in range(1, 41)]
    assert np.all(np.diff(v) <= 0.01 + 1e-9)
    assert abs(v[-1] - 0.4) < 1e-6
    with pytest.raises(CommandRejected):
        base.accept([2.0, 0.0], 0)
    # no new command for > 0.5 s: decelerate to zero within the limit
    for i in range(41, 200):
        out = base.step(0.01, int(i * 0.01 * NS))
    np.testing.assert_allclose(out, [0.0, 0.0], atol=1e-9)


# ---- scenarios ---------------------------------------------------------------------------------------------
def test_part_poses_are_randomised_per_seed_and_reproducible():
    a, b, c = (make_scenario("arm", s) for s in (1, 1, 2))
    pa = np.array([a.part_position(p) for p in PARTS])
    np.testing.assert_allclose(pa, [b.part_position(p) for p in PARTS])
    assert np.abs(pa - [c.part_position(p) for p in PARTS]).max() > 0.01


def test_arm_stream_rejects_nan_and_keeps_the_target():
    sc = make_scenario("arm", 0)
    before = sc.target.copy()
    for bad, reason in (([0.0] * 6, "wrong_length"), ([float("nan")] * 7, "nan"), ([5.0] * 7, "out_of_range")):
        with pytest.raises(CommandRejected) as err:
            sc.command_stream(bad)
        assert err.value.reason == reason
    sc.step(200)
    np.testing.assert_allclose(sc.target, before)
    np.testing.assert_allclose(sc.joint_state()[1][:7], before, atol=0.01)


def test_amr_acceleration_limit_and_odometry():
    sc = make_scenario("amr", 0)
    for _ in range(50):  # 0.5 s of 1 m/s commands
        sc.command_twist(1.0, 0.0)
        sc.step(2)
    T, twist = sc.odometry()
    assert 0.4 < twist[0] < 0.56  # a <= 1 m/s^2 (+ actuator lag)
    assert 0.09 < T[0, 3] < 0.14  # ~ a t^2 / 2


def test_workers_cross_at_walking_speed_and_clearance_is_tracked():
    sc = make_scenario("amr", 0, {"worker_times_s": [0.5, 100.0]})
    sc.step(400)  # 2 s
    gt = sc.ground_truth()
    twist = gt.body_twists[gt.body_names.index("worker_1")]
    assert abs(np.linalg.norm(twist[:3]) - 1.4) < 1e-6
    assert np.linalg.norm(gt.body_twists[gt.body_names.index("worker_2")]) == 0.0
    assert gt.min_person_clearance_m == pytest.approx(sc.person_clearance(), abs=0.05)


def test_triggered_worker_starts_when_the_amr_comes_within_range_of_its_aisle():
    seeded = make_scenario("amr", 3)
    sc = make_scenario("amr", 3, {"worker_trigger_m": 3.0})
    assert np.array_equal(sc.worker_dirs, seeded.worker_dirs)  # same seeded scene otherwise
    assert not np.isfinite(sc.worker_times).any()
    sc.step(200)  # 1 s: the AMR waits at the start, 6.5 m before the first aisle: nobody walks
    start = sc.worker_state(sc.data.time)[0]
    assert not np.isfinite(sc.worker_times).any()
    sc.data.qpos[sc.jx] = sc.WORKER_X[0] - 2.9  # within 3 m of the first aisle, 6.4 m before the second
    sc.step(200)
    assert np.isfinite(sc.worker_times[0]) and not np.isfinite(sc.worker_times[1])
    pos, vel = sc.worker_state(sc.data.time)
    assert abs(np.linalg.norm(vel[0]) - 1.4) < 1e-6 and np.linalg.norm(vel[1]) == 0.0
    assert abs(pos[0, 1] - start[0, 1]) == pytest.approx(1.4 * (sc.data.time - sc.worker_times[0]), abs=1e-6)
    assert np.array_equal(pos[1], start[1])


def test_command_noise_perturbs_the_executed_command_on_half_the_episodes():
    """DART for recordings: a perturbed episode drives off the commanded straight line with the noise's spread; the
    scene is the same seeded one, and an unperturbed episode executes exactly what it was sent."""
    plain = make_scenario("amr", 0)
    noisy = [make_scenario("amr", s, {"command_noise": 1.0}) for s in range(40)]
    perturbed = [sc for sc in noisy if sc._noise_rng is not None]
    assert 12 <= len(perturbed) <= 28
    assert np.array_equal(noisy[0].worker_dirs, plain.worker_dirs)
    for sc in noisy[:12]:
        rates = []
        for _ in range(600):            # 3 s of 0.5 m/s straight ahead
            sc.command_twist(0.5, 0.0)
            sc.step(1)
            rates.append(sc.executed.copy())
        rates = np.array(rates)
        if sc._noise_rng is None:
            assert np.all(rates[:, 1] == 0.0)
        else:
            assert 0.05 < rates[300:, 1].std() < 0.4     # stationary std 0.2 rad/s, correlated over 0.45 s
            assert np.all(np.abs(rates) <= sc.base.upper + 1e-12)


def test_hand_obstacle_enters_the_arm_workspace():
    sc = make_scenario("arm", 0, {"hand_time_s": 0.2})
    far = sc.person_clearance()
    sc.step(800)  # 1.6 s: fully inside
    assert sc.data.body("hand").xpos[0] < 0.8 and sc.person_clearance() < far - 0.2
    assert sc.ground_truth().min_person_clearance_m <= sc.person_clearance() + 1e-9


def test_vehicle_steering_rate_limit():
    sc = make_scenario("vehicle", 0)
    sc.command_ackermann(0.5, 2.0)
    sc.step(100)  # 0.5 s
    assert abs(sc.drive.current[0] - 0.3) < 0.01  # 0.6 rad/s


# ---- sensors -------------------------------------------------------------------------------------------------
def test_scan_measures_the_distance_to_the_shelves():
    sc = make_scenario("amr", 0)
    sc.data.qpos[[sc.jx, sc.jy, sc.jyaw]] = [-5.0, 0.3, 0.0]
    mujoco.mj_forward(sc.model, sc.data)
    lidar = Lidar(sc.model, "lidar_link", 1, 720)
    ranges = lidar.cast(sc.data)
    left = ranges[np.argmin(np.abs(lidar.azimuth - np.pi / 2))]
    right = ranges[np.argmin(np.abs(lidar.azimuth + np.pi / 2))]
    assert abs(left - (2.2 - 0.3)) < 0.01 and abs(right - (2.2 + 0.3)) < 0.01
    cloud = Lidar(sc.model, "lidar_link", 16, 1800).scan(sc.data, SensorNoise(), np.random.default_rng(0))
    assert len(cloud["x"]) > 10000 and cloud["ring"].max() == 15
    assert np.all(np.hypot(cloud["x"], cloud["y"]) > 0.3)  # never sees its own body


def test_depth_matches_ray_casting():
    sc = make_scenario("amr", 0)
    cam = RgbdCamera(sc.model, sc.camera, 160, 120, max_depth=30.0)
    try:
        rgb, depth = cam.render(sc.data)
        assert rgb.shape == (120, 160, 3) and depth.dtype == np.float32
        T, K = cam.optical_pose(sc.data), cam.K
        body = sc.model.cam_bodyid[cam.camera_id]
        checked = 0
        for v in range(5, 120, 23):
            for u in range(3, 160, 31):
                ray = np.array([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], 1.0])
                d = T[:3, :3] @ ray
                groups = np.array([1, 0, 1, 1, 1, 1], np.uint8)
                dist = mujoco.mj_ray(sc.model, sc.data, T[:3, 3], d / np.linalg.norm(d), groups, 1, body,
                                     np.zeros(1, np.int32))
                if dist > 0 and np.isfinite(depth[v, u]):
                    assert abs(depth[v, u] - dist / np.linalg.norm(ray)) < 0.01 * depth[v, u] + 0.01
                    checked += 1
        assert checked > 20
    finally:
        cam.close()


def test_tactile_pads_report_contact_only_when_grasping():
    sc = make_scenario("arm", 4)
    pads = TactilePads(sc.model, ["pad_left", "pad_right"])
    assert not any(p.in_contact for p in pads.read(sc.data))
    assert all(p.rows == 4 and p.cols == 3 and not p.pressure.any() for p in pads.read(sc.data))
    expert = make_expert(sc)
    expert.reset(observe(sc))
    grasp_end = sum(seg.duration for seg in expert.segments[:4])  # pre-grasp, descend, close, lift
    while sc.data.time < grasp_end:
        apply(sc, expert.act(observe(sc)))
        sc.step(10)
    readings = pads.read(sc.data)
    assert all(p.in_contact for p in readings)
    assert all(p.normal_force > 1.0 and p.pressure.sum() > 0 for p in readings)
    assert sc.part_position(sc.target_part)[2] > 0.5  # lifted by friction on the pads
    # the contact centroid lies on the pad (pad half-size 0.0105 x 0.016)
    assert all(abs(p.contact_location[0]) < 0.012 and abs(p.contact_location[2]) < 0.017 for p in readings)


def test_runner_rates_latency_and_dropout():
    sc = make_scenario("amr", 0)
    streams = {"joint_states": StreamConfig(100.0), "scan": StreamConfig(10.0, SensorNoise(latency_s=0.05)),
               "odom": StreamConfig(50.0, SensorNoise(dropout=0.5))}
    runner = SimRunner(sc, streams, seed=0)
    out = runner.advance(1.0)
    counts = {k: sum(o.stream == k for o in out) for k in streams}
    assert counts["joint_states"] in (100, 101)
    assert counts["scan"] == 10  # the 11th is still in flight
    assert 10 < counts["odom"] < 40 and runner.dropped["odom"] == 51 - counts["odom"]
    assert all(o.stamp_ns <= 0.95 * NS for o in out if o.stream == "scan")


def _deliveries(runner: SimRunner, steps: int, split: bool) -> list:
    out = []
    for _ in range(steps):
        out += runner.advance(0.005, sample_end=not split)
        if split:
            out += runner.sample_due()
    return out


def test_runner_split_steps_and_render_thread_deliver_the_same_outputs():
    streams = {"joint_states": StreamConfig(100.0), "rgbd": StreamConfig(15.0, SensorNoise(latency_s=0.03)),
               "lidar": StreamConfig(10.0, SensorNoise(latency_s=0.01)),
               "scan": StreamConfig(10.0, SensorNoise(latency_s=0.01))}
    plain = SimRunner(make_scenario("amr", 4), streams, SensorGeometry(width=64, height=48, lidar_horizontal=90),
                      seed=4)
    threaded = SimRunner(make_scenario("amr", 4), streams, SensorGeometry(width=64, height=48, lidar_horizontal=90),
                         seed=4, render_thread=True)
    try:
        for runner in (plain, threaded):
            runner.sc.command_twist(1.0, 0.5)  # a moving camera: frames of different states differ
        a, b = _deliveries(plain, 80, split=False), _deliveries(threaded, 80, split=True)
    finally:
        plain.close()
        threaded.close()
    assert [(o.stream, o.stamp_ns) for o in a] == [(o.stream, o.stamp_ns) for o in b]
    frames = [(x, y) for x, y in zip(a, b, strict=True) if x.stream == "rgbd"]
    assert len(frames) == 6  # 0.4 s at 15 Hz, each 30 ms after its sample
    for x, y in frames:
        np.testing.assert_array_equal(x.data[0], y.data[0])
        np.testing.assert_array_equal(x.data[1], y.data[1])
    assert not np.array_equal(frames[0][0].data[0], frames[-1][0].data[0])
    clouds = [(x, y) for x, y in zip(a, b, strict=True) if x.stream in ("lidar", "scan")]
    assert len(clouds) == 8
    for x, y in clouds:
        if x.stream == "scan":
            np.testing.assert_array_equal(x.data, y.data)
        else:
            assert all(np.array_equal(x.data[k], y.data[k]) for k in ("x", "y", "z", "intensity", "ring"))



def test_late_frames_keep_the_lidar_on_time_while_a_slow_render_finishes():
    """A render slower than the camera's latency must not make the LiDAR late (`late_frames`, the node's mode)."""
    streams = {"rgbd": StreamConfig(15.0, SensorNoise(latency_s=0.03)),
               "lidar": StreamConfig(10.0, SensorNoise(latency_s=0.01))}
    geometry = SensorGeometry(width=64, height=48, lidar_horizontal=90)
    runner = SimRunner(make_scenario("amr", 4), streams, geometry, seed=4, render_thread=True, late_frames=True)
    camera = runner._rigs[0].camera
    render = camera.render

    def slow_render(data):
        time.sleep(0.15)  # several frame periods
        return render(data)

    camera.render = slow_render
    try:
        nice = runner._renderer.submit(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())).result()
        assert nice == min(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) + RENDER_NICE, 19)
        delivered = []  # (step, output)
        for step in range(80):  # 0.4 s of sim time, stepped as fast as the machine goes
            delivered += [(step, o) for o in runner.advance(0.005, sample_end=False) + runner.sample_due()]
        lidar = [(step, o.stamp_ns) for step, o in delivered if o.stream == "lidar"]
        # each cloud in the step its 10 ms latency ends (stamps 0, 0.1, ... s: steps 1, 21, ...), never after a render
        assert lidar == [(1 + 20 * k, k * 100_000_000) for k in range(4)]
        early = [o for _, o in delivered if o.stream == "rgbd"]
        assert runner.late_frame_count >= 5  # stepping went on without them
        time.sleep(0.2 * 6)
        delivered += [(80, o) for o in runner.advance(0.005, sample_end=False)]
    finally:
        runner.close()
    frames = [o for _, o in delivered if o.stream == "rgbd"]
    # every frame delivered once, in order, stamped at its sample time (the first 5 ms step at or after it is due)
    assert [o.stamp_ns for o in frames] == [5_000_000 * -(-k * round(1e9 / 15.0) // 5_000_000) for k in range(6)]
    assert len(early) < len(frames)
    assert all(o.data[0].shape == (48, 64, 3) for o in frames)


# ---- experts -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scenario", ["arm", "amr", "vehicle"])
@pytest.mark.parametrize("seed", [11, 12])
def test_experts_solve_their_tasks(scenario, seed):
    ok, sc = run_episode(scenario, seed)
    gt = sc.ground_truth()
    assert ok and gt.task_success and gt.collisions == 0
    if scenario == "amr":
        assert gt.min_person_clearance_m > 0.3


def test_lane_projection_roundtrip():
    s = np.array([10.0, 60.0, 120.0])
    x, y, h = lane.centerline(s)
    for si, xi, yi, hi in zip(s, x, y, h, strict=True):
        ps, lat = lane.project(xi - 0.5 * np.sin(hi), yi + 0.5 * np.cos(hi))
        assert abs(ps - si) < 0.05 and abs(lat - 0.5) < 0.02


def test_rgb_noise_is_unbiased_gaussian_saturated_and_new_each_frame():
    rng = np.random.default_rng(3)
    img = rng.integers(30, 226, (120, 160, 3), dtype=np.uint8)
    a = add_rgb_noise(img, SensorNoise(sigma=5.0), rng)
    b = add_rgb_noise(img, SensorNoise(sigma=5.0), rng)
    assert a.dtype == np.uint8 and a.shape == img.shape
    d = a.astype(float) - img
    assert abs(d.mean()) < 0.1 and d.std() == pytest.approx(5.0, rel=0.05)  # the old truncation biased it by -0.5
    assert not np.array_equal(a, b)
    edge = add_rgb_noise(np.array([[[0, 255, 128]]], np.uint8).repeat(500, axis=0), SensorNoise(sigma=50.0), rng)
    assert edge[..., 0].min() == 0 and edge[..., 1].max() == 255  # saturated, not wrapped
    assert add_rgb_noise(img, SensorNoise(sigma=0.0), rng) is img


def test_depth_noise_grows_with_range_squared_marks_invalid_pixels_and_is_new_each_frame():
    rng = np.random.default_rng(4)
    depth = np.where(np.arange(480)[:, None] < 240, 1.0, 3.0).astype(np.float32) * np.ones((1, 640), np.float32)
    noise = SensorNoise(sigma=0.01, invalid_fraction=0.02)
    a = add_depth_noise(depth, noise, rng)
    b = add_depth_noise(depth, noise, rng)
    assert a.dtype == np.float32 and a.shape == depth.shape and np.isfinite(depth).all()
    for z in (1.0, 3.0):
        d = (a - depth)[(depth == z) & np.isfinite(a)]
        assert abs(d.mean()) < 0.05 * 0.01 * z * z and d.std() == pytest.approx(0.01 * z * z, rel=0.05)
    assert np.isnan(a).mean() == pytest.approx(0.02, rel=0.1)
    assert not np.array_equal(np.nan_to_num(a), np.nan_to_num(b)) and not (np.isnan(a) == np.isnan(b)).all()

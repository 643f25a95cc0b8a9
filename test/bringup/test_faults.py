"""System-level faults on the simulated AMR stack (config/amr.yaml, use_sim_time), each node in its own process.

a) perception killed -> stale obstacles -> base stopped within the braking time -> perception respawns -> recovers;
b) camera silent -> LiDAR-only degraded obstacles, no stale stop; LiDAR silent -> stale obstacles, stop;
c) policy server unreachable -> no chunks, stale action, base holds; server starts -> chunks and commands resume;
d) a burst of malformed messages on every input topic -> every node alive, reject/drop counters on /diagnostics.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from bringup_testlib import AMR_NODES, ROOT, Probe, RunningStack, amr_commands, nonzero_cmd
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from physical_ai_stack.msg import ActionChunk, CorrectionStatus, Obstacle, ObstacleArray
from sensor_msgs.msg import Image, LaserScan, PointCloud2, PointField

from physical_ai.bringup.stack import node_params, params_file
from physical_ai.convert import ns_to_stamp

STALE_OBSTACLES = CorrectionStatus.STALE_OBSTACLES
STALE_ACTION = CorrectionStatus.STALE_ACTION
STARTUP_S = 90  # first messages of a freshly started stack on a loaded 2-core machine


def _corrector_params() -> dict:
    return node_params(params_file("amr"), "trajectory_correction")


def _is_zero(msg: Twist) -> bool:
    return abs(msg.linear.x) < 1e-3 and abs(msg.angular.z) < 1e-3


@pytest.fixture
def probe():
    p = Probe("fault_probe")
    yield p
    p.close()


def _wait_stack_up(probe: Probe, what: tuple[str, ...] = ("/perception/obstacles", "/correction/status")) -> None:
    for topic in what:
        probe.wait(lambda t=topic: probe.fresh(t) is not None, STARTUP_S, f"{topic} flowing")
    probe.wait(lambda: probe.clock_ns > 0, 10, "/clock")


def _window(probe: Probe, topic: str, seconds: float) -> list:
    """Messages arriving on a topic during the next `seconds` of wall time."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        time.sleep(0.05)
    return [m for _, _, m in probe.since(topic, t0)]


# ---- a) perception killed mid-run ------------------------------------------------------------------------------

def test_perception_killed_base_stops_in_braking_time_then_respawns_and_recovers(tmp_path, probe):
    params = _corrector_params()
    braking_s = params["max_linear"] / params["max_linear_acc"] + params["obstacle_timeout_s"]
    stack = RunningStack(amr_commands(), tmp_path / "logs")
    try:
        _wait_stack_up(probe)
        # Kill while the base is being driven, so the stop is a real one, and once the stack has settled. Twice (once
        # here under load, ~6 s after start-up, and once in CI) the respawn received nothing at all after Fast DDS
        # logged "Failed init_port ...: open_and_lock_file failed": a shared-memory port lock left behind by the
        # killed process, we believe while discovery was still opening ports. Not reproduced in 20 later kills.
        def settled() -> bool:
            recent = probe.since("/perception/obstacles", time.monotonic() - 2.0)
            return len(recent) >= 10 and nonzero_cmd(probe.fresh("/cmd_vel", 0.2))

        probe.wait(settled, 60, "the base driving (non-zero /cmd_vel) on 2 s of obstacles")
        old_pid = stack.supervisor.pid("perception_fusion")
        assert old_pid is not None
        t_kill, sim_kill, kill_ns = time.monotonic(), probe.clock_ns, time.time_ns()
        os.kill(old_pid, signal.SIGKILL)

        # The first stale status the corrector wrote after the kill (a status in flight at the kill may carry a
        # momentary stale from before it, after which fresh obstacles let the base speed up again).
        stale = probe.wait(lambda: [(t, m) for t, _, m in probe.since("/correction/status", t_kill)
                                    if m.flags & STALE_OBSTACLES
                                    and probe.sent_of("/correction/status", m) >= kill_ns],
                           20, "STALE_OBSTACLES on /correction/status")
        t_stale, first_stale = stale[0]
        # From the stale flag on, the base only brakes: commands the corrector wrote after that status, in the order
        # it wrote them (under load this probe's executor delivers a /cmd_vel backlog after later statuses).
        stale_sent = probe.sent_of("/correction/status", first_stale)
        probe.wait(lambda: any(_is_zero(m) for m in probe.sent_since("/cmd_vel", stale_sent)), 20, "/cmd_vel = 0")
        after = probe.sent_since("/cmd_vel", stale_sent)
        braking = [abs(m.linear.x) for m in after[:next(i for i, m in enumerate(after) if _is_zero(m)) + 1]]
        assert all(b <= a + 1e-6 for a, b in itertools.pairwise(braking)), f"sped up while stale: {braking}"

        # Perception respawns (respawn=True in the stack table) and obstacles flow again.
        probe.wait(lambda: stack.supervisor.pid("perception_fusion") not in (None, old_pid), 20, "respawn")
        assert any("respawning perception_fusion" in e for e in stack.events)
        probe.wait(lambda: probe.since("/perception/obstacles", t_stale), STARTUP_S, "obstacles after the respawn",
                   lambda: stack.report("perception_fusion"))
        # The stale period ends with the corrector's own status (it may discover the respawned perception before
        # this probe does). Flags accumulate over a status period (50 ms, longer under load), so the hold is
        # checked up to one status period before the first status that reported anything but stale inputs and
        # braking limits (the status period in which the obstacles came back mixes stale and fresh cycles).
        probe.wait(lambda: any(not m.flags & STALE_OBSTACLES for _, _, m in probe.since("/correction/status",
                                                                                         t_stale)),
                   20, "STALE_OBSTACLES cleared")
        statuses = probe.since("/correction/status", t_stale)
        only_stale = STALE_OBSTACLES | STALE_ACTION | CorrectionStatus.STALE_STATE | CorrectionStatus.LIMIT_ACCELERATION
        first_other = next(i for i, (_, _, m) in enumerate(statuses)
                           if not m.flags & STALE_OBSTACLES or m.flags & ~only_stale)
        assert first_other > 1, "stale period without stale-only statuses"
        t_clear = statuses[first_other - 2][0]
        cmds = [(t, s, m) for t, s, m in probe.since("/cmd_vel", t_kill) if t <= t_clear]
        moving = [i for i, (_, _, m) in enumerate(cmds) if not _is_zero(m)]
        rest = moving[-1] + 1 if moving else 0
        timeline = [(round(t - t_kill, 2), round(m.linear.x, 3), round(m.angular.z, 3)) for t, _, m in cmds
                    if not _is_zero(m)][-8:]
        flags = [(round(t - t_kill, 2), m.flags) for t, _, m in probe.since("/correction/status", t_kill)][-30:]
        assert rest < len(cmds) - 10, (f"not held at rest while obstacles were stale: last moving {timeline}, "
                                       f"status {flags}, stale flag cleared at {t_clear - t_kill:.2f} s")
        rest_sim_s = (cmds[rest][1] - sim_kill) * 1e-9
        # Commands carry the /clock the probe had seen: allow a few clock/command periods of slack.
        assert rest_sim_s <= braking_s + 0.25, f"at rest {rest_sim_s:.2f} s (sim) after the kill > {braking_s} s"
        assert all(stack.alive(name) for name in AMR_NODES)
        assert stack.code is None
    finally:
        stack.stop()
    assert stack.code == 0


# ---- b) camera silent / LiDAR silent ------------------------------------------------------------------------------

SILENT_CAMERA = {"image_topic": "/silent/color/image_raw", "depth_topic": "/silent/depth/image_raw",
                 "camera_info_topic": "/silent/color/camera_info", "depth_info_topic": "/silent/depth/camera_info"}
SILENT_LIDAR = {"lidar_topics": "/silent/lidar/points", "scan_topics": "/silent/scan"}


def test_camera_silent_gives_lidar_only_degraded_obstacles_without_stop(tmp_path, probe):
    stack = RunningStack(amr_commands({"perception_fusion": SILENT_CAMERA}), tmp_path / "logs")
    try:
        _wait_stack_up(probe)
        # Steady state: a whole second of statuses with fresh obstacles (start-up is stale until perception is up;
        # one fresh status at start-up is no steady state: a fresh clone's first inferences and imports stall it),
        # over which the sim clock ran: before the simulator's first steps every age reads fresh, and a simulator
        # catching up after its start-up stall then makes the obstacles of its first frame seconds old at once.
        def steady() -> bool:
            recent = probe.since("/correction/status", time.monotonic() - 1.0)
            return (len(recent) >= 10 and not any(m.flags & STALE_OBSTACLES for _, _, m in recent)
                    and recent[-1][1] - recent[0][1] >= 500_000_000)

        probe.wait(steady, STARTUP_S, "a second of statuses without STALE_OBSTACLES")
        t0 = time.monotonic()
        obstacles = _window(probe, "/perception/obstacles", 5.0)
        entries = probe.since("/correction/status", t0)
        status = [m for _, _, m in entries]
        assert len(obstacles) >= 10, "obstacles not published while the camera is silent"
        assert all(m.degraded for m in obstacles), "camera silent but obstacles not flagged degraded"
        assert all(m.sensors_alive & Obstacle.SENSOR_LIDAR for m in obstacles)
        assert not any(m.sensors_alive & Obstacle.SENSOR_CAMERA for m in obstacles)
        stale = [(round(t - t0, 2), s * 1e-9, m) for t, s, m in entries if m.flags & STALE_OBSTACLES]
        # This loaded machine stalls now and then for > 0.5 s (then the action is stale too, camera or not): only
        # obstacles going stale on their own would mean perception stalls without its camera.
        alone = [(t, s, list(m.reasons)) for t, s, m in stale if not m.flags & STALE_ACTION]
        assert status and not alone, f"camera silent but stopped for stale obstacles: {alone}"
        assert len(stale) <= 0.1 * len(status), f"stale obstacles in {len(stale)}/{len(status)} statuses"
        assert all(stack.alive(name) for name in AMR_NODES)
    finally:
        stack.stop()
    assert stack.code == 0


def test_lidar_silent_stops_the_base_for_stale_obstacles(tmp_path, probe):
    stack = RunningStack(amr_commands({"perception_fusion": SILENT_LIDAR}), tmp_path / "logs")
    try:
        _wait_stack_up(probe, ("/correction/status",))
        t_up = time.monotonic()
        t_diag = probe.wait(lambda: _diag_after(probe, t_up), STARTUP_S, "perception diagnostics (node spinning)")
        time.sleep(1.0)  # beyond obstacle_timeout_s: whatever perception publishes has had time to arrive
        t0 = time.monotonic()
        status = _window(probe, "/correction/status", 3.0)
        cmds = [m for _, _, m in probe.since("/cmd_vel", t0)]
        obstacles = [(round(t - t_diag, 2), m.degraded, m.sensors_alive, len(m.obstacles))
                     for t, _, m in probe.since("/perception/obstacles", t_diag)]
        assert status and all(m.flags & STALE_OBSTACLES for m in status), \
            f"LiDAR silent but obstacles not stale: {[m.flags for m in status]}; perception sent {obstacles[-5:]}"
        assert cmds and all(_is_zero(m) for m in cmds), "LiDAR silent but the base was commanded to move"
        assert all(stack.alive(name) for name in AMR_NODES)
    finally:
        stack.stop()


def _diag_after(probe: Probe, t0: float) -> float | None:
    """Wall time of the first perception diagnostics arriving after t0 (recorded by the probe)."""
    with probe.lock:
        seen = list(probe.diag_times.get("perception_fusion", []))
    return next((t for t in seen if t > t0), None)


# ---- c) policy server unreachable ----------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_policy_server_unreachable_holds_then_resumes(tmp_path, probe):
    port = _free_port()
    policy = {"backend": "openpi", "server_uri": f"ws://127.0.0.1:{port}"}
    stack = RunningStack(amr_commands({"policy_inference": policy}), tmp_path / "logs")
    server = None
    try:
        _wait_stack_up(probe)
        t0 = time.monotonic()
        status = _window(probe, "/correction/status", 3.0)
        cmds = [m for _, _, m in probe.since("/cmd_vel", t0)]
        assert probe.count("/policy/action_chunk") == 0, "chunks without a policy server"
        assert status and all(m.flags & STALE_ACTION for m in status)
        assert cmds and all(_is_zero(m) for m in cmds), "base moved without a policy"
        assert stack.alive("policy_inference"), "policy node died instead of retrying"

        server = subprocess.Popen([sys.executable, "-m", "physical_ai.policy.policy_server",
                                   str(ROOT / "models" / "amr_nav"), "--port", str(port)], cwd=ROOT,
                                  stdout=open(tmp_path / "server.out", "wb"), stderr=subprocess.STDOUT)
        t_server = time.monotonic()
        probe.wait(lambda: probe.since("/policy/action_chunk", t_server), STARTUP_S, "chunks after the server starts")
        probe.wait(lambda: any(not m.flags & STALE_ACTION for _, _, m in probe.since("/correction/status",
                                                                                      t_server)),
                   20, "STALE_ACTION cleared")
        probe.wait(lambda: any(nonzero_cmd(m) for _, _, m in probe.since("/cmd_vel", t_server)), 30,
                   "the base commanded again")
        chunk = probe.since("/policy/action_chunk", t_server)[-1][2]
        assert list(chunk.action_names) == ["linear_x", "angular_z"] and np.isfinite(chunk.values).all()
    finally:
        if server is not None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
        stack.stop()
    assert stack.code == 0


# ---- d) malformed burst ----------------------------------------------------------------------------------------------

NAN = math.nan
# Per node, one pattern per malformed input it subscribes to: its reject/drop counter must rise during the burst.
# The shared validation layer (issue 22) drops most of them before node logic, as `invalid:<topic>:<reason>`.
EXPECTED_REJECTS = {
    "mujoco_sim": [r"rejected\.cmd_vel|invalid:/cmd_vel:"],
    "perception_fusion": [r"(malformed|nonfinite_points|empty_cloud):lidar|invalid:/lidar/points:",
                          r"malformed:scan|invalid:/scan:",
                          r"(malformed|size_mismatch):camera|invalid:/camera/color/image_raw:",
                          r"malformed:depth|invalid:/camera/depth/image_raw:"],
    "policy_inference": [r"rejected\.odom|invalid:/odom:"],
    "trajectory_correction": [r"points_malformed|invalid:/lidar/points:", r"scan_malformed|invalid:/scan:",
                              r"odom_malformed|invalid:/odom:", r"rejected_chunk",
                              r"obstacles_nonfinite|invalid:/perception/obstacles:"],
}


def _reject_counts(diagnostics: dict[str, dict[str, str]]) -> dict[tuple[str, str], int]:
    """(node, pattern) -> sum of the node's counters matching the pattern."""
    return {(node, pattern): sum(int(v) for k, v in diagnostics.get(node, {}).items()
                                 if k.startswith("count.") and re.search(pattern, k))
            for node, patterns in EXPECTED_REJECTS.items() for pattern in patterns}


def _cloud(stamp, *, truncated: bool) -> PointCloud2:
    fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, n in enumerate("xyz")]
    data = np.full((64, 3), NAN, np.float32).tobytes()
    msg = PointCloud2(height=1, width=64, fields=fields, is_bigendian=False, point_step=12, row_step=12 * 64,
                      data=data[:100] if truncated else data, is_dense=True)
    msg.header.stamp, msg.header.frame_id = stamp, "lidar_link"
    return msg


def _malformed(stamp) -> list[tuple[str, object]]:
    """(topic, message) pairs covering every input of the AMR stack."""
    image = Image(height=480, width=640, encoding="rgb8", step=10, data=bytes(100))
    weird = Image(height=4, width=4, encoding="bogus42", step=4, data=bytes(16))
    depth = Image(height=480, width=640, encoding="32FC1", step=640 * 4, data=bytes(64))
    scan = LaserScan(angle_min=0.0, angle_max=1.0, angle_increment=NAN, range_min=0.1, range_max=20.0,
                     ranges=[NAN] * 50)
    odom = Odometry()
    odom.pose.pose.orientation.x = odom.pose.pose.orientation.w = NAN
    odom.child_frame_id = "base_link"
    nan_chunk = ActionChunk(embodiment="amr", action_names=["linear_x", "angular_z"], start_time=stamp, dt=0.1,
                            horizon=4, values=[NAN] * 8, model_id="garbage")
    short_chunk = ActionChunk(embodiment="amr", action_names=["linear_x", "angular_z"], start_time=stamp, dt=0.1,
                              horizon=10, values=[0.1] * 3, model_id="garbage")
    obstacles = ObstacleArray(obstacles=[Obstacle(id=1, classification=Obstacle.CLASS_PERSON)])
    obstacles.obstacles[0].pose.position.x = NAN
    twist = Twist()
    twist.linear.x = NAN
    out = []
    for msg in (image, weird, depth, scan, odom, nan_chunk, short_chunk, obstacles):
        msg.header.stamp = stamp
        msg.header.frame_id = {"Odometry": "odom", "LaserScan": "lidar_link"}.get(type(msg).__name__, "base_link")
    for msg in (image, weird):
        msg.header.frame_id = "camera_color_optical_frame"
    depth.header.frame_id = "camera_depth_optical_frame"
    out += [("/lidar/points", _cloud(stamp, truncated=True)), ("/lidar/points", _cloud(stamp, truncated=False)),
            ("/camera/color/image_raw", image), ("/camera/color/image_raw", weird),
            ("/camera/depth/image_raw", depth), ("/scan", scan), ("/odom", odom),
            ("/policy/action_chunk", nan_chunk), ("/policy/action_chunk", short_chunk),
            ("/perception/obstacles", obstacles), ("/cmd_vel", twist)]
    return out


def test_malformed_burst_keeps_every_node_up_and_counts_rejects(tmp_path, probe):
    stack = RunningStack(amr_commands(), tmp_path / "logs")
    try:
        _wait_stack_up(probe)
        probe.wait(lambda: all(n in probe.diagnostics for n in AMR_NODES), 30, "diagnostics of every node")
        with probe.lock:
            before = _reject_counts(probe.diagnostics)
        pids = {n: stack.supervisor.pid(n) for n in AMR_NODES}
        publishers: dict[tuple[str, type], object] = {}
        for topic, msg in _malformed(ns_to_stamp(probe.clock_ns)):
            key = (topic, type(msg))
            if key not in publishers:
                publishers[key] = probe.node.create_publisher(type(msg), topic, 10)
        probe.wait(lambda: all(p.get_subscription_count() > 0 for p in publishers.values()), 20,
                   "every input topic has a subscriber")
        sent = 0
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            for topic, msg in _malformed(ns_to_stamp(probe.clock_ns)):
                publishers[(topic, type(msg))].publish(msg)
                sent += 1
            time.sleep(0.01)
        assert sent > 200
        # Counters appear on the next diagnostics period (1 s); every node must have counted rejects/drops.
        def not_risen() -> list[tuple[str, str]]:
            with probe.lock:
                after = _reject_counts(probe.diagnostics)
            return [key for key in before if after[key] <= before[key]]

        # Counters appear on the next diagnostics period (1 s).
        deadline = time.monotonic() + 20
        while not_risen() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not not_risen(), f"no reject/drop counted for (node, input): {not_risen()}"
        time.sleep(1.0)  # a late crash from the burst's tail would show here
        assert {n: stack.supervisor.pid(n) for n in AMR_NODES} == pids, f"a node died or respawned: {stack.events}"
        assert not any("exited" in e for e in stack.events), stack.events
        # The stack keeps working: fresh obstacles and status after the burst, and no NaN reached the actuator.
        probe.wait(lambda: probe.fresh("/perception/obstacles", 0.5) is not None, 20, "obstacles after the burst")
        assert probe.fresh("/correction/status", 0.5) is not None
    finally:
        stack.stop()
    assert stack.code == 0

"""A recording of the real ROS stack, made by the recorder node, builds into a dataset that is true to the run.

The recorder logs receive times on the system clock while the simulator stamps in simulation time (restarting at
each reset), /cmd_vel (a Twist) has no stamp, and the simulator republishes its latched map -> odom transform on
/tf_static when it resets: the built states must be the robot's true map-frame poses in every episode, and the
actions the commands in force, checked against the simulator's privileged ground truth and against /clock.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import numpy as np

from physical_ai.data.build import build
from physical_ai.data.mcap_read import read_recording
from physical_ai.training.dataset import open_dataset
from physical_ai.training.ros_eval import evaluate_ros

ROOT = Path(__file__).resolve().parents[2]
NS = 1_000_000_000
EPISODE_S = 6.0


def ground_truth_runs(path: Path) -> list[np.ndarray]:
    """Per simulated episode (the clock restarts at a reset): rows (stamp ns, x, y) of the robot's true pose."""
    runs: list[list[tuple[int, float, float]]] = []
    last = None
    for m in read_recording(path, ["/sim/ground_truth"]).messages:
        if last is None or m.stamp_ns < last:
            runs.append([])
        last = m.stamp_ns
        p = m.msg.body_poses[list(m.msg.body_names).index("base_link")].position
        runs[-1].append((m.stamp_ns, p.x, p.y))
    return [np.array(r, np.float64) for r in runs]


def commands_on_clock(path: Path) -> list[np.ndarray]:
    """Per simulated episode: rows (sim time ns, linear_x, angular_z) of /cmd_vel, each command timed by the newest
    /clock sent before it: the simulation time its sender read, and the one from which the simulator (publishing
    /clock as it steps) takes it up. Both send times are the publishers', kept by the recorder. Computed here from
    the raw recording, apart from the build's episode splitting, resampling and offsets, which it checks."""
    recording = read_recording(path, ["/clock", "/cmd_vel"]).messages
    clocks = sorted((m.publish_time_ns, m.msg.clock.sec * NS + m.msg.clock.nanosec)
                    for m in recording if m.topic == "/clock")
    sent = np.array([c[0] for c in clocks], np.int64)
    episode = np.cumsum([0] + [int(b[1] < a[1]) for a, b in itertools.pairwise(clocks)])
    runs: list[list[tuple[int, float, float]]] = [[] for _ in range(episode[-1] + 1)]
    for m in recording:
        i = int(np.searchsorted(sent, m.publish_time_ns, side="right")) - 1
        if m.topic == "/cmd_vel" and i >= 0:
            runs[episode[i]].append((clocks[i][1], m.msg.linear.x, m.msg.angular.z))
    return [np.array(r, np.float64) for r in runs]


def test_recorded_ros_run_builds_true_to_the_run(tmp_path: Path) -> None:
    rec = tmp_path / "run.mcap"
    rows, _ = evaluate_ros("amr", ROOT / "models" / "amr_nav", episodes=2, seed=200000, time_limit_s=EPISODE_S,
                           record=rec)
    assert len(rows) == 2
    odom = read_recording(rec, ["/odom"]).messages
    # the case under test: log times on the system clock, stamps in simulation time
    assert abs(odom[0].log_time_ns - time.time_ns()) < 3600 * NS and odom[0].stamp_ns < 60 * NS
    # the recorder keeps each message's send time (the publisher's, before it was received and logged)
    assert all(0 < m.publish_time_ns <= m.log_time_ns for m in odom) and odom[-1].publish_time_ns < odom[-1].log_time_ns
    assert_built_true_to_the_run(rec, tmp_path / "ds")


def assert_built_true_to_the_run(rec: Path, out: Path) -> None:
    """Build `rec` (two episodes) and check every frame against the simulator's ground truth and /clock."""
    summary = build([str(rec)], out, "amr", workers=1)
    drops = json.loads((out / "meta" / "cleanse_report.json").read_text())["drops"]
    assert summary["episode_splits"] == {"reset": 1}, summary
    # What a loaded machine costs (perception publishing late or losing frames) is dropped and counted; nothing
    # else is (before the clocks were aligned, every frame was 'warmup': no command ever looked fresh).
    assert summary["frames"] >= 20 and drops.get("warmup", 0) < 2 * EPISODE_S * 10, (summary, drops)
    assert {k.split(":")[0] for k in drops} <= {"warmup", "stale", "message_loss", "too_short"}, drops
    assert not [k for k in drops if k.startswith("stale:") and k != "stale:/perception/obstacles"], drops
    ds = open_dataset(out)
    truth, commands = ground_truth_runs(rec), commands_on_clock(rec)
    assert len(truth) == len(commands) == 2
    for e, info in enumerate(ds.episodes):
        episode = ds.load_episode(e)
        k = int(info["recording_episode"])
        times = round(float(info["start_s"]) * NS) + np.arange(len(episode["action"])) * (NS // int(ds.info["fps"]))
        # states: the robot's pose in the map frame of its own episode (the next episode's map -> odom, recorded
        # before this one's last messages, would put every pose 0.25 m off for these seeds)
        gt = truth[k][np.abs(truth[k][:, 0][None, :] - times[:, None]).argmin(1)]
        error = np.hypot(episode["observation.state"][:, 0] - gt[:, 1], episode["observation.state"][:, 1] - gt[:, 2])
        assert error.max() < 0.05, (e, error.max())
        # actions: a command of this episode in force within 50 ms of frame time + action offset (0.05 s)
        cmd = commands[k]
        due = times + NS // 20
        first = np.searchsorted(cmd[:, 0], due - NS // 20, side="right") - 1
        last = np.searchsorted(cmd[:, 0], due + NS // 20, side="right") - 1
        for i, (a, b) in enumerate(zip(first, last, strict=True)):
            window = cmd[max(a, 0):b + 1, 1:]
            assert np.any(np.all(np.abs(window - episode["action"][i]) < 1e-6, axis=1)), (e, i)

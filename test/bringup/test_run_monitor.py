"""The run monitor's reaction latency on synthetic wire data: DDS times, the sim-time mapping and causality."""

from __future__ import annotations

import numpy as np
import pytest
import rclpy

from physical_ai.control.flags import OBSTACLE_REACTION
from physical_ai_nodes._run_monitor import RunMonitor

MS = 1_000_000
WALL0 = 1_700_000_000_000_000_000  # system clock [ns] at sim time 0
SLOWDOWN = 16
STOP = 32


@pytest.fixture
def monitor():
    rclpy.init()
    node = RunMonitor("amr")
    yield node
    node.destroy_node()
    rclpy.shutdown()


def _world(m: RunMonitor, person_y: list[float], late_ms: dict[int, float] | None = None) -> None:
    """2 s at 1 m/s along x; a person 1.2 m ahead at lateral person_y[k] during each 100 ms LiDAR period k.

    /clock every 5 ms, published when due except the sim times in `late_ms` (a simulator behind its schedule);
    LiDAR frames every 100 ms, each received 20 ms after its stamp.
    """
    late_ms = late_ms or {}
    m._clock = [(t, WALL0 + t + int(late_ms.get(t // MS, 0) * MS)) for t in range(0, 2000 * MS + 1, 5 * MS)]
    m._lidar = [(k * 100 * MS, 0, WALL0 + k * 100 * MS + 20 * MS) for k in range(len(person_y))]
    for t in range(0, 2000 * MS, 10 * MS):
        x = t * 1e-9
        m._gt_times.append(t)
        m._gt_robot.append(np.array([x, 0.0, 0.0, 1.0, 0.0]))
        m._gt_people.append(np.array([[x + 1.2, person_y[min(t // (100 * MS), len(person_y) - 1)]]]))


def test_sim_time_maps_to_when_it_was_due_not_to_a_late_publication(monitor) -> None:
    _world(monitor, [5.0] * 20, late_ms={500: 7.0, 505: 4.0})
    assert monitor.sim_to_wall(500 * MS) == WALL0 + 500 * MS  # its own /clock went out 7 ms late
    assert monitor.sim_to_wall(1002 * MS) == WALL0 + 1002 * MS  # between two publications
    assert monitor.sim_to_wall(2500 * MS) is None  # not reached yet
    # a /clock gap longer than the window (dropped publications): the publications around it still map it
    monitor._clock = [c for c in monitor._clock if not 600 * MS < c[0] < 1400 * MS]
    assert monitor.sim_to_wall(1000 * MS) == WALL0 + 1000 * MS
    assert monitor.lidar_transport_ms() == pytest.approx([20.0] * 20)


def test_reaction_counts_only_a_corrected_cycle_that_had_the_frame(monitor) -> None:
    # the person steps into the path with the frame of 0.5 s (5 m away before: not in the path)
    _world(monitor, [5.0] * 5 + [0.1] * 15)
    frame = 500 * MS
    monitor._status = [
        # already slowing for a predicted crossing, from the frame before: not a reaction to this one
        (WALL0 + frame + 6 * MS, frame + 5 * MS, SLOWDOWN, frame - 100 * MS),
        # a cycle that had the frame but did not correct anything
        (WALL0 + frame + 9 * MS, frame + 5 * MS, 0, frame),
        # the first corrected cycle with the frame (its stamp is the frame's; the status went out 14 ms after)
        (WALL0 + frame + 14 * MS, frame + 10 * MS, STOP, frame),
        (WALL0 + frame + 24 * MS, frame + 20 * MS, STOP, frame),
    ]
    assert monitor.reaction_latencies_ms() == pytest.approx([14.0])
    assert monitor.reactions_not_needed == 0 and monitor.path_entries_slow == 0


def test_no_corrected_cycle_with_the_frame_is_counted_as_not_needed(monitor) -> None:
    _world(monitor, [5.0] * 5 + [0.1] * 15)
    frame = 500 * MS
    monitor._status = [(WALL0 + frame + 6 * MS, frame, SLOWDOWN, frame - 100 * MS),
                       (WALL0 + frame + 9 * MS, frame + 5 * MS, 0, frame)]
    assert monitor.reaction_latencies_ms() == []
    assert monitor.reactions_not_needed == 1
    assert SLOWDOWN & OBSTACLE_REACTION and STOP & OBSTACLE_REACTION


def test_the_swept_path_is_the_corrector_s_hold_then_brake_motion(monitor) -> None:
    # 1 m/s, 1 m/s^2, 2 s look-ahead: hold 1 s, brake 1 s = 1.5 m, plus half the footprint (0.3), the clearance
    # (0.3) and the worker's radius (0.22): 2.32 m ahead; 0.225 + 0.3 + 0.22 = 0.745 m to the side
    _world(monitor, [0.1] * 20)
    assert monitor._person_in_path(0)  # 1.2 m ahead
    monitor._gt_people = [np.add(p, [1.0, 0.0]) for p in monitor._gt_people]
    assert monitor._person_in_path(0)  # 2.2 m
    monitor._gt_people = [np.add(p, [0.2, 0.0]) for p in monitor._gt_people]
    assert not monitor._person_in_path(0)  # 2.4 m: the corrector would still stop in time
    monitor._gt_people = [np.array([[1.2, 0.7]]) for _ in monitor._gt_people]
    assert monitor._person_in_path(0)  # at the path's edge
    monitor._gt_people = [np.array([[1.2, 0.8]]) for _ in monitor._gt_people]
    assert not monitor._person_in_path(0)  # beside the path
    monitor._gt_people = [np.array([[-1.2, 0.0]]) for _ in monitor._gt_people]
    assert not monitor._person_in_path(0)  # behind


def test_the_swept_path_follows_a_turn(monitor) -> None:
    # turning left at 1 rad/s: a person ahead-left is in the arc, one straight ahead beyond the arc is not
    _world(monitor, [0.1] * 20)
    monitor._gt_robot = [np.array([0.0, 0.0, 0.0, 1.0, 1.0]) for _ in monitor._gt_robot]
    monitor._gt_people = [np.array([[1.0, 0.5]]) for _ in monitor._gt_people]
    assert monitor._person_in_path(0)
    monitor._gt_people = [np.array([[2.0, -0.4]]) for _ in monitor._gt_people]
    assert not monitor._person_in_path(0)


def test_the_swept_path_comes_from_the_corrector_s_parameters() -> None:
    # a longer look-ahead sweeps farther: the same worker 2.4 m ahead is in a 3 s look-ahead's path
    from physical_ai.control.amr import amr_config, in_swept_path

    ahead = np.array([[2.4, 0.0]])
    assert not in_swept_path(amr_config({}), 1.0, 0.0, ahead, np.array([0.22]))
    assert in_swept_path(amr_config({"horizon_s": 3.0}), 1.0, 0.0, ahead, np.array([0.22]))
    assert amr_config({"rate_hz": 200.0}).period_s == pytest.approx(0.005)


def test_the_swept_path_is_that_of_the_policy_s_command(monitor) -> None:
    # the robot moves at 1 m/s; the policy's chunk (received before the frame) asks for a stop: from 1 m/s at
    # 1 m/s^2 it covers 0.5 m, so a worker 2.2 m ahead is not in its path (no correction due), one 1.2 m ahead is
    from physical_ai.control.chunks import Reference

    _world(monitor, [0.1] * 20)
    frame = 500 * MS
    monitor._chunks, monitor._chunk_rx = [Reference(np.arange(10) * 0.1, np.zeros((10, 2)))], [WALL0 + 100 * MS]
    assert monitor._nominal_at(frame) == (0.0, 0.0)
    assert monitor._person_in_path(50, monitor._nominal_at(frame))  # 1.2 m
    monitor._gt_people = [np.add(p, [1.0, 0.0]) for p in monitor._gt_people]
    assert not monitor._person_in_path(50, monitor._nominal_at(frame))  # 2.2 m
    assert monitor._person_in_path(50)  # but in the path of the present motion
    # a chunk received after the frame was not what the corrector had; a chunk long past is no command
    monitor._chunk_rx = [WALL0 + frame + 1 * MS]
    assert monitor._nominal_at(frame) is None
    monitor._chunks, monitor._chunk_rx = [Reference(np.arange(10) * 0.1 - 2.0, np.zeros((10, 2)))], [WALL0]
    assert monitor._nominal_at(frame) is None


def test_the_report_has_one_time_axis_no_sentinel_and_the_real_time_factor(monitor) -> None:
    # issue 15: timeline.png plotted "nearest person" from the 1e9/inf of "nobody near yet", and the speed and
    # corrector panels on wall time since the monitor started (0-35 s) beside sim time (0-21 s)
    from geometry_msgs.msg import Pose, Twist
    from physical_ai_stack.msg import CorrectionStatus, SimGroundTruth
    from rosgraph_msgs.msg import Clock

    from physical_ai.convert import ns_to_stamp

    for k in range(0, 201):  # 2 s of sim time published over 4 s of wall time: half real time
        t = k * 10 * MS
        monitor._on_clock(Clock(clock=ns_to_stamp(t)), {"source_timestamp": WALL0 + 2 * t})
        if k % 10 == 0:
            gt = SimGroundTruth(body_names=["base_link", "worker_0"], body_poses=[Pose(), Pose()],
                                body_twists=[Twist(), Twist()],
                                min_person_clearance_m=float("inf") if k < 100 else 1e9 if k < 150 else 1.5)
            gt.header.stamp = ns_to_stamp(t)
            monitor._on_gt(gt)
            monitor._on_cmd(Twist(), {"received_timestamp": WALL0 + 2 * t + MS, "source_timestamp": WALL0 + 2 * t})
            status = CorrectionStatus(flags=SLOWDOWN)
            status.header.stamp = ns_to_stamp(t)
            monitor._on_status(status, {"source_timestamp": WALL0 + 2 * t})
    log = monitor.log
    assert monitor.realtime_factor() == pytest.approx(0.5)
    assert [c for _, c in log.clearance] == [1.5] * 6  # only real distances
    for series in (log.speed, log.interventions, log.clearance, log.robot):
        times = [s[0] for s in series]
        assert times and 0.0 <= min(times) and max(times) <= 2.0  # sim seconds, all of them
    assert [s[0] for s in log.speed] == pytest.approx([s[0] for s in log.interventions])


def test_the_stop_command_after_mark_stopping_is_not_judged_against_the_limits(monitor) -> None:
    """A ramp within the limits, then the corrector's zero when the stack is stopped: a violation only if judged."""
    limits = {"max_linear": 1.0, "max_angular": 1.5, "max_acc": 1.0, "max_alpha": 2.0, "period_s": 0.01}
    for k in range(50):  # 0.5 s turning up at 1.5 rad/s^2, one command per 10 ms
        monitor._cmds.append((WALL0 + k * 10 * MS, 0.0, 0.015 * k))
        monitor._cmd_sent.append(WALL0 + k * 10 * MS)
    assert monitor.limit_violations(**limits) == 0
    monitor.mark_stopping()
    monitor._cmds.append((WALL0 + 500 * MS, 0.0, 0.0))
    monitor._cmd_sent.append(WALL0 + 500 * MS)
    assert monitor.limit_violations(**limits) == 0
    monitor._judged_cmds = None  # judged, the stop is a step of 0.735 rad/s in 10 ms
    assert monitor.limit_violations(**limits) == 1
    monitor.new_episode()  # a new episode judges every command again
    assert monitor._judged_cmds is None

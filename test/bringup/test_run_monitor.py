"""The run monitor's reaction latency on synthetic wire data: DDS times, the sim-time mapping and causality."""

from __future__ import annotations

import numpy as np
import pytest
import rclpy

from physical_ai_nodes._run_monitor import REACTION_FLAGS, RunMonitor

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
        m._gt_robot.append(np.array([x, 0.0, 0.0, 1.0]))
        m._gt_people.append(np.array([[x + 1.2, person_y[min(t // (100 * MS), len(person_y) - 1)]]]))


def test_sim_time_maps_to_when_it_was_due_not_to_a_late_publication(monitor) -> None:
    _world(monitor, [5.0] * 20, late_ms={500: 7.0, 505: 4.0})
    assert monitor.sim_to_wall(500 * MS) == WALL0 + 500 * MS  # its own /clock went out 7 ms late
    assert monitor.sim_to_wall(1002 * MS) == WALL0 + 1002 * MS  # between two publications
    assert monitor.sim_to_wall(2500 * MS) is None  # not reached yet
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
    assert SLOWDOWN & REACTION_FLAGS and STOP & REACTION_FLAGS


def test_the_swept_path_is_footprint_and_clearance_over_the_look_ahead(monitor) -> None:
    # at 1 m/s over the 2 s horizon, plus half the footprint and the clearance: 2.6 m ahead; 0.775 m to the side
    _world(monitor, [0.1] * 20)
    assert monitor._person_in_path(0)  # 1.2 m ahead
    monitor._gt_people = [np.add(p, [1.3, 0.0]) for p in monitor._gt_people]
    assert monitor._person_in_path(0)  # 2.5 m
    monitor._gt_people = [np.add(p, [0.2, 0.0]) for p in monitor._gt_people]
    assert not monitor._person_in_path(0)  # 2.7 m
    monitor._gt_people = [np.array([[1.2, 0.85]]) for _ in monitor._gt_people]
    assert not monitor._person_in_path(0)  # beside the path

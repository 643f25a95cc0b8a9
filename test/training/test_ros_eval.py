"""`physai eval --mode ros`: a seeded episode through the real nodes (simulator, perception, policy, corrector)."""

from __future__ import annotations

from pathlib import Path

from physical_ai.training.ros_eval import evaluate_ros

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_vehicle_policy_completes_an_episode_through_the_nodes() -> None:
    rows, summary = evaluate_ros("vehicle", ROOT / "models" / "vehicle_drive", episodes=1, seed=100000)
    assert summary["mode"] == "ros" and summary["episodes"] == 1 and len(rows) == 1
    row = rows[0]
    # scored from the simulator's ground truth: the car drove the lane and stopped behind the lead car
    assert row.success, row
    assert row.collisions == 0 and row.limit_violations == 0
    assert 3.0 < row.time_s < 60.0 and row.progress > 0.9

"""The fleet scenario in-process: one world, three robots that see each other, contacts scored by kind."""

from __future__ import annotations

import numpy as np

from physical_ai.sim.fleet import ROUTES, FactoryFleet
from physical_ai.sim.runner import SimRunner, StreamConfig, default_streams
from physical_ai.sim.scenarios import FactoryFloor, make_scenario


def _cloud(out, robot: str) -> np.ndarray:
    scan = [o for o in out if o.stream == "lidar" and o.robot == robot][-1].data
    return np.stack([scan["x"], scan["y"], scan["z"]], axis=1)


def test_every_route_is_the_trained_task_in_its_own_frame():
    sc = make_scenario("fleet", 7)
    assert isinstance(sc, FactoryFleet) and [r.name for r in sc.robots] == [r.robot for r in ROUTES]
    for robot in sc.robots:
        start = robot.route.to_map(*FactoryFloor.START, 0.0)[:2]
        assert np.hypot(*(robot.base_pose()[:2] - start)) < 0.3          # randomised as the single AMR's start
        assert np.allclose(robot.goal, robot.route.to_map(*FactoryFloor.GOAL, 0.0)[:2])
        static, dynamic = robot.frames()
        assert {(f.parent, f.child) for f in static} >= {("map", "odom"), ("map", "route"), ("base_link", "lidar_link")}
        assert [(f.parent, f.child) for f in dynamic] == [("odom", "base_link")]
    # robot2 drives the other way: its route's x axis points west
    assert np.isclose(abs(sc.robot("robot2").route.origin[2]), np.pi)
    # the routes keep the robots apart at their stations and their goals off the workers' aisles
    goals = np.array([r.goal for r in sc.robots])
    assert min(np.linalg.norm(goals[i] - goals[j]) for i in range(3) for j in range(i)) > 1.0
    assert all(min(abs(g[0] - x) for x in FactoryFloor.WORKER_X) > 1.0 for g in goals)


def test_each_robot_sees_the_others_but_not_itself():
    sc = make_scenario("fleet", 3, {"worker_times_s": [1e6, 1e6]})
    streams = default_streams("fleet")
    streams["rgbd"] = StreamConfig(0.0)
    runner = SimRunner(sc, streams, seed=3)
    out = runner.advance(0.3)
    assert {o.robot for o in out} == {"", "robot1", "robot2", "robot3"}
    assert {o.stream for o in out if o.robot == ""} == {"ground_truth"}
    r1, r3 = sc.robot("robot1"), sc.robot("robot3")
    cloud = _cloud(out, "robot1")  # lidar_link frame; robot3 is ~1.5 m behind robot1 in the same lane
    x1, y1, yaw1 = r1.base_pose()
    d = r3.base_pose()[:2] - [x1, y1]
    c, s = np.cos(yaw1), np.sin(yaw1)
    rel = np.array([c * d[0] + s * d[1], -s * d[0] + c * d[1]]) - [0.15, 0.0]  # robot3 in robot1's lidar frame
    near = np.hypot(cloud[:, 0] - rel[0], cloud[:, 1] - rel[1]) < 0.45
    assert near.sum() > 50, "robot1's LiDAR should hit robot3's hull"
    own = (np.abs(cloud[:, 0] + 0.15) < 0.35) & (np.abs(cloud[:, 1]) < 0.3)
    assert own.sum() == 0, "a robot's LiDAR must not see its own hull"


def test_contacts_are_counted_by_kind_for_each_robot():
    sc = make_scenario("fleet", 3, {"worker_times_s": [1e6, 1e6], "max_linear": 2.0, "max_accel": 5.0})
    r1, r2, r3 = (sc.robot(n) for n in ("robot1", "robot2", "robot3"))
    for _ in range(400):  # robot3 drives into robot1, which stands still
        r3.command_twist(1.5, 0.0)
        sc.step(5)
        if r3.contacts["robot"]:
            break
    assert r3.contacts["robot"] >= 1 and r1.contacts["robot"] >= 1
    assert r2.contacts == {"person": 0, "robot": 0, "static": 0}
    assert not r1.success and not r3.success
    gt = r1.ground_truth()
    assert gt.collisions >= 1 and gt.body_names[0] == "base_link" and "robot3/base_link" in gt.body_names
    assert r1.min_robot_clearance <= 0.0
    fleet_gt = sc.ground_truth()
    assert fleet_gt.collisions == sum(sum(r.contacts.values()) for r in sc.robots)
    assert not fleet_gt.task_success


def test_a_worker_walking_into_a_robot_is_a_person_contact():
    sc = make_scenario("fleet", 3, {"worker_times_s": [0.0, 1e6]})
    r2 = sc.robot("robot2")
    sc.data.qpos[r2.qadr] = [0.0, 0.9, np.pi]  # in worker_1's aisle at x = 0
    for _ in range(1500):
        sc.step(5)
        if r2.contacts["person"]:
            break
    assert r2.contacts["person"] >= 1
    assert r2.min_person_clearance <= 0.0


def test_a_robot_at_its_goal_is_parked_until_the_episode_ends():
    sc = make_scenario("fleet", 3, {"worker_times_s": [1e6, 1e6]})
    r1, r2 = sc.robot("robot1"), sc.robot("robot2")
    sc.data.qpos[r1.qadr] = [*r1.goal, 0.0]  # robot1 stands on its goal: reached after the next step
    sc.step(5)
    assert r1.reached and r1.success and not sc.done  # the others are still on their way
    start1, start2 = r1.base_pose(), r2.base_pose()
    for _ in range(200):  # 1 s: both told to drive on at full speed
        r1.command_twist(1.0, 0.5)
        r2.command_twist(1.0, 0.0)
        sc.step(5)
    assert np.allclose(r1.base_pose(), start1, atol=1e-3) and r1.speed() < 1e-3 and r1.success
    assert np.hypot(*(r2.base_pose()[:2] - start2[:2])) > 0.3  # a robot on its way still drives

"""Namespaced bring-up: parameter files that serve any namespace, relative topic names, two stacks in one domain."""

from __future__ import annotations

import ast
import time

import pytest
from bringup_testlib import ROOT, RunningStack

from physical_ai.bringup.stack import (
    FOXGLOVE,
    RECORDER,
    ROBOTS,
    STACK,
    clock_topic,
    node_command,
    node_params,
    nodes_for,
    params_file,
    section_matches,
    stack_commands,
)

# Names that are global on purpose: the diagnostics aggregator's topic, the one clock of a shared simulator, and
# ROS's own graph topics.
GLOBAL_TOPICS = {"/diagnostics", "/clock", "/rosout", "/parameter_events"}


@pytest.mark.parametrize(("key", "fqn", "expected"), [
    ("policy_inference", "/policy_inference", True),
    ("policy_inference", "/robot1/policy_inference", False),
    ("/robot1/policy_inference", "/robot1/policy_inference", True),
    ("/robot1/policy_inference", "/robot2/policy_inference", False),
    ("/**/policy_inference", "/policy_inference", True),
    ("/**/policy_inference", "/robot1/policy_inference", True),
    ("/**/policy_inference", "/site/robot1/policy_inference", True),
    ("/**/policy_inference", "/robot1/trajectory_correction", False),
    ("/*/policy_inference", "/policy_inference", False),
    ("/*/policy_inference", "/robot1/policy_inference", True),
    ("/**", "/robot1/anything", True),
])
def test_section_keys_match_as_rclpy_matches_them(key, fqn, expected):
    assert section_matches(key, fqn) is expected


def test_later_sections_override_earlier_ones_in_file_order(tmp_path):
    # The order rclpy applies them in (checked against rclpy: a later wildcard section overrides an exact one).
    path = tmp_path / "p.yaml"
    path.write_text("talker:\n  ros__parameters: {b: 2}\n/**/talker:\n  ros__parameters: {a: 1, b: 1}\n"
                    "/**:\n  ros__parameters: {a: 5}\n/robot1/talker:\n  ros__parameters: {c: 7}\n")
    assert node_params(path, "talker") == {"a": 5, "b": 1}
    assert node_params(path, "talker", "robot1") == {"a": 5, "b": 1, "c": 7}
    assert node_params(path, "listener", "robot2") == {"a": 5}


@pytest.mark.parametrize("robot", ROBOTS)
def test_every_node_reads_its_section_in_any_namespace(robot):
    params = params_file(robot)
    for spec in nodes_for("mujoco"):
        root = node_params(params, spec.name)
        assert root, f"config/{robot}.yaml: no section for {spec.name}"
        assert node_params(params, spec.name, "robot1") == root
        assert node_params(params, spec.name, "/site/robot7/") == root
    assert node_params(params, "mujoco_sim", "robot1")["scenario"] == robot


@pytest.mark.parametrize("robot", ROBOTS)
def test_topic_parameters_are_relative(robot):
    # An absolute name would stay at the root in a namespaced bring-up (issue 19: /perception/* and /cmd_vel did).
    params = params_file(robot)
    for spec in (*STACK, RECORDER, FOXGLOVE):
        for key, value in node_params(params, spec.name).items():
            if not (key.endswith("_topic") or key.endswith("_topics") or key == "topics"):
                continue
            names = value if isinstance(value, list) else str(value).split(",")
            for name in (n.strip() for n in names):
                assert not name.startswith("/") or name in GLOBAL_TOPICS, f"{spec.name}.{key}: {name} is absolute"


def test_nodes_declare_no_absolute_topic_names():
    # Every string literal handed to a topic parameter or endpoint in nodes/ (defaults included) is relative.
    offenders = []
    for path in sorted((ROOT / "nodes").glob("*.py")):
        for call in ast.walk(ast.parse(path.read_text())):
            if not isinstance(call, ast.Call):
                continue
            name = getattr(call.func, "attr", getattr(call.func, "id", ""))
            if name not in {"param", "p", "create_subscription", "create_publisher", "sensor_subscription",
                            "checked_publisher", "TfListener", "TfPublisher"}:
                continue
            literals = [a for a in ast.walk(call) if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            for lit in literals:
                text = lit.value.split(":")[0]
                if text.startswith("/") and " " not in text and text not in GLOBAL_TOPICS:
                    offenders.append(f"{path.name}:{lit.lineno}: {lit.value}")
    assert not offenders, offenders


def test_namespaced_commands_remap_the_namespace_and_a_private_clock():
    params = params_file("amr")
    spec = STACK[0]
    plain = node_command(spec, params)
    assert "__ns:=" not in " ".join(plain) and "/clock:=" not in " ".join(plain)
    shared = node_command(spec, params, namespace="/robot1/")
    assert "__ns:=/robot1" in shared and not any(a.startswith("/clock:=") for a in shared)
    private = node_command(spec, params, namespace="robot1", private_clock=True)
    assert "/clock:=/robot1/clock" in private
    assert clock_topic("") == "/clock" and clock_topic("robot1") == "/robot1/clock"
    # a stack with its own simulator gets its own clock; one on a shared simulator (sim none) the global one
    for argv in (a for _, a in stack_commands("mujoco", params, namespace="robot1")):
        assert "/clock:=/robot1/clock" in argv
    for argv in (a for _, a in stack_commands("none", params, namespace="robot1")):
        assert not any(arg.startswith("/clock:=") for arg in argv)


# ---- two stacks in one ROS domain ---------------------------------------------------------------------------------

# The cheap AMR stack: no camera (perception runs on the LiDARs), so two of them and their simulators fit two cores.
LIGHT = {"mujoco_sim": {"rgbd.rate_hz": "0.0"}, "perception_fusion": {"image_topic": "''", "depth_topic": "''"}}


# What each robot's stack publishes under its namespace.
ROBOT_PUBLISHED = ("tf", "tf_static", "scan", "lidar/points", "odom", "perception/obstacles", "policy/action_chunk",
                   "cmd_vel", "correction/status", "clock")


def test_two_namespaced_stacks_in_one_domain_do_not_cross(tmp_path):
    import rclpy
    from geometry_msgs.msg import Twist
    from physical_ai_stack.msg import CorrectionStatus
    from rclpy.executors import SingleThreadedExecutor
    from rosgraph_msgs.msg import Clock

    params = params_file("amr")
    stacks = [RunningStack(stack_commands("mujoco", params, namespace=ns, use_sim_time=True,
                                          overrides={**LIGHT, "mujoco_sim": {**LIGHT["mujoco_sim"], "seed": seed}}),
                           tmp_path / ns)
              for ns, seed in (("robot1", "1"), ("robot2", "2"))]
    rclpy.init()
    node = rclpy.create_node("isolation_probe")
    got: dict[str, list] = {}
    for ns in ("robot1", "robot2"):
        for topic, kind in (("cmd_vel", Twist), ("correction/status", CorrectionStatus), ("clock", Clock)):
            name = f"/{ns}/{topic}"
            node.create_subscription(kind, name, lambda m, n=name: got.setdefault(n, []).append(m), 10)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        deadline = time.monotonic() + 60  # ~15 s on an idle 2-core machine
        moving = {"robot1": False, "robot2": False}
        while time.monotonic() < deadline and not all(moving.values()):
            executor.spin_once(timeout_sec=0.1)
            for ns in moving:
                moving[ns] = any(abs(m.linear.x) > 0.05 for m in got.get(f"/{ns}/cmd_vel", []))
            assert all(s.code is None for s in stacks), [s.supervisor.exit_code for s in stacks]
        assert all(moving.values()), f"both robots drive: {moving}"

        # The probe learns of the stacks' endpoints by discovery, which lags the data under load: wait until it has
        # seen every node's publishers (each robot drives, so they exist) before judging the graph.
        expected = [f"/{ns}/{topic}" for ns in ("robot1", "robot2") for topic in ROBOT_PUBLISHED]

        def unseen() -> list[str]:
            missing = [t for t in expected if not node.get_publishers_info_by_topic(t)]
            diag = {p.node_namespace for p in node.get_publishers_info_by_topic("/diagnostics")}
            return missing + sorted({"/robot1", "/robot2"} - diag)

        deadline = time.monotonic() + 30
        while unseen() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        assert not unseen(), f"publishers never discovered: {unseen()}"

        # Nothing at the root, and every endpoint of a robot's topic (publisher or subscriber) is one of that
        # robot's own nodes: no message of one stack can reach the other.
        topics = dict(node.get_topic_names_and_types())
        robot_topics = {t for t in topics if t not in GLOBAL_TOPICS}
        assert all(t.startswith(("/robot1/", "/robot2/")) for t in robot_topics), sorted(robot_topics)
        crossing = []
        for topic in sorted(robot_topics):
            ns = "/" + topic.split("/")[1]
            endpoints = [*node.get_publishers_info_by_topic(topic),
                         *(s for s in node.get_subscriptions_info_by_topic(topic) if s.node_name != "isolation_probe")]
            crossing += [f"{topic} <- {e.node_namespace}/{e.node_name}" for e in endpoints if e.node_namespace != ns]
        assert not crossing, crossing
        for ns in ("robot1", "robot2"):
            subs = [s for s in node.get_subscriptions_info_by_topic(f"/{ns}/cmd_vel")
                    if s.node_name != "isolation_probe"]
            assert [s.node_name for s in subs] == ["mujoco_sim"]  # only the robot's own simulator listens
        # each simulator's clock is its own, and no node publishes the global one
        assert not node.get_publishers_info_by_topic("/clock")
        diag_nodes = {p.node_namespace for p in node.get_publishers_info_by_topic("/diagnostics")}
        assert diag_nodes == {"/robot1", "/robot2"}
    finally:
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        rclpy.try_shutdown()
        for stack in stacks:
            stack.stop()
    for stack in stacks:
        assert stack.code == 0, stack.events

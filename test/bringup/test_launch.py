"""Launch files: launched for real where launch_ros exists; everywhere, same node table and files as `physai run`."""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from bringup_testlib import ROOT

from physical_ai.bringup import cli, launch_description, stack
from physical_ai.bringup.launch_description import SCENARIOS
from physical_ai.bringup.stack import ROBOTS, SIMULATORS, nodes_for, params_file

HAVE_LAUNCH_ROS = importlib.util.find_spec("launch_ros") is not None and importlib.util.find_spec("launch") is not None
NO_LAUNCH_REASON = "launch_ros is not installable from PyPI; run on a ROS 2 install"

# A topic each bring-up must publish once it runs (the safety layer's status and the perception output).
FLOWING = ("/correction/status", "/perception/obstacles")

LAUNCHER = """
import sys
from launch import LaunchDescription, LaunchService
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
service = LaunchService()
service.include_launch_description(LaunchDescription([IncludeLaunchDescription(
    PythonLaunchDescriptionSource(sys.argv[1]), launch_arguments=[("sim", "mujoco")])]))
sys.exit(service.run())
"""


@pytest.mark.skipif(not HAVE_LAUNCH_ROS, reason=NO_LAUNCH_REASON)
@pytest.mark.parametrize("robot", ROBOTS)
def test_launch_file_brings_topics_up(robot, tmp_path):
    import rclpy
    from physical_ai_stack.msg import CorrectionStatus, ObstacleArray

    proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(ROOT / "launch" / f"{robot}.launch.py")],
                            env=dict(os.environ), stdout=open(tmp_path / "launch.out", "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    rclpy.init()
    node = rclpy.create_node(f"launch_probe_{robot}")
    seen: dict[str, int] = {}
    for topic, kind in zip(FLOWING, (CorrectionStatus, ObstacleArray), strict=True):
        node.create_subscription(kind, topic, lambda _m, t=topic: seen.__setitem__(t, seen.get(t, 0) + 1), 10)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not all(seen.get(t, 0) >= 5 for t in FLOWING):
            assert proc.poll() is None, (tmp_path / "launch.out").read_text()
            rclpy.spin_once(node, timeout_sec=0.1)
        assert all(seen.get(t, 0) >= 5 for t in FLOWING), f"topics seen: {seen}"
    finally:
        node.destroy_node()
        rclpy.shutdown()
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0


@pytest.mark.parametrize("robot", ROBOTS)
def test_launch_file_calls_the_shared_description_for_its_robot(robot):
    path = ROOT / "launch" / f"{robot}.launch.py"
    tree = ast.parse(path.read_text())
    imports = {(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert ("physical_ai.bringup.launch_description", "generate") in imports
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "generate"]
    assert [c.args[0].value for c in calls] == [robot]
    entry = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert entry == ["generate_launch_description"]


def test_launch_description_reads_the_same_table_as_physai_run():
    # Same functions, not copies: the launch files and `physai run` cannot drift apart.
    assert launch_description.nodes_for is stack.nodes_for
    assert launch_description.share_dir is stack.share_dir
    assert cli.stack_commands is stack.stack_commands and cli.params_file is stack.params_file
    assert set(SCENARIOS) == set(ROBOTS)
    assert nodes_for("mujoco")[0].name == "mujoco_sim"
    for sim in ("gazebo", "none"):
        assert "mujoco_sim" not in [n.name for n in nodes_for(sim)]
    with pytest.raises(ValueError):
        nodes_for("webots")
    # The safety layer is never respawned and ends the bring-up when it dies.
    corrector = [n for n in stack.STACK if n.name == "trajectory_correction"]
    assert len(corrector) == 1 and corrector[0].required and not corrector[0].respawn


@pytest.mark.parametrize("robot", ROBOTS)
def test_every_node_has_an_entry_point_and_a_section_in_the_robot_params(robot):
    params = yaml.safe_load(params_file(robot).read_text())
    for spec in nodes_for("mujoco"):
        module = ROOT / "nodes" / f"{spec.name}.py"
        assert module.is_file(), f"no node module for {spec.name}"
        tree = ast.parse(module.read_text())
        assert "main" in [n.name for n in tree.body if isinstance(n, ast.FunctionDef)], f"{spec.name}: no main()"
        assert "ros__parameters" in params.get(spec.name, {}), f"config/{robot}.yaml has no {spec.name} section"
    assert params["mujoco_sim"]["ros__parameters"]["scenario"] == robot


@pytest.mark.parametrize("robot", ROBOTS)
def test_gazebo_world_and_bridge_files_exist(robot):
    scenario = SCENARIOS[robot]
    assert (ROOT / "models" / scenario / f"{scenario}.sdf").is_file()
    assert (ROOT / "models" / scenario / f"{scenario}.xml").is_file()
    bridge = yaml.safe_load((ROOT / "config" / f"gz_bridge_{scenario}.yaml").read_text())
    assert isinstance(bridge, list) and bridge
    for entry in bridge:
        assert {"ros_topic_name", "gz_topic_name", "ros_type_name", "gz_type_name", "direction"} <= set(entry)
        assert entry["direction"] in ("GZ_TO_ROS", "ROS_TO_GZ", "BIDIRECTIONAL")
    assert "/clock" in [e["ros_topic_name"] for e in bridge]


@pytest.mark.parametrize("robot", ROBOTS)
@pytest.mark.parametrize("sim", SIMULATORS)
def test_physai_run_commands_match_the_table(robot, sim):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    commands = cli.build_commands(parser.parse_args([robot, "--sim", sim]))
    assert [spec.name for spec, _ in commands] == [n.name for n in nodes_for(sim)]
    for spec, argv in commands:
        assert argv[argv.index("--params-file") + 1] == str(params_file(robot))
        assert f"physical_ai_nodes.{spec.name}" in argv
        assert f"use_sim_time:={'false' if sim == 'none' else 'true'}" in argv

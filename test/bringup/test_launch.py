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
from pathlib import Path

import psutil
import pytest
import yaml
from bringup_testlib import ROOT

from physical_ai.bringup import cli, launch_description, stack
from physical_ai.bringup.launch_description import SCENARIOS
from physical_ai.bringup.stack import RECORDER, ROBOTS, SIMULATORS, STACK, node_params, nodes_for, params_file

HAVE_LAUNCH_ROS = importlib.util.find_spec("launch_ros") is not None and importlib.util.find_spec("launch") is not None
NO_LAUNCH_REASON = ("launch and launch_ros are not on PyPI: run on a ROS 2 install, or install ros2/launch and "
                    "ros2/launch_ros into this environment (README, 'Launch files without a ROS install')")

# Running the launch file as `ros2 launch` does, with a LaunchService (ros2cli is not needed).
LAUNCHER = """
import sys
from launch import LaunchDescription, LaunchService
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
service = LaunchService()
service.include_launch_description(LaunchDescription([IncludeLaunchDescription(
    PythonLaunchDescriptionSource(sys.argv[1]), launch_arguments=[a.split(":=", 1) for a in sys.argv[2:]])]))
sys.exit(service.run())
"""
# Ctrl-C in a terminal: every node stopped within this time (README, "In a ROS 2 workspace").
CTRL_C_S = 15.0
NS = "robot1"


def launch_env() -> dict[str, str]:
    """The environment `ros2 launch` needs to find our executables: this prefix in the ament index, its bin on PATH.

    A sourced ROS 2 install sets both; a virtual environment with launch installed into it (and this package's
    interfaces and node executables, which `make venv` installs there) gets them here.
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    prefixes = [p for p in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    env["AMENT_PREFIX_PATH"] = os.pathsep.join(dict.fromkeys([sys.prefix, *prefixes]))
    env["PATH"] = os.pathsep.join([os.path.join(sys.prefix, "bin"), env.get("PATH", "")])
    return env


class Launched:
    """A launch file started as from a terminal (its own process group, which a Ctrl-C reaches as a whole)."""

    def __init__(self, robot: str, tmp_path, *args: str) -> None:
        self.log = tmp_path / f"launch-{robot}.out"
        self.proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(ROOT / "launch" / f"{robot}.launch.py"),
                                      *args], env=launch_env(), stdout=open(self.log, "wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def nodes(self) -> dict[str, psutil.Process]:
        found = {}
        for child in psutil.Process(self.proc.pid).children(recursive=True):
            try:
                cmd = " ".join(child.cmdline())
            except psutil.Error:
                continue
            for spec in (*STACK, RECORDER):
                if f"/lib/physical_ai_stack/{spec.name}" in cmd:
                    found[spec.name] = child
        return found

    def ctrl_c(self) -> tuple[int, float]:
        """SIGINT to the whole group, as a terminal sends it; (exit code, seconds to exit)."""
        t0 = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout=60), time.monotonic() - t0
        except subprocess.TimeoutExpired:
            return -999, time.monotonic() - t0

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class GraphProbe:
    """Counts messages per topic and reads node parameters over the ROS graph."""

    def __init__(self, topics: dict[str, type]) -> None:
        import rclpy

        rclpy.init()
        self.node = rclpy.create_node("launch_probe")
        self.seen: dict[str, int] = {}
        for topic, kind in topics.items():
            self.node.create_subscription(kind, topic, lambda _m, t=topic: self.seen.__setitem__(
                t, self.seen.get(t, 0) + 1), 10)

    def spin_until(self, predicate, timeout_s: float, launched: Launched) -> bool:
        import rclpy

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not predicate():
            assert launched.proc.poll() is None, launched.output()
            rclpy.spin_once(self.node, timeout_sec=0.1)
        return bool(predicate())

    def parameter(self, node: str, name: str):
        """A parameter's value via the node's get_parameters service."""
        import rclpy
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        client = self.node.create_client(GetParameters, f"{node}/get_parameters")
        assert client.wait_for_service(timeout_sec=20), f"{node}/get_parameters not available"
        future = client.call_async(GetParameters.Request(names=[name]))
        rclpy.spin_until_future_complete(self.node, future, timeout_sec=20)
        return parameter_value_to_python(future.result().values[0])

    def close(self) -> None:
        import rclpy

        self.node.destroy_node()
        rclpy.try_shutdown()


@pytest.fixture
def launch(tmp_path):
    """Start launch files as from a terminal; at teardown the whole group is killed, whatever the test did.

    A test that failed before its own Ctrl-C (a stack that did not come up in time under load) used to leave the
    launch process and every node it started running (an orphan mujoco_sim after the test run).
    """
    started: list[Launched] = []

    def start(robot: str, *args: str) -> Launched:
        started.append(Launched(robot, tmp_path, *args))
        return started[-1]

    yield start
    for launched in started:
        nodes = launched.nodes() if launched.proc.poll() is None else {}
        launched.kill()
        launched.proc.wait(timeout=10)
        psutil.wait_procs(list(nodes.values()), timeout=10)


# What each bring-up must move (its command topic) and how its corrector must be configured from its section.
COMMANDS = {"arm": ("arm_controller/commands", "Float64MultiArray"), "amr": ("cmd_vel", "Twist"),
            "vehicle": ("ackermann_cmd", "AckermannDriveStamped")}


@pytest.mark.skipif(not HAVE_LAUNCH_ROS, reason=NO_LAUNCH_REASON)
@pytest.mark.parametrize("robot", ROBOTS)
def test_namespaced_launch_runs_the_robot_and_ctrl_c_stops_it_cleanly(robot, tmp_path, launch):
    from ackermann_msgs.msg import AckermannDriveStamped
    from geometry_msgs.msg import Twist
    from physical_ai_stack.msg import CorrectionStatus, ObstacleArray
    from std_msgs.msg import Float64MultiArray

    kinds = {"Twist": Twist, "Float64MultiArray": Float64MultiArray, "AckermannDriveStamped": AckermannDriveStamped}
    command, kind = COMMANDS[robot]
    flowing = {f"/{NS}/correction/status": CorrectionStatus, f"/{NS}/perception/obstacles": ObstacleArray,
               f"/{NS}/{command}": kinds[kind]}
    args = [f"namespace:={NS}"] + ([f"record:={tmp_path / 'run.mcap'}"] if robot == "amr" else [])
    launched = launch(robot, *args)
    probe = GraphProbe(flowing)
    try:
        assert probe.spin_until(lambda: all(probe.seen.get(t, 0) >= 20 for t in flowing), 120, launched), \
            f"topics seen: {probe.seen}\n{launched.output()[-3000:]}"
        # every node read its section of the robot's file in the namespace (issue 19: they ran on defaults)
        assert probe.parameter(f"/{NS}/trajectory_correction", "mode") == robot
        expected = node_params(params_file(robot), "trajectory_correction", NS)["rate_hz"]
        assert probe.parameter(f"/{NS}/trajectory_correction", "rate_hz") == expected
        checkpoint = node_params(params_file(robot), "policy_inference", NS)["checkpoint"]
        assert probe.parameter(f"/{NS}/policy_inference", "checkpoint") == checkpoint
        # nothing of the robot's stack at the root
        topics = {name for name, _ in probe.node.get_topic_names_and_types()}
        stray = {t for t in topics if not t.startswith(f"/{NS}/") and t not in ("/diagnostics", "/rosout",
                                                                                  "/parameter_events")}
        assert not stray, stray
        nodes = launched.nodes()
        assert {spec.name for spec in nodes_for("mujoco")} <= set(nodes), sorted(nodes)
    finally:
        probe.close()
    code, took = launched.ctrl_c()
    out = launched.output()
    assert code == 0, out[-3000:]
    assert took < CTRL_C_S, f"Ctrl-C took {took:.1f} s"
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out[-4000:]
    assert "process has died" not in out, out[-4000:]
    for name, proc in nodes.items():
        assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE, f"{name} left running"
    if robot == "amr":  # record:= ran our recorder, which closed a readable MCAP on Ctrl-C
        from mcap.reader import make_reader

        with open(tmp_path / "run.mcap", "rb") as f:
            summary = make_reader(f).get_summary()
        recorded = {c.topic for c in summary.channels.values()}
        assert {f"/{NS}/cmd_vel", f"/{NS}/perception/obstacles", f"/{NS}/tf"} <= recorded, recorded
        assert summary.statistics.message_count > 100


@pytest.mark.skipif(not HAVE_LAUNCH_ROS, reason=NO_LAUNCH_REASON)
def test_launch_fails_when_a_required_node_dies(launch):
    from physical_ai_stack.msg import CorrectionStatus

    launched = launch("amr")
    probe = GraphProbe({"/correction/status": CorrectionStatus})
    try:
        assert probe.spin_until(lambda: probe.seen.get("/correction/status", 0) >= 5, 120, launched), \
            launched.output()[-3000:]
        nodes = launched.nodes()
    finally:
        probe.close()
    nodes["trajectory_correction"].kill()
    code = launched.proc.wait(timeout=40)
    out = launched.output()
    assert code != 0, out[-3000:]
    assert "required node trajectory_correction exited" in out, out[-3000:]
    for name, proc in nodes.items():
        assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE, f"{name} left running"


def test_launch_environment_puts_this_prefix_first():
    env = launch_env()
    assert env["AMENT_PREFIX_PATH"].split(os.pathsep)[0] == sys.prefix
    assert env["PATH"].split(os.pathsep)[0] == os.path.join(sys.prefix, "bin")
    # make venv installs the node executables where launch_ros looks for them (lib/<package>/<executable>)
    for spec in nodes_for("mujoco"):
        assert (Path(sys.prefix) / "lib" / "physical_ai_stack" / spec.name).is_file() or not HAVE_LAUNCH_ROS
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
    # The safety layer is required and respawned (issue 22: it comes back commanding a stop until fresh data arrives;
    # a crash loop still ends the bring-up).
    corrector = [n for n in stack.STACK if n.name == "trajectory_correction"]
    assert len(corrector) == 1 and corrector[0].required and corrector[0].respawn


@pytest.mark.parametrize("robot", ROBOTS)
def test_every_node_has_an_entry_point_and_a_section_in_the_robot_params(robot):
    for spec in nodes_for("mujoco"):
        module = ROOT / "nodes" / f"{spec.name}.py"
        assert module.is_file(), f"no node module for {spec.name}"
        tree = ast.parse(module.read_text())
        assert "main" in [n.name for n in tree.body if isinstance(n, ast.FunctionDef)], f"{spec.name}: no main()"
        # one `/**/<node>` section per node: it applies in the root namespace and in any robot's
        assert f"/**/{spec.name}" in yaml.safe_load(params_file(robot).read_text()), f"config/{robot}.yaml"
    assert node_params(params_file(robot), "mujoco_sim", "robot1")["scenario"] == robot


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

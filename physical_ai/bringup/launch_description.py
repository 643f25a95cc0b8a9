"""ROS 2 launch descriptions for the arm, AMR and vehicle bring-ups (needs `launch` and `launch_ros`).

The launch files in launch/ call `generate(robot)`; the node set comes from `physical_ai.bringup.stack`, the
same table `physai run` uses, so the two ways of bringing the stack up cannot drift. As `physai run` does:
- `namespace:=robot1` puts every node, topic and tf tree under /robot1 (the parameter file's `/**/<node>`
  sections apply in any namespace); with `sim:=mujoco` the simulator's clock is /robot1/clock, so stacks with
  simulators of their own do not hear each other's time;
- a required node that exits (not respawned) ends the launch with exit code 1;
- `record:=PATH` runs our recorder node (the same as `physai run --record`), not `ros2 bag`;
- `security:=true keystore:=DIR` runs every node secured by SROS2 (enforced) with its enclave
  /physical_ai_stack/<node> from the keystore `physai security keystore DIR` made (physical_ai/bringup/security.py).
"""

from __future__ import annotations

from pathlib import Path

from physical_ai.bringup.security import enclave, secure_environment
from physical_ai.bringup.stack import FOXGLOVE, RECORDER, SIMULATORS, NodeSpec, clock_topic, nodes_for, share_dir

SCENARIOS = {"arm": "arm_cell", "amr": "factory_floor", "vehicle": "vehicle_lane"}


def generate(robot: str):
    """Launch description for one robot.

    Arguments: sim, use_sim_time, namespace, params_file, policy, record, foxglove, security, keystore.
    """
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    share = share_dir()
    return LaunchDescription([
        DeclareLaunchArgument("sim", default_value="mujoco", choices=list(SIMULATORS),
                              description="mujoco: our simulator; gazebo: gz sim + ros_gz_bridge; none: real robot"),
        DeclareLaunchArgument("use_sim_time", default_value="auto", choices=["auto", "true", "false"],
                              description="follow /clock (auto: true with a simulator)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace for every node"),
        DeclareLaunchArgument("params_file", default_value=str(share / "config" / f"{robot}.yaml"),
                              description="parameter file for all nodes"),
        DeclareLaunchArgument("policy", default_value="", description="policy checkpoint dir (default: config)"),
        DeclareLaunchArgument("record", default_value="",
                              description="record every topic to this MCAP file (our recorder, as physai run)"),
        DeclareLaunchArgument("foxglove", default_value="false", choices=["true", "false"],
                              description="serve a Foxglove WebSocket live view (port from params_file)"),
        DeclareLaunchArgument("security", default_value="false", choices=["true", "false"],
                              description="SROS2: authenticate, encrypt and access-control DDS (needs keystore and "
                                          "a DDS with the security plugins)"),
        DeclareLaunchArgument("keystore", default_value="", description="SROS2 keystore (physai security keystore)"),
        OpaqueFunction(function=_actions, args=[robot]),
    ])


def _actions(context, robot: str) -> list:
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from launch_ros.actions import Node

    def arg(name: str) -> str:
        return context.launch_configurations[name]

    sim = arg("sim")
    use_sim_time = sim != "none" if arg("use_sim_time") == "auto" else arg("use_sim_time") == "true"
    params = arg("params_file")
    namespace = arg("namespace").strip("/")
    # a namespaced stack with a simulator of its own runs on that simulator's clock, in its namespace
    remappings = [("/clock", clock_topic(namespace))] if namespace and sim == "mujoco" else []

    secured = arg("security") == "true"

    def node(spec: NodeSpec, **overrides) -> Node:
        return Node(package="physical_ai_stack", executable=spec.name, name=spec.name, namespace=namespace,
                    parameters=[params, {"use_sim_time": use_sim_time, **overrides}], remappings=remappings,
                    ros_arguments=["--enclave", enclave(spec.name)] if secured else None,
                    output="screen", respawn=spec.respawn, respawn_delay=1.0,
                    on_exit=None if spec.respawn or not spec.required else _required_exit(spec.name))

    actions: list = []
    if secured:
        from launch.actions import SetEnvironmentVariable

        env: dict[str, str] = {}
        secure_environment(env, arg("keystore"))
        actions += [SetEnvironmentVariable(key, value) for key, value in env.items()]
    for spec in nodes_for(sim):
        overrides = {}
        if spec.name == "policy_inference" and arg("policy"):
            overrides["checkpoint"] = str(Path(arg("policy")).resolve())
        actions.append(node(spec, **overrides))
    if sim == "gazebo":
        from ament_index_python.packages import get_package_share_directory

        scenario = SCENARIOS[robot]
        world = share_dir() / "models" / scenario / f"{scenario}.sdf"
        gz_launch = Path(get_package_share_directory("ros_gz_sim")) / "launch" / "gz_sim.launch.py"
        actions.append(IncludeLaunchDescription(PythonLaunchDescriptionSource(str(gz_launch)),
                                                launch_arguments={"gz_args": f"-r {world}"}.items()))
        actions.append(Node(package="ros_gz_bridge", executable="parameter_bridge", namespace=namespace,
                            parameters=[{"config_file": str(share_dir() / "config" / f"gz_bridge_{scenario}.yaml"),
                                         "use_sim_time": True}], output="screen"))
    if arg("foxglove") == "true":
        actions.append(node(FOXGLOVE))
    if arg("record"):
        actions.append(node(RECORDER, output=str(Path(arg("record")).resolve())))
    return actions


def _required_exit(name: str) -> list:
    """on_exit of a required node: outside a shutdown, end the launch with a failure (exit code 1).

    launch's own `Shutdown` action ends it with exit code 0; an exception raised in an action makes
    `LaunchService.run` (and `ros2 launch`) shut everything down and return 1, with the reason logged.
    """
    from launch.actions import OpaqueFunction

    def fail(context) -> list:
        if context.is_shutdown:  # stopped by Ctrl-C or another node's failure: not this node's
            return []
        event = getattr(context.locals, "event", None)
        code = getattr(event, "returncode", None)
        raise RuntimeError(f"required node {name} exited with code {code}: stopping the bring-up")

    return [OpaqueFunction(function=fail)]


"""ROS 2 launch descriptions for the arm, AMR and vehicle bring-ups (needs `launch` and `launch_ros`).

The launch files in launch/ call `generate(robot)`; the node set comes from `physical_ai.bringup.stack`, the
same table `physai run` uses, so the two ways of bringing the stack up cannot drift.
"""

from __future__ import annotations

from pathlib import Path

from physical_ai.bringup.stack import FOXGLOVE, SIMULATORS, nodes_for, share_dir

SCENARIOS = {"arm": "arm_cell", "amr": "factory_floor", "vehicle": "vehicle_lane"}


def generate(robot: str):
    """Launch description for one robot.

    Arguments: sim, use_sim_time, namespace, params_file, policy, record, foxglove.
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
        DeclareLaunchArgument("record", default_value="", description="record all topics to this MCAP bag path"),
        DeclareLaunchArgument("foxglove", default_value="false", choices=["true", "false"],
                              description="serve a Foxglove WebSocket live view (port from params_file)"),
        OpaqueFunction(function=_actions, args=[robot]),
    ])


def _actions(context, robot: str) -> list:
    from launch.actions import ExecuteProcess, IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from launch_ros.actions import Node

    def arg(name: str) -> str:
        return context.launch_configurations[name]

    sim = arg("sim")
    use_sim_time = sim != "none" if arg("use_sim_time") == "auto" else arg("use_sim_time") == "true"
    params = arg("params_file")
    actions: list = []
    for spec in nodes_for(sim):
        overrides = {"use_sim_time": use_sim_time}
        if spec.name == "policy_inference" and arg("policy"):
            overrides["checkpoint"] = str(Path(arg("policy")).resolve())
        actions.append(Node(package="physical_ai_stack", executable=spec.name, name=spec.name,
                            namespace=arg("namespace"), parameters=[params, overrides], output="screen",
                            respawn=spec.respawn, respawn_delay=1.0,
                            # a required node that exits ends the launch, like `physai run`
                            on_exit=None if spec.respawn or not spec.required else _shutdown()))
    if sim == "gazebo":
        from ament_index_python.packages import get_package_share_directory

        scenario = SCENARIOS[robot]
        world = share_dir() / "models" / scenario / f"{scenario}.sdf"
        gz_launch = Path(get_package_share_directory("ros_gz_sim")) / "launch" / "gz_sim.launch.py"
        actions.append(IncludeLaunchDescription(PythonLaunchDescriptionSource(str(gz_launch)),
                                                launch_arguments={"gz_args": f"-r {world}"}.items()))
        actions.append(Node(package="ros_gz_bridge", executable="parameter_bridge", namespace=arg("namespace"),
                            parameters=[{"config_file": str(share_dir() / "config" / f"gz_bridge_{scenario}.yaml"),
                                         "use_sim_time": True}], output="screen"))
    if arg("foxglove") == "true":
        actions.append(Node(package="physical_ai_stack", executable=FOXGLOVE.name, name=FOXGLOVE.name,
                            namespace=arg("namespace"), parameters=[params, {"use_sim_time": use_sim_time}],
                            output="screen", respawn=FOXGLOVE.respawn, respawn_delay=1.0))
    if arg("record"):
        actions.append(ExecuteProcess(cmd=["ros2", "bag", "record", "--all", "--storage", "mcap",
                                           "--output", arg("record")], output="screen"))
    return actions


def _shutdown():
    from launch.actions import Shutdown

    return Shutdown(reason="a required node exited")

"""`physai run <robot>`: bring up a robot's stack from config/ without ROS 2 launch (same nodes, same files)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from physical_ai.bringup.processes import Supervisor, stop_on_sigterm
from physical_ai.bringup.security import check_environment, enclave, secure_environment
from physical_ai.bringup.stack import (
    FOXGLOVE,
    RECORDER,
    ROBOTS,
    SIMULATORS,
    NodeSpec,
    node_command,
    params_file,
    stack_commands,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments mirror the launch files' (sim, use_sim_time, namespace, params_file, policy, record)."""
    parser.add_argument("robot", choices=ROBOTS, help="which bring-up: arm, amr or vehicle")
    parser.add_argument("--sim", choices=SIMULATORS, default="mujoco",
                        help="mujoco: start our simulator node; gazebo/none: drivers come from elsewhere")
    parser.add_argument("--use-sim-time", choices=("auto", "true", "false"), default="auto",
                        help="follow /clock (auto: true with a simulator)")
    parser.add_argument("--namespace", default="",
                        help="ROS namespace of this robot: its topics, parameters and tf move under /<namespace> "
                             "(several robots on one network); /diagnostics stays global")
    parser.add_argument("--params-file", default=None, help="parameter YAML (default: config/<robot>.yaml)")
    parser.add_argument("--policy", default=None, help="policy checkpoint directory (overrides the config)")
    parser.add_argument("--record", default=None, metavar="MCAP", help="record every topic to this MCAP file")
    parser.add_argument("--foxglove", action="store_true",
                        help="serve a Foxglove WebSocket live view (port from the config, default 8765)")
    parser.add_argument("--log-dir", default=None, help="write each node's output here instead of the terminal")
    parser.add_argument("--security", default=None, metavar="KEYSTORE",
                        help="run every node secured by SROS2 with this keystore (physai security keystore); needs "
                             "a DDS with the security plugins")


def build_commands(args: argparse.Namespace) -> list[tuple[NodeSpec, list[str]]]:
    """Node specs and argv for the parsed arguments."""
    params = params_file(args.robot, args.params_file)
    use_sim_time = args.sim != "none" if args.use_sim_time == "auto" else args.use_sim_time == "true"
    overrides = {"policy_inference": {"checkpoint": str(Path(args.policy).resolve())}} if args.policy else {}
    commands = stack_commands(args.sim, params, namespace=args.namespace, use_sim_time=use_sim_time,
                              overrides=overrides)
    own_clock = args.sim == "mujoco"
    if args.record:
        commands.append((RECORDER, node_command(RECORDER, params, namespace=args.namespace, use_sim_time=use_sim_time,
                                                private_clock=own_clock,
                                                overrides={"output": str(Path(args.record).resolve())})))
    if args.foxglove:
        commands.append((FOXGLOVE, node_command(FOXGLOVE, params, namespace=args.namespace,
                                                use_sim_time=use_sim_time, private_clock=own_clock)))
    if args.security:
        commands = [(spec, [*argv, "--enclave", enclave(spec.name)]) for spec, argv in commands]
    return commands


def run(args: argparse.Namespace) -> int:
    """Start the stack and supervise it until Ctrl-C, SIGTERM or a required node dies."""
    env = dict(os.environ)
    if args.security:
        secure_environment(env, args.security)
        problem = check_environment(env)
        if problem:
            print(f"physai run: {problem}")
            return 1
    supervisor = Supervisor(build_commands(args), env=env,
                            log_dir=Path(args.log_dir) if args.log_dir else None)
    with stop_on_sigterm():
        try:
            supervisor.start()
        except KeyboardInterrupt:  # stopped while starting: stop what already runs
            supervisor.stop()
            return 0
        return supervisor.spin()

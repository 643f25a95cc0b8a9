"""`physai`: the project's one command-line entry point.

Each subcommand lives in the module of the job it belongs to; that module defines
`add_arguments(parser: argparse.ArgumentParser) -> None` and `run(args: argparse.Namespace) -> int`.
Modules are imported only when their subcommand runs, so `physai --help` stays fast and a missing optional
dependency only affects its own subcommand.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "sim": ("physical_ai.sim.cli", "run a MuJoCo scenario as a ROS 2 simulator node (plays the robot's drivers)"),
    "run": ("physical_ai.bringup.cli", "bring up a robot's nodes from config/ (like ros2 launch)"),
    "security": ("physical_ai.bringup.security", "DDS security: check for SROS2 support, create a keystore"),
    "demo": ("physical_ai.bringup.demo", "run the main job on the simulator and write a report"),
    "collect": ("physical_ai.training.collect", "record scripted-expert demonstrations to a dataset"),
    "dataset": ("physical_ai.data.cli", "recordings to cleansed, anonymised LeRobot datasets; convert, info"),
    "train": ("physical_ai.training.train", "train an action-chunking policy on a dataset"),
    "eval": ("physical_ai.training.evaluate", "closed-loop evaluation of a policy through the ROS 2 nodes"),
    "export": ("physical_ai.policy.export", "export a checkpoint to ONNX for edge devices"),
    "serve": ("physical_ai.policy.policy_server", "serve a checkpoint to robots over the openpi websocket protocol"),
    "perception": ("physical_ai.perception.cli", "score perception on recorded, labelled frames (eval)"),
    "recording": ("physical_ai.recording_tools", "inspect, check and repair MCAP recordings"),
    "lerobot": ("physical_ai.policy.lerobot_env", "create the LeRobot environment, serve LeRobot policies from it"),
}


def _load(command: str) -> ModuleType:
    module_name = COMMANDS[command][0]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise SystemExit(f"physai {command}: not available in this build ({module_name} missing)") from exc
        raise


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run a subcommand; return its exit code."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="physai", description="physical_ai_stack command line.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    # Parse only the subcommand name first, so each module builds its own parser (and its own --help).
    known, _ = parser.parse_known_args(argv[:1] if argv and not argv[0].startswith("-") else argv)
    if known.version:
        from physical_ai import __version__

        print(__version__)
        return 0
    if known.command is None:
        parser.print_help()
        return 2
    module = _load(known.command)
    sub_parser = argparse.ArgumentParser(prog=f"physai {known.command}", description=COMMANDS[known.command][1])
    module.add_arguments(sub_parser)
    args = sub_parser.parse_args(argv[1:])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

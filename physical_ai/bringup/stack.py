"""The node set of each robot's stack: one table that both the ROS 2 launch files and `physai run` read."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROBOTS = ("arm", "amr", "vehicle")
SIMULATORS = ("mujoco", "gazebo", "none")


@dataclasses.dataclass(frozen=True)
class NodeSpec:
    """One node of a bring-up.

    Attributes:
        name: node name, executable name (lib/physical_ai_stack/<name>) and module (physical_ai_nodes.<name>).
        respawn: restart it when it dies. Only for nodes whose restart is safe: they come back publishing nothing
            until their inputs are fresh, and the corrector stops the robot while they are away.
        required: when it dies and is not respawned, the whole bring-up stops with a non-zero exit.
        sim_only: started only with a simulator (it plays the robot's drivers).
        namespace: the robot it serves when several share one bring-up (the fleet); names its log and events.
    """

    name: str
    respawn: bool = False
    required: bool = True
    sim_only: bool = False
    namespace: str = ""

    @property
    def label(self) -> str:
        """`<namespace>/<name>` (or the name alone): what logs and messages call this process."""
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


# Order matters: drivers first, then the stack from sensors to actuators.
STACK: tuple[NodeSpec, ...] = (
    NodeSpec("mujoco_sim", respawn=False, required=True, sim_only=True),
    NodeSpec("perception_fusion", respawn=True, required=True),
    NodeSpec("policy_inference", respawn=True, required=True),
    # The safety layer comes back too: it sends a safe command on any error it can catch, the driver's command
    # timeout stops the robot while it is away, and it restarts with every input stale (the robot held) until
    # fresh data arrives. A crash loop still ends the bring-up loudly (Supervisor's respawn policy).
    NodeSpec("trajectory_correction", respawn=True, required=True),
)

# Not respawned: a restarted recorder would reopen (and overwrite) its MCAP file. Optional: a bring-up goes on
# without it.
RECORDER = NodeSpec("recorder", respawn=False, required=False)
# The live view (`--foxglove`): optional, and safe to restart (a browser reconnects to the new server).
FOXGLOVE = NodeSpec("foxglove_bridge", respawn=True, required=False)


def nodes_for(sim: str) -> list[NodeSpec]:
    """The nodes to start for a simulator choice ("mujoco" runs our simulator node; "gazebo"/"none" do not)."""
    if sim not in SIMULATORS:
        raise ValueError(f"sim must be one of {SIMULATORS}, got {sim!r}")
    return [n for n in STACK if not n.sim_only or sim == "mujoco"]


def source_root() -> Path:
    """The repository root when running from a source checkout."""
    return Path(__file__).resolve().parents[2]


def share_dir() -> Path:
    """Directory holding config/, models/ and launch/.

    The source tree when running from a checkout (edits to config/ take effect at once), else the installed
    share/physical_ai_stack.
    """
    src = source_root()
    if (src / "config").is_dir() and (src / "package.xml").is_file():
        return src
    try:
        from ament_index_python.packages import get_package_share_directory

        share = Path(get_package_share_directory("physical_ai_stack"))
    except (ImportError, LookupError, OSError) as exc:  # no ament index, or the package is not in it
        raise FileNotFoundError("cannot find physical_ai_stack's config/: not a source checkout, and the package "
                                f"is not installed in an ament prefix ({exc})") from exc
    return share


def params_file(robot: str, override: str | os.PathLike[str] | None = None) -> Path:
    """The parameter file for a robot (config/<robot>.yaml) or the user's override; it must exist."""
    if robot not in ROBOTS:
        raise ValueError(f"robot must be one of {ROBOTS}, got {robot!r}")
    path = Path(override) if override else share_dir() / "config" / f"{robot}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"parameter file not found: {path}")
    return path


ParamFiles = Path | Sequence[Path]


def param_files(params: ParamFiles) -> list[Path]:
    """One parameter file or several (applied in order, later values overriding earlier ones) as a list."""
    return [Path(params)] if isinstance(params, (str, os.PathLike)) else [Path(p) for p in params]


def node_params(params: ParamFiles, node: str, namespace: str = "") -> dict[str, Any]:
    """One node's `ros__parameters` from ROS 2 parameter files, as the node /<namespace>/<node> gets them.

    Sections are matched as rclpy matches them against the node's fully qualified name: `node` (root namespace
    only), `/ns/node`, and patterns where `/*` stands for one namespace token and `/**` for any number of them (the
    shipped files use `/**/node`, so one file serves a robot in any namespace). Matching sections apply in file
    order, a later one overriding an earlier one. {} when no section matches.
    """
    import yaml

    fqn = node_fqn(node, namespace)
    merged: dict[str, Any] = {}
    for path in param_files(params):
        for key, section in (yaml.safe_load(path.read_text()) or {}).items():
            if isinstance(section, dict) and section_matches(str(key), fqn):
                merged.update(section.get("ros__parameters") or {})
    return merged


def node_fqn(node: str, namespace: str = "") -> str:
    """Fully qualified node name: /<namespace>/<node> (namespace without leading or trailing slashes)."""
    ns = namespace.strip("/")
    return f"/{ns}/{node}" if ns else f"/{node}"


def section_matches(key: str, fqn: str) -> bool:
    """Whether a parameter-file section key (`node`, `/ns/node`, `/**/node`, `/**`, `/*/node`) names node `fqn`."""
    pattern = key if key.startswith("/") else f"/{key}"
    regex = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("/**", i):
            regex += "(/[^/]+)*"
            i += 3
        elif pattern.startswith("/*", i):
            regex += "/[^/]+"
            i += 2
        else:
            regex += re.escape(pattern[i])
            i += 1
    return re.fullmatch(regex, fqn) is not None


def node_command(spec: NodeSpec, params: ParamFiles, *, namespace: str = "", use_sim_time: bool = False,
                 private_clock: bool = False, overrides: Mapping[str, str] | None = None,
                 python: str | None = None) -> list[str]:
    """The argv that runs one node in its own process, as `ros2 launch` would with the same arguments.

    Args:
        spec: the node.
        params: the parameter file, or files applied in order (`/**/<node>` sections apply in any namespace).
        namespace: the robot's namespace ('' = root); every relative topic, service and tf name moves under it.
        use_sim_time: follow the clock topic.
        private_clock: this stack has a simulator of its own: its clock is <namespace>/clock, not the global /clock
            that a shared simulator (the fleet) publishes for every robot.
        overrides: parameter values that replace the file's.
        python: interpreter (default: this one).
    """
    import sys

    argv = [python or sys.executable, "-m", f"physical_ai_nodes.{spec.name}", "--ros-args",
            "-r", f"__node:={spec.name}"]
    for path in param_files(params):
        argv += ["--params-file", str(path)]
    argv += ["-p", f"use_sim_time:={'true' if use_sim_time else 'false'}"]
    if namespace.strip("/"):
        argv += ["-r", f"__ns:=/{namespace.strip('/')}"]
        if private_clock:
            argv += ["-r", f"/clock:={clock_topic(namespace)}"]
    for key, value in (overrides or {}).items():
        argv += ["-p", f"{key}:={value}"]
    return argv


def clock_topic(namespace: str) -> str:
    """The clock a namespaced stack with its own simulator runs on (/clock in the root namespace)."""
    ns = namespace.strip("/")
    return f"/{ns}/clock" if ns else "/clock"


def stack_commands(sim: str, params: ParamFiles, *, namespace: str = "", use_sim_time: bool = False,
                   overrides: Mapping[str, Mapping[str, str]] | None = None) -> list[tuple[NodeSpec, list[str]]]:
    """(spec, argv) of every node of a bring-up, each with its own parameter overrides (by node name).

    A namespaced bring-up that starts its own simulator (`sim="mujoco"`) keeps that simulator's clock in its
    namespace, so two such stacks in one ROS domain do not hear each other's time.
    """
    overrides = overrides or {}
    return [(spec, node_command(spec, params, namespace=namespace, use_sim_time=use_sim_time,
                                private_clock=sim == "mujoco", overrides=overrides.get(spec.name)))
            for spec in nodes_for(sim)]


# Real-time priorities as deployed (README, "Real-time priority"): the corrector's process and the drivers' (here the
# simulator's) under SCHED_FIFO, the corrector's loop thread above its executor threads.
DRIVER_RT_PRIORITY = 70
LOOP_RT_PRIORITY = 80


def can_use_sched_fifo() -> bool:
    """Whether this process may schedule SCHED_FIFO (root or CAP_SYS_NICE) and `chrt` exists."""
    import shutil

    if shutil.which("chrt") is None:
        return False
    try:
        before = os.sched_getscheduler(0), os.sched_getparam(0)
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        os.sched_setscheduler(0, before[0], before[1])
        return True
    except (PermissionError, OSError):
        return False


def with_realtime(commands: list[tuple[NodeSpec, list[str]]]) -> list[tuple[NodeSpec, list[str]]]:
    """The same bring-up with trajectory_correction and mujoco_sim under SCHED_FIFO (perception and policy unchanged).

    Raises:
        PermissionError: this process may not use SCHED_FIFO (`can_use_sched_fifo`); `chrt` would fail the nodes.
    """
    if not can_use_sched_fifo():
        raise PermissionError("real-time scheduling: this process may not use SCHED_FIFO (needs root or "
                              "CAP_SYS_NICE and chrt; README, 'Real-time priority')")
    rt = ["chrt", "-f", str(DRIVER_RT_PRIORITY)]
    out = []
    for spec, argv in commands:
        if spec.name == "trajectory_correction":
            argv = [*rt, *argv, "-p", f"rt_priority:={LOOP_RT_PRIORITY}"]
        elif spec.name == "mujoco_sim":
            argv = [*rt, *argv]
        out.append((spec, argv))
    return out

"""DDS access control: localhost discovery by default, SROS2 where the DDS has the security plugins.

Defaults: every node the stack starts discovers peers on this host only (`ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`)
unless the environment says otherwise: a stack on a factory network is not reachable from it by accident. Robots
whose drivers run on another machine set `ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET` (and `ROS_STATIC_PEERS`).

SROS2 (authentication, encryption, access control) is the ROS 2 way to secure DDS: a keystore holds a CA and one
enclave (key, certificate, permissions) per node; `ROS_SECURITY_ENABLE=true`, `ROS_SECURITY_STRATEGY=Enforce` and
`ROS_SECURITY_KEYSTORE=<dir>` switch it on, and each node runs with `--ros-args --enclave /physical_ai_stack/<node>`.
`physai security keystore DIR` creates the keystore and the stack's enclaves with sros2 (`ros2 security`);
`physai run ... --security DIR` and the launch files' `security:=true keystore:=DIR` use it. The Fast DDS wheel on
PyPI is built without the security plugins: `physai security check` says so, and a node asked to run secured on it
exits with that message instead of an opaque participant error.

`physai security check|keystore DIR`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, MutableMapping
from pathlib import Path

ENCLAVE_ROOT = "/physical_ai_stack"
# A symbol of Fast DDS's built-in authentication plugin: present only in builds with -DSECURITY=ON.
SECURITY_MARKER = b"builtin.PKI-DH"


def enclave(node: str) -> str:
    """The SROS2 enclave of one of the stack's nodes."""
    return f"{ENCLAVE_ROOT}/{node}"


def fastdds_libraries() -> list[Path]:
    """The libfastdds shared objects this process would load: the venv's first, then LD_LIBRARY_PATH, then /opt/ros."""
    dirs = [Path(sys.prefix) / "lib"]
    dirs += [Path(d) for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    dirs += sorted(Path("/opt/ros").glob("*/lib"))
    found = []
    for d in dirs:
        found += sorted(p for p in d.glob("libfastdds.so*") if p.is_file() and not p.is_symlink())
    return found


def dds_security_available(libraries: Iterable[Path] | None = None) -> bool | None:
    """Whether the Fast DDS library has the security plugins (None: no library found to tell)."""
    libraries = list(fastdds_libraries() if libraries is None else libraries)
    if not libraries:
        return None
    return SECURITY_MARKER in libraries[0].read_bytes()


def secure_environment(env: MutableMapping[str, str], keystore: str | Path) -> None:
    """Switch SROS2 on in `env` for nodes started from it (enforced, with this keystore)."""
    env["ROS_SECURITY_ENABLE"] = "true"
    env["ROS_SECURITY_STRATEGY"] = "Enforce"
    env["ROS_SECURITY_KEYSTORE"] = str(Path(keystore).resolve())


def check_environment(env: MutableMapping[str, str] | None = None) -> str | None:
    """Why a node cannot start with the security this environment asks for, or None when it can."""
    env = os.environ if env is None else env
    if env.get("ROS_SECURITY_ENABLE", "").lower() != "true":
        return None
    keystore = env.get("ROS_SECURITY_KEYSTORE", "")
    if not keystore or not (Path(keystore) / "enclaves").is_dir():
        return (f"ROS_SECURITY_ENABLE=true but ROS_SECURITY_KEYSTORE={keystore!r} is not a keystore "
                "(create one: physai security keystore DIR)")
    if dds_security_available() is False:
        return ("ROS_SECURITY_ENABLE=true, but this Fast DDS is built without the DDS security plugins (the "
                "PyPI wheel is): use a ROS 2 install whose Fast DDS has them (e.g. the ROS apt packages), or unset "
                "ROS_SECURITY_ENABLE and keep discovery on localhost")
    return None


def apply_defaults(env: MutableMapping[str, str] | None = None) -> None:
    """Localhost discovery unless the environment chose a range (called by every node before rclpy.init)."""
    env = os.environ if env is None else env
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


def create_keystore(keystore: Path, nodes: Iterable[str]) -> None:
    """A keystore with one enclave per node, made by sros2 (`ros2 security`); raises RuntimeError without it."""
    ros2 = shutil.which("ros2")
    if ros2 is None or subprocess.run([ros2, "security", "--help"], capture_output=True).returncode != 0:
        raise RuntimeError("sros2 is not installed (`ros2 security` is part of a ROS 2 install, e.g. apt "
                           "ros-<distro>-sros2); the PyPI wheels have neither sros2 nor a secure Fast DDS")
    subprocess.run([ros2, "security", "create_keystore", str(keystore)], check=True)
    for node in nodes:
        subprocess.run([ros2, "security", "create_enclave", str(keystore), enclave(node)], check=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`physai security check` or `physai security keystore DIR`."""
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("check", help="say whether this DDS can run secured (SROS2) and what discovery range is set")
    keystore = sub.add_parser("keystore", help="create an SROS2 keystore with an enclave per node of the stack")
    keystore.add_argument("dir", type=Path)


def run(args: argparse.Namespace) -> int:
    """Run the subcommand."""
    from physical_ai.bringup.stack import FOXGLOVE, RECORDER, STACK

    if args.action == "keystore":
        try:
            create_keystore(args.dir, [spec.name for spec in (*STACK, RECORDER, FOXGLOVE)])
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            print(f"physai security keystore: {exc}", file=sys.stderr)
            return 1
        print(f"keystore {args.dir}: run with `physai run <robot> --security {args.dir}` or "
              f"`ros2 launch ... security:=true keystore:={args.dir}`")
        return 0
    available = dds_security_available()
    libs = fastdds_libraries()
    print(f"Fast DDS: {libs[0] if libs else 'not found'}")
    print("DDS security plugins: " + {True: "yes (SROS2 usable)", None: "unknown (no libfastdds found)",
                                      False: "NO: this Fast DDS (the PyPI wheel) is built without them; SROS2 "
                                             "needs a ROS 2 install whose Fast DDS has them"}[available])
    print(f"discovery range: {os.environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST (stack default)')}")
    problem = check_environment()
    if problem:
        print(problem)
    return 0 if available else 1

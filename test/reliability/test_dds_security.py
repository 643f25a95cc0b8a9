"""DDS doors (issue 22): localhost discovery by default, SROS2 wired, and the PyPI Fast DDS's missing security
plugins detected and said rather than failing inside the DDS."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from physical_ai.bringup import security
from physical_ai.bringup.cli import add_arguments, build_commands

ROOT = Path(__file__).resolve().parents[2]


def test_discovery_stays_on_localhost_unless_configured():
    env: dict[str, str] = {}
    security.apply_defaults(env)
    assert env == {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    env = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}
    security.apply_defaults(env)
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SUBNET"


def test_the_pypi_fast_dds_is_detected_without_security_plugins(tmp_path):
    libraries = security.fastdds_libraries()
    assert libraries and libraries[0].is_relative_to(Path(sys.prefix))  # the venv's wheel comes first
    assert security.dds_security_available() is False
    secure = tmp_path / "libfastdds.so.3"  # the check reads the library itself: a build with the plugins passes
    secure.write_bytes(b"\0ELF..." + security.SECURITY_MARKER + b"\0")
    assert security.dds_security_available([secure]) is True
    assert security.dds_security_available([]) is None


def test_a_node_asked_to_run_secured_on_this_dds_exits_saying_why(tmp_path):
    keystore = tmp_path / "keystore"
    (keystore / "enclaves").mkdir(parents=True)
    env = dict(os.environ)
    security.secure_environment(env, keystore)
    assert env["ROS_SECURITY_STRATEGY"] == "Enforce" and env["ROS_SECURITY_KEYSTORE"] == str(keystore)
    proc = subprocess.run([sys.executable, "-m", "physical_ai_nodes.sensor_monitor"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "built without the DDS security plugins" in proc.stderr, proc.stderr[-2000:]
    env["ROS_SECURITY_KEYSTORE"] = str(tmp_path / "missing")
    assert "is not a keystore" in security.check_environment(env)


def test_physai_run_security_gives_every_node_its_enclave(tmp_path):
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["amr", "--sim", "none", "--security", str(tmp_path)])
    commands = build_commands(args)
    assert commands
    for spec, argv in commands:
        assert argv[argv.index("--enclave") + 1] == f"/physical_ai_stack/{spec.name}"
        assert argv.index("--enclave") > argv.index("--ros-args")
    proc = subprocess.run([sys.executable, "-m", "physical_ai.cli", "run", "amr", "--sim", "none", "--security",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "keystore" in proc.stdout, proc.stdout + proc.stderr

"""Test isolation: each pytest process talks DDS on its own domain, on localhost only, with the shipped profile."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psutil
import pytest
from testdata import ROOT

# Must be set before rclpy creates a participant. A distinct domain per process keeps concurrent test runs
# (and developers' running stacks) from hearing each other.
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(ROOT / "config" / "fastdds.xml"))
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.pop("ROS_PYTHON_CHECK_FIELDS", None)


def _ours(p: psutil.Process) -> bool:
    """A process of this stack (a node, physai, launch), not a helper a library keeps (multiprocessing's tracker)."""
    try:
        cmd = " ".join(p.cmdline())
    except psutil.Error:
        return False
    return any(s in cmd for s in ("physical_ai", "physai", "ros2", "launch"))


@pytest.fixture(autouse=True, scope="module")
def no_leaked_processes() -> Iterator[None]:
    """Fail the module that leaves processes of its own behind (a node or a stack still running after its tests).

    A leaked stack keeps both cores busy and makes later, unrelated timing tests fail (a silent camera "stalling"
    the next stack); the module that leaked is named instead, and its processes are killed.
    """
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    yield
    leaked = [p for p in me.children(recursive=True) if p.pid not in before and _ours(p)]
    _, alive = psutil.wait_procs(leaked, timeout=10.0)
    if not alive:
        return
    names = []
    for p in alive:
        try:
            names.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
            p.kill()
        except psutil.NoSuchProcess:
            continue
    if names:
        pytest.fail("processes left running by this module (killed now):\n" + "\n".join(names), pytrace=False)

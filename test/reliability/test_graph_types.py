"""Message types named by the graph (any peer) are imported only from ROS interface packages (issue 22)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from physical_ai_nodes._topics import message_class


def test_interface_packages_load_and_anything_else_is_refused_without_being_imported():
    assert message_class("sensor_msgs/msg/PointCloud2").__name__ == "PointCloud2"
    assert message_class("physical_ai_stack/msg/ObstacleArray").__name__ == "ObstacleArray"
    for name in ("numpy/msg/ndarray", "os/path/join", "sensor_msgs/srv/X", "../msg/X"):
        with pytest.raises((ImportError, ValueError)):
            message_class(name)
    # `this` prints the Zen of Python when imported: a type name from the graph must not get it imported.
    probe = ("import sys\nfrom physical_ai_nodes._topics import message_class\n"
             "try:\n    message_class('this/msg/X')\nexcept ImportError:\n    pass\n"
             "print('imported' if 'this' in sys.modules else 'not imported')\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60).stdout
    assert out.strip().splitlines()[-1] == "not imported" and "Zen of Python" not in out, out

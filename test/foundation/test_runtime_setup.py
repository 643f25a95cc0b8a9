"""The shipped Fast DDS profile is valid, found and applied by default; allocator tuning; message buffer types."""

from __future__ import annotations

import array
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from physical_ai import convert
from physical_ai.memory import keep_large_buffers
from physical_ai_nodes import _base

ROOT = Path(__file__).resolve().parents[2]
NS = {"f": "http://www.eprosima.com"}


def test_profile_has_a_32mb_shared_memory_transport_and_udp_by_default():
    tree = ET.parse(ROOT / "config" / "fastdds.xml")
    descriptors = {d.findtext("f:transport_id", namespaces=NS): d
                   for d in tree.iterfind(".//f:transport_descriptor", NS)}
    types = {d.findtext("f:type", namespaces=NS): d for d in descriptors.values()}
    assert set(types) == {"SHM", "UDPv4"}
    assert int(types["SHM"].findtext("f:segment_size", namespaces=NS)) == 32 * 1024 * 1024
    participant = tree.find(".//f:participant", NS)
    assert participant.get("is_default_profile") == "true"
    used = [t.text for t in participant.iterfind(".//f:userTransports/f:transport_id", NS)]
    assert set(used) == set(descriptors)
    assert participant.findtext(".//f:useBuiltinTransports", namespaces=NS) == "false"


def test_profile_is_found_and_set_only_when_unset(monkeypatch):
    path = _base.shipped_fastdds_profile()
    assert path is not None and path.is_file() and path.name == "fastdds.xml"
    monkeypatch.delenv("FASTDDS_DEFAULT_PROFILES_FILE", raising=False)
    _base.use_shipped_fastdds_profile()
    assert os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] == str(path)
    monkeypatch.setenv("FASTDDS_DEFAULT_PROFILES_FILE", "/somewhere/else.xml")
    _base.use_shipped_fastdds_profile()
    assert os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] == "/somewhere/else.xml"


def test_keep_large_buffers_applies_on_linux():
    assert keep_large_buffers() is True


def test_built_messages_hold_array_buffers():
    """Messages built by convert store array.array buffers (one memcpy to serialise, no per-element checks)."""
    cloud = convert.numpy_to_pointcloud2(np.zeros((10, 3), np.float32))
    image = convert.numpy_to_image(np.zeros((2, 3), np.float32), "32FC1")
    scan = convert.numpy_to_laserscan(np.ones(5), 0.0, 0.1, 0.0, 10.0)
    joints = convert.make_joint_state(["a"], [1.0])
    for buffer, code in ((cloud.data, "B"), (image.data, "B"), (scan.ranges, "f"), (joints.position, "d")):
        assert isinstance(buffer, array.array) and buffer.typecode == code

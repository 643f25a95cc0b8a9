"""config/physai.rviz shows only what the stack publishes, with types and QoS that match the publishers.

The publishers are read from the node sources (nodes/*.py): every `create_publisher`/`checked_publisher` call (or
the `pub = self.checked_publisher` alias the simulator uses) with a literal topic. That is the list of topics the
stack publishes; a display on any other topic, or with a type or QoS that cannot match, would stay empty in RViz.
"""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RVIZ = ROOT / "config" / "physai.rviz"

# RViz display class -> the message type it subscribes to.
DISPLAY_TYPES = {
    "rviz_default_plugins/PointCloud2": "PointCloud2",
    "rviz_default_plugins/LaserScan": "LaserScan",
    "rviz_default_plugins/MarkerArray": "MarkerArray",
    "rviz_default_plugins/Map": "OccupancyGrid",
    "rviz_default_plugins/Odometry": "Odometry",
    "rviz_default_plugins/Image": "Image",
}
BEST_EFFORT_QOS = {"SENSOR_QOS", "qos_profile_sensor_data"}
LATCHED_QOS = {"LATCHED_QOS"}
PUBLISH_CALLS = {"create_publisher", "checked_publisher", "pub"}


def _publishers() -> dict[str, tuple[str, str]]:
    """topic -> (message type, QoS name) of every publisher with a literal topic in nodes/*.py."""
    found: dict[str, tuple[str, str]] = {}
    for module in sorted((ROOT / "nodes").glob("*.py")):
        for call in ast.walk(ast.parse(module.read_text())):
            if not isinstance(call, ast.Call) or len(call.args) < 2:
                continue
            name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", None)
            kind, topic = call.args[0], call.args[1]
            if name not in PUBLISH_CALLS or not isinstance(kind, ast.Name) or not isinstance(topic, ast.Constant):
                continue
            qos = call.args[2].id if len(call.args) > 2 and isinstance(call.args[2], ast.Name) else "STATE_QOS"
            found["/" + str(topic.value).lstrip("/")] = (kind.id, qos)
    return found


def _displays(displays: list[dict]) -> list[dict]:
    out = []
    for display in displays:
        out.append(display)
        out += _displays(display.get("Displays", []))  # groups nest their displays
    return out


def test_rviz_config_shows_only_published_topics_with_matching_type_and_qos():
    config = yaml.safe_load(RVIZ.read_text())
    manager = config["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] in ("map", "odom")
    displays = _displays(manager["Displays"])
    classes = [d["Class"] for d in displays]
    assert "rviz_default_plugins/TF" in classes and "rviz_default_plugins/Grid" in classes
    published = _publishers()
    assert "/lidar/points" in published, "the publisher scan of nodes/*.py found nothing"
    shown = {}
    for display in displays:
        if "Topic" not in display:
            continue
        topic, qos = display["Topic"]["Value"], display["Topic"]
        assert topic in published, f"{display['Name']}: {topic} is not published by any node"
        kind, publisher_qos = published[topic]
        assert DISPLAY_TYPES[display["Class"]] == kind, f"{display['Name']}: {topic} carries {kind}"
        if publisher_qos in BEST_EFFORT_QOS:  # a reliable subscription does not match a best-effort publisher
            assert qos["Reliability Policy"] == "Best Effort", f"{display['Name']}: {topic} is best effort"
        if qos["Durability Policy"] == "Transient Local":  # nor a latched one a volatile publisher
            assert publisher_qos in LATCHED_QOS, f"{display['Name']}: {topic} is not latched"
        shown[topic] = display["Class"]
    assert set(shown) == {"/lidar/points", "/scan", "/perception/markers", "/perception/occupancy", "/odom",
                          "/camera/color/image_raw"}

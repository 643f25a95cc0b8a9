"""The Foxglove bridge over real DDS and a real WebSocket client speaking the Foxglove protocol.

The client side follows the Foxglove WebSocket protocol: JSON `serverInfo`/`advertise`/`subscribe` text frames and
binary message-data frames (opcode 0x01, uint32 LE subscription id, uint64 LE log time, payload).
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import rclpy
import websockets
from geometry_msgs.msg import TransformStamped
from nav_msgs.msg import Odometry
from physical_ai_stack.msg import Obstacle, ObstacleArray
from rclpy.serialization import deserialize_message
from tf2_msgs.msg import TFMessage

from physical_ai.bringup import cli, demo
from physical_ai.bringup.stack import FOXGLOVE, ROBOTS, node_params, params_file
from physical_ai_nodes._base import LATCHED_QOS, STATE_QOS

ROOT = Path(__file__).resolve().parents[2]

SUBPROTOCOL = "foxglove.sdk.v1"  # the current name; the older "foxglove.websocket.v1" below, with the official client
MESSAGE_DATA = 0x01
UNKNOWN_CHANNEL = "Unknown channel ID: "
MAX_RATE_HZ = 5.0
PUBLISH_HZ = 50.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _odometry(i: int) -> Odometry:
    msg = Odometry(child_frame_id="base_link")
    msg.header.frame_id = "odom"
    msg.header.stamp.sec, msg.header.stamp.nanosec = 100 + i, 250_000_000
    msg.pose.pose.position.x, msg.pose.pose.position.y, msg.pose.pose.position.z = 1.5, -2.25, float(i)
    msg.pose.pose.orientation.z, msg.pose.pose.orientation.w = 0.6, 0.8
    msg.twist.twist.linear.x, msg.twist.twist.angular.z = 0.75, -0.125
    return msg


class _Publisher:
    """Publishes Odometry at PUBLISH_HZ from a thread; ObstacleArray only once `start_obstacles` is set."""

    def __init__(self, node) -> None:
        self.node = node
        self.odom = node.create_publisher(Odometry, "/odom", STATE_QOS)
        self.sent: list[Odometry] = []
        self.start_obstacles = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        obstacles = None
        while not self.stop.is_set():
            msg = _odometry(len(self.sent))
            self.sent.append(msg)
            self.odom.publish(msg)
            if self.start_obstacles.is_set():
                if obstacles is None:  # a topic that appears after the bridge started
                    obstacles = self.node.create_publisher(ObstacleArray, "/perception/obstacles", STATE_QOS)
                obstacles.publish(ObstacleArray(obstacles=[Obstacle(id=7, classification=Obstacle.CLASS_PERSON)]))
            time.sleep(1.0 / PUBLISH_HZ)


async def _client(port: int, publisher: _Publisher, deadline: float) -> dict:
    """Connect, subscribe to /odom, /tf_static and (once advertised) /perception/obstacles; collect frames."""
    while True:
        try:
            ws = await websockets.connect(f"ws://127.0.0.1:{port}", subprotocols=[SUBPROTOCOL], max_size=None)
            break
        except OSError:
            assert time.monotonic() < deadline, "bridge never accepted a WebSocket connection"
            await asyncio.sleep(0.2)
    result = {"subprotocol": ws.subprotocol, "channels": {}, "frames": {}, "resubscribed": 0}
    subscription_topic: dict[int, str] = {}
    subscription_of_channel: dict[int, int] = {}
    odom_window: list[float] = []
    async with ws:
        while time.monotonic() < deadline:
            try:
                frame = await asyncio.wait_for(ws.recv(), timeout=max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                break
            if isinstance(frame, str):
                op = json.loads(frame)
                if op["op"] == "status" and op["message"].startswith(UNKNOWN_CHANNEL):
                    # foxglove-sdk 0.30.3 race: a subscribe sent right after a *new* channel's advertise can reach
                    # the server before it knows the channel; a client retries, as the Foxglove app's user would.
                    channel_id = int(op["message"][len(UNKNOWN_CHANNEL):])
                    await asyncio.sleep(0.1)
                    await ws.send(json.dumps({"op": "subscribe", "subscriptions": [
                        {"id": subscription_of_channel[channel_id], "channelId": channel_id}]}))
                    result["resubscribed"] += 1
                if op["op"] != "advertise":
                    continue
                subscriptions = []
                for channel in op["channels"]:
                    result["channels"][channel["topic"]] = channel
                    if channel["topic"] in ("/odom", "/tf_static", "/perception/obstacles"):
                        sub_id = len(subscription_topic) + 1
                        subscription_topic[sub_id] = channel["topic"]
                        subscription_of_channel[channel["id"]] = sub_id
                        subscriptions.append({"id": sub_id, "channelId": channel["id"]})
                if subscriptions:
                    await ws.send(json.dumps({"op": "subscribe", "subscriptions": subscriptions}))
                if "/odom" in result["channels"]:
                    publisher.start_obstacles.set()
                continue
            assert frame[0] == MESSAGE_DATA, f"unexpected binary opcode {frame[0]}"
            sub_id, log_time = struct.unpack_from("<IQ", frame, 1)
            topic = subscription_topic[sub_id]
            result["frames"].setdefault(topic, []).append((log_time, bytes(frame[13:])))
            if topic == "/odom":
                odom_window.append(time.monotonic())
            frames = result["frames"]
            if len(frames.get("/odom", [])) >= 12 and frames.get("/tf_static") and frames.get("/perception/obstacles"):
                break
    result["odom_arrivals"] = odom_window
    return result


def test_bridge_serves_topics_as_cdr_with_ros2msg_schemas(tmp_path):
    port = _free_port()
    rclpy.init()
    node = rclpy.create_node("foxglove_test_publisher")
    # Latched before the bridge exists: a client subscribing later must still get it.
    tf_static = node.create_publisher(TFMessage, "/tf_static", LATCHED_QOS)
    transform = TransformStamped(child_frame_id="lidar_link")
    transform.header.frame_id = "base_link"
    transform.transform.translation.z = 0.42
    tf_static.publish(TFMessage(transforms=[transform]))
    publisher = _Publisher(node)
    publisher.thread.start()
    # The AMR's parameter file as shipped (its topics include the three used here), then the test's overrides.
    proc = subprocess.Popen([sys.executable, "-m", "physical_ai_nodes.foxglove_bridge", "--ros-args",
                             "--params-file", str(params_file("amr")), "-p", f"port:={port}",
                             "-p", "discovery_period_s:=0.2", "-p", f"max_rate_hz:={MAX_RATE_HZ}"],
                            env=dict(os.environ), stdout=open(tmp_path / "bridge.log", "wb"),
                            stderr=subprocess.STDOUT)
    try:
        result = asyncio.run(_client(port, publisher, time.monotonic() + 40))
    finally:
        publisher.stop.set()
        publisher.thread.join(timeout=5)
        proc.send_signal(2)  # SIGINT
        try:
            code = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = None
        node.destroy_node()
        rclpy.shutdown()
    log = (tmp_path / "bridge.log").read_text()
    assert code == 0, f"bridge exit code {code} after SIGINT:\n{log}"
    assert {"/odom", "/perception/obstacles", "/tf_static"} <= set(result["channels"]), \
        f"advertised: {sorted(result['channels'])}, frames: {sorted(result['frames'])}\n{log}"
    assert result["subprotocol"] == SUBPROTOCOL

    odom_channel = result["channels"]["/odom"]
    assert odom_channel["encoding"] == "cdr"
    assert odom_channel["schemaEncoding"] == "ros2msg"
    assert odom_channel["schemaName"] == "nav_msgs/msg/Odometry"
    obstacles_channel = result["channels"]["/perception/obstacles"]
    assert obstacles_channel["schemaName"] == "physical_ai_stack/msg/ObstacleArray"
    schema = obstacles_channel["schema"]
    for field in ("Obstacle[] obstacles", "MSG: physical_ai_stack/Obstacle", "classification",
                  "MSG: std_msgs/Header"):
        assert field in schema, f"{field!r} missing from the advertised ObstacleArray schema"

    # Every forwarded /odom frame decodes to exactly the message published with that index.
    frames = result["frames"]
    assert len(frames["/odom"]) >= 12, f"only {len(frames.get('/odom', []))} /odom frames"
    for log_time, payload in frames["/odom"]:
        msg = deserialize_message(payload, Odometry)
        assert msg == publisher.sent[int(msg.pose.pose.position.z)]
        assert log_time > 0
    obstacles = deserialize_message(frames["/perception/obstacles"][0][1], ObstacleArray)
    assert [(o.id, o.classification) for o in obstacles.obstacles] == [(7, Obstacle.CLASS_PERSON)]
    latched = deserialize_message(frames["/tf_static"][0][1], TFMessage)
    assert latched.transforms[0].child_frame_id == "lidar_link"
    assert latched.transforms[0].transform.translation.z == 0.42

    # Published at 50 Hz, forwarded at most MAX_RATE_HZ (plus scheduling slack) per topic.
    arrivals = result["odom_arrivals"]
    rate = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
    assert rate <= MAX_RATE_HZ * 1.5, f"/odom forwarded at {rate:.1f} Hz with max_rate_hz={MAX_RATE_HZ}"


WS_PROTOCOL_CLIENT = r"""
const { FoxgloveClient } = require("@foxglove/ws-protocol");
const { WebSocket } = require("ws");
const url = process.argv[process.argv.length - 1];
const ws = new WebSocket(url, [FoxgloveClient.SUPPORTED_SUBPROTOCOL]);
const client = new FoxgloveClient({ ws });
const payloads = [];
let serverName = null;
client.on("serverInfo", (info) => { serverName = info.name; });
client.on("advertise", (channels) => {
  for (const channel of channels) {
    if (channel.topic === "/odom") client.subscribe(channel.id);
  }
});
client.on("message", ({ data }) => {
  payloads.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("base64"));
  if (payloads.length >= 5) {
    console.log(JSON.stringify({ protocol: ws.protocol, serverName, payloads }));
    process.exit(0);
  }
});
client.on("error", (err) => {
  console.log(JSON.stringify({ error: String(err && err.message || err) }));
  process.exit(2);
});
setTimeout(() => { console.log(JSON.stringify({ error: "timeout", got: payloads.length })); process.exit(3); }, 20000);
"""


def test_official_ws_protocol_client_with_the_older_subprotocol(tmp_path):
    """@foxglove/ws-protocol's FoxgloveClient offers only foxglove.websocket.v1; it connects, subscribes, decodes."""
    import base64

    from npm_testlib import node_modules, run_node_script

    node_modules()  # skips when node/npm are unavailable
    port = _free_port()
    rclpy.init()
    node = rclpy.create_node("foxglove_v1_test_publisher")
    publisher = _Publisher(node)
    publisher.thread.start()
    proc = subprocess.Popen([sys.executable, "-m", "physical_ai_nodes.foxglove_bridge", "--ros-args",
                             "-p", f"port:={port}", "-p", "topics:=['/odom']", "-p", "discovery_period_s:=0.2"],
                            env=dict(os.environ), stdout=open(tmp_path / "bridge.log", "wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 40
        result: dict = {}
        while time.monotonic() < deadline:
            done = run_node_script(WS_PROTOCOL_CLIENT, f"ws://127.0.0.1:{port}", timeout_s=30)
            result = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
            if "payloads" in result:
                break
            time.sleep(0.5)  # the bridge is still starting
    finally:
        publisher.stop.set()
        publisher.thread.join(timeout=5)
        proc.send_signal(2)
        code = proc.wait(timeout=15)
        node.destroy_node()
        rclpy.shutdown()
    log = (tmp_path / "bridge.log").read_text()
    assert "payloads" in result, f"{result}\n{log}"
    assert result["protocol"] == "foxglove.websocket.v1" and result["serverName"] == "physical_ai_stack"
    messages = [deserialize_message(base64.b64decode(p), Odometry) for p in result["payloads"]]
    assert all(m == publisher.sent[int(m.pose.pose.position.z)] for m in messages)
    assert code == 0, log


@pytest.mark.parametrize("robot", ROBOTS)
def test_physai_run_adds_the_bridge_only_with_the_flag(robot):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    plain = cli.build_commands(parser.parse_args([robot]))
    assert FOXGLOVE.name not in [spec.name for spec, _ in plain]
    commands = cli.build_commands(parser.parse_args([robot, "--foxglove", "--namespace", "r1"]))
    spec, argv = commands[-1]
    assert spec is FOXGLOVE and not spec.required  # the stack runs on without its live view
    assert argv[argv.index("--params-file") + 1] == str(params_file(robot))
    assert "physical_ai_nodes.foxglove_bridge" in argv and "__ns:=/r1" in argv
    assert [s.name for s, _ in commands[:-1]] == [s.name for s, _ in plain]


def test_physai_demo_accepts_the_flag():
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    assert parser.parse_args(["amr", "--foxglove"]).foxglove and not parser.parse_args(["amr"]).foxglove


@pytest.mark.parametrize("robot", ROBOTS)
def test_robot_params_hold_a_valid_bridge_section(robot):
    # Every key must be a parameter the node declares (rclpy would otherwise ignore it silently).
    tree = ast.parse((ROOT / "nodes" / "foxglove_bridge.py").read_text())
    declared = {call.args[0].value for call in ast.walk(tree) if isinstance(call, ast.Call)
                and getattr(call.func, "attr", None) == "param" and isinstance(call.args[0], ast.Constant)}
    section = node_params(params_file(robot), "foxglove_bridge")
    assert set(section) <= declared, f"unknown keys {set(section) - declared}"
    # the robot's topics are relative (in its namespace); only the shared /diagnostics is absolute
    assert section["topics"] and all(not t.startswith("/") for t in section["topics"] if t != "/diagnostics")
    assert 0 < section["port"] <= 65535

"""Shared pieces of the bring-up tests: a DDS probe that records what the stack publishes, and AMR stack start-up.

The probe runs an rclpy node on its own executor thread, keeps the newest message per topic with its arrival time
and the newest /clock, and waits on conditions with deadlines (no fixed sleeps).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
from physical_ai_stack.msg import ActionChunk, CorrectionStatus, ObstacleArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import qos_profile_sensor_data
from rosgraph_msgs.msg import Clock
from spin_thread import SpinThread

from physical_ai.bringup.processes import Supervisor
from physical_ai.bringup.stack import STACK, node_command, params_file
from physical_ai_nodes._base import STATE_QOS

ROOT = Path(__file__).resolve().parents[2]
AMR_NODES = ("mujoco_sim", "perception_fusion", "policy_inference", "trajectory_correction")


class Probe:
    """Subscribes to the stack's outputs and keeps what arrived, for assertions with deadlines."""

    def __init__(self, name: str = "bringup_probe") -> None:
        rclpy.init()
        self.node = rclpy.create_node(name)
        self.lock = threading.Lock()
        self.latest: dict[str, tuple[float, Any]] = {}      # topic -> (monotonic arrival, msg)
        self.counts: dict[str, int] = {}
        self.history: dict[str, list[tuple[float, int, Any]]] = {}  # topic -> (monotonic, sim ns, msg)
        # topic -> the publisher's write time of each history entry [ns, system clock] (DDS source timestamp): the
        # order across topics of one publisher, which this executor's arrival order is not under load
        self.sent: dict[str, list[int]] = {}
        self.diagnostics: dict[str, dict[str, str]] = {}    # node name -> newest key/values
        self.diag_times: dict[str, list[float]] = {}         # node name -> monotonic arrival times
        self.clock_ns = 0
        sub = self.node.create_subscription
        sub(Clock, "/clock", self._on_clock, qos_profile_sensor_data)
        for topic, kind in (("/cmd_vel", Twist), ("/correction/status", CorrectionStatus),
                            ("/perception/obstacles", ObstacleArray), ("/policy/action_chunk", ActionChunk)):
            sub(kind, topic, self._recorder(topic), 10)
        sub(DiagnosticArray, "/diagnostics", self._on_diag, STATE_QOS)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._spin = SpinThread(self.executor)

    def _on_clock(self, msg: Clock) -> None:
        ns = msg.clock.sec * 1_000_000_000 + msg.clock.nanosec
        with self.lock:
            self.clock_ns = max(self.clock_ns, ns)

    def _recorder(self, topic: str) -> Callable[[Any], None]:
        def callback(msg: Any, info: dict) -> None:
            now = time.monotonic()
            with self.lock:
                self.latest[topic] = (now, msg)
                self.counts[topic] = self.counts.get(topic, 0) + 1
                self.history.setdefault(topic, []).append((now, self.clock_ns, msg))
                self.sent.setdefault(topic, []).append(int(info.get("source_timestamp") or 0))
        return callback

    def _on_diag(self, msg: DiagnosticArray) -> None:
        with self.lock:
            for status in msg.status:
                self.diagnostics[status.hardware_id] = {kv.key: kv.value for kv in status.values}
                self.diag_times.setdefault(status.hardware_id, []).append(time.monotonic())

    def count(self, topic: str) -> int:
        with self.lock:
            return self.counts.get(topic, 0)

    def fresh(self, topic: str, max_age_s: float = 1.0) -> Any | None:
        """The newest message on a topic if it arrived within max_age_s (wall), else None."""
        with self.lock:
            item = self.latest.get(topic)
        return item[1] if item is not None and time.monotonic() - item[0] <= max_age_s else None

    def since(self, topic: str, t0: float) -> list[tuple[float, int, Any]]:
        """Messages on a topic that arrived after monotonic time t0."""
        with self.lock:
            return [h for h in self.history.get(topic, []) if h[0] > t0]

    def sent_of(self, topic: str, msg: Any) -> int:
        """The publisher's write time [ns] of a message this probe recorded on `topic`."""
        with self.lock:
            return next(s for s, (_, _, m) in zip(self.sent[topic], self.history[topic], strict=True) if m is msg)

    def sent_since(self, topic: str, sent_ns: int) -> list[Any]:
        """Messages on a topic written at or after `sent_ns` (publisher's clock), in write order."""
        with self.lock:
            rows = [(s, i, m) for i, (s, (_, _, m)) in enumerate(zip(self.sent.get(topic, []),
                                                                      self.history.get(topic, []), strict=True))
                    if s >= sent_ns]
        return [m for _, _, m in sorted(rows, key=lambda r: r[:2])]

    def wait(self, predicate: Callable[[], Any], timeout_s: float, what: str,
             detail: Callable[[], str] | None = None) -> Any:
        """Poll predicate until truthy (returned) or fail the test with `what` (and `detail()`) after timeout_s."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        extra = f"\n{detail()}" if detail is not None else ""
        raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for: {what}{extra}")

    def close(self) -> None:
        self._spin.stop()  # the spin thread must have left before the node's handles go
        self.node.destroy_node()
        rclpy.try_shutdown()


def amr_commands(overrides: dict[str, dict[str, str]] | None = None,
                 only: tuple[str, ...] = AMR_NODES) -> list[tuple[Any, list[str]]]:
    """(spec, argv) of the AMR stack from config/amr.yaml with use_sim_time, as `physai run amr` builds them."""
    params = params_file("amr")
    specs = {spec.name: spec for spec in STACK}
    return [(specs[name], node_command(specs[name], params, use_sim_time=True,
                                       overrides=(overrides or {}).get(name)))
            for name in only]


class RunningStack:
    """A Supervisor spinning on a background thread (respawns happen while the test runs)."""

    def __init__(self, commands: list[tuple[Any, list[str]]], log_dir: Path, **kwargs: Any) -> None:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        self.events: list[str] = []
        self.log_dir = log_dir
        self.supervisor = Supervisor(commands, env=env, log_dir=log_dir, on_event=self.events.append, **kwargs)
        self._stop = threading.Event()
        self.code: int | None = None
        self.supervisor.start()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        self.code = self.supervisor.spin(self._stop, period_s=0.1)

    def alive(self, name: str) -> bool:
        return self.supervisor.pid(name) is not None

    def report(self, name: str, lines: int = 40) -> str:
        """The supervisor's events and the last `lines` of node `name`'s log, for a failure message."""
        path = self.log_dir / f"{name}.log"
        tail = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else ["(no log)"]
        return "events:\n  " + "\n  ".join(self.events[-20:]) + f"\n{name}.log:\n  " + "\n  ".join(tail)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def nonzero_cmd(msg: Twist | None) -> bool:
    return msg is not None and (abs(msg.linear.x) > 1e-3 or abs(msg.angular.z) > 1e-3)

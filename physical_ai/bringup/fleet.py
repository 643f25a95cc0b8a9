"""A fleet on one network: one simulator, three AMRs, a namespaced stack per robot (`physai demo fleet`).

mujoco_sim runs the fleet scenario (`physical_ai/sim/fleet.py`) in the root namespace: the global /clock, the
fleet's score on /sim/ground_truth and each robot's drivers under its namespace (/robot1/odom, /robot1/scan,
/robot1/tf, /robot1/cmd_vel, its own score on /robot1/sim/ground_truth). Each robot runs the AMR stack
(perception_fusion, policy_inference, trajectory_correction) in its namespace on the shared /clock, from
config/amr.yaml with config/fleet.yaml applied after it (the policy's pose in the robot's route frame, no camera).
With `policy_server`, the robots' policies are one `physai serve` process that every policy_inference asks (the
openpi backend; each robot a session of its own, requests batched across robots).

`FleetRun` starts all of it with the bring-up Supervisor, waits until every robot's policy is answering, then runs
seeded episodes (`/sim/reset`, so that every robot starts ready) and scores each robot: success, contacts by kind
(robot, person, static, from the simulator's /diagnostics), minimum clearances to people and to the other robots,
the other robots seen by its perception, reaction latencies (`RunMonitor`, one per robot) and limit violations on
its cmd_vel.
"""

from __future__ import annotations

import dataclasses
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from physical_ai.bringup.stack import (
    STACK,
    NodeSpec,
    ParamFiles,
    node_command,
    node_params,
    nodes_for,
    share_dir,
)
from physical_ai.sim.fleet import ROUTES

ROBOTS = tuple(route.robot for route in ROUTES)
SIMULATOR = next(spec for spec in STACK if spec.name == "mujoco_sim")
# The shared policy server: required (every robot's policy is gone without it), not restarted behind the fleet's back.
POLICY_SERVER = NodeSpec("policy_server", respawn=False, required=True)
SEEN_WITHIN_M = 0.6  # a perceived obstacle this close to another robot's base (ground truth) is that robot [m]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fleet_params(override: str | Path | None = None) -> list[Path]:
    """The fleet's parameter files in order: config/amr.yaml, then config/fleet.yaml (or the user's file last)."""
    config = share_dir() / "config"
    return [config / "amr.yaml", Path(override) if override else config / "fleet.yaml"]


def fleet_commands(params: ParamFiles, *, robots: Sequence[str] = ROBOTS, seed: int = 0,
                   overrides: Mapping[str, Mapping[str, str]] | None = None,
                   policy_server: str | None = None) -> list[tuple[NodeSpec, list[str]]]:
    """(spec, argv) of the fleet: the simulator, then each robot's stack in its namespace (specs carry it).

    Args:
        params: parameter files (`fleet_params`).
        robots: the robots' namespaces, as the fleet scenario names them.
        seed: the simulator's first episode.
        overrides: parameter values by node name, for every robot's node of that name.
        policy_server: a checkpoint directory: serve it from one `physai serve` process that every robot's
            policy_inference asks over the openpi protocol (None: each robot loads its own policy).
    """
    overrides = overrides or {}
    sim = {"seed": str(seed), **overrides.get("mujoco_sim", {})}
    commands = [(SIMULATOR, node_command(SIMULATOR, params, use_sim_time=True, overrides=sim))]
    per_node = {name: dict(values) for name, values in overrides.items()}
    if policy_server is not None:
        port = free_port()
        commands.append((POLICY_SERVER, [sys.executable, "-m", "physical_ai.policy.policy_server",
                                         str(Path(policy_server).resolve()), "--port", str(port)]))
        per_node["policy_inference"] = {**per_node.get("policy_inference", {}), "backend": "openpi",
                                        "checkpoint": str(Path(policy_server).resolve()),
                                        "server_uri": f"ws://127.0.0.1:{port}"}
    for robot in robots:
        for spec in nodes_for("none"):
            commands.append((dataclasses.replace(spec, namespace=robot), node_command(
                spec, params, namespace=robot, use_sim_time=True, overrides=per_node.get(spec.name))))
    return commands


@dataclasses.dataclass
class RobotResult:
    """One robot's score in one episode."""

    robot: str
    seed: int
    success: bool
    collisions: int
    contacts: dict[str, int]                # by kind: robot, person, static
    min_person_clearance_m: float
    min_robot_clearance_m: float
    robots_seen: dict[str, int]             # other robot -> perception frames with an obstacle on it
    reaction_ms: list[float]
    limit_violations: int
    progress: float
    time_s: float


class FleetRun:
    """The fleet's processes, one `RunMonitor` per robot and the simulator's score; runs seeded episodes.

    Use as a context manager: `start()` on entry, every process stopped on exit.
    """

    def __init__(self, commands: Sequence[tuple[NodeSpec, list[str]]], params: ParamFiles, *, log_dir: Path,
                 env: dict[str, str], robots: Sequence[str] = ROBOTS,
                 on_event: Callable[[str], None] | None = None) -> None:
        """Prepare (nothing starts yet).

        Args:
            commands: `fleet_commands`.
            params: the same parameter files (the robots' corrector settings define their swept paths).
            log_dir: each process's output as <log_dir>/<robot>/<node>.log.
            env: the processes' environment (ROS_DOMAIN_ID: this process joins the same domain).
            robots: the robots' namespaces.
            on_event: called with each process start/death line.
        """
        from physical_ai.bringup.processes import Supervisor

        self.robots = tuple(robots)
        self.log_dir = log_dir
        self.events: list[str] = []

        def event(text: str) -> None:
            self.events.append(f"{time.strftime('%H:%M:%S')} {text}")
            if on_event is not None:
                on_event(text)

        self.supervisor = Supervisor(commands, log_dir=log_dir, env=env, on_event=event)
        self._env = env
        self._params = params
        self._lock = threading.Lock()
        self._fleet_gt: Any = None
        self._sim_diag: tuple[int, float, dict[str, str]] | None = None  # (stamp ns, arrival, key -> value)
        self._robot_poses: list[tuple[int, dict[str, np.ndarray]]] = []  # (sim ns, robot -> base (x, y))
        self.monitors: dict[str, Any] = {}
        self._first_obstacle: dict[str, int] = {}  # robot -> its monitor's first perceived obstacle of this episode

    # ---- lifecycle ------------------------------------------------------------------------------------------------
    def __enter__(self) -> FleetRun:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Join the processes' ROS domain, subscribe, start every process."""
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from physical_ai_stack.msg import SimGroundTruth
        from rclpy.executors import SingleThreadedExecutor
        from std_msgs.msg import Int64

        from physical_ai.control.amr import amr_config
        from physical_ai_nodes._base import STATE_QOS, use_shipped_fastdds_profile
        from physical_ai_nodes._run_monitor import RunMonitor

        use_shipped_fastdds_profile()
        domain = self._env.get("ROS_DOMAIN_ID")
        rclpy.init(domain_id=int(domain) if domain else None)
        self.node = rclpy.create_node("physai_fleet_monitor")
        self.node.create_subscription(SimGroundTruth, "/sim/ground_truth", self._on_fleet_gt, STATE_QOS)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self._reset_pub = self.node.create_publisher(Int64, "/sim/reset", 1)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        for robot in self.robots:
            corrector = amr_config(node_params(self._params, "trajectory_correction", robot))
            monitor = RunMonitor("fleet", corrector, namespace=robot, clock_topic="/clock")
            self.monitors[robot] = monitor
            self.executor.add_node(monitor)
        self._spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self._spinner.start()
        self.supervisor.start()

    def stop(self) -> None:
        """Stop every process (SIGINT, then SIGKILL after the timeout) and leave the ROS domain."""
        import rclpy

        self.supervisor.stop()
        if getattr(self, "executor", None) is not None:
            self.executor.shutdown()
            self._spinner.join(timeout=5.0)  # not left inside rclpy when the context goes (an abort at exit)
            for monitor in self.monitors.values():
                monitor.destroy_node()
            self.node.destroy_node()
            rclpy.try_shutdown()
            self.executor = None

    # ---- callbacks -------------------------------------------------------------------------------------------------
    def _on_fleet_gt(self, msg: Any) -> None:
        from physical_ai.convert import stamp_to_ns

        poses = {n.split("/")[0]: np.array([p.position.x, p.position.y])
                 for n, p in zip(msg.body_names, msg.body_poses, strict=False) if n.endswith("/base_link")}
        with self._lock:
            self._fleet_gt = msg
            self._robot_poses.append((stamp_to_ns(msg.header.stamp), poses))

    def _on_diagnostics(self, msg: Any) -> None:
        from physical_ai.convert import stamp_to_ns

        for status in msg.status:
            if status.name == "/mujoco_sim":
                with self._lock:
                    self._sim_diag = (stamp_to_ns(msg.header.stamp), time.monotonic(),
                                      {kv.key: kv.value for kv in status.values})

    # ---- episodes --------------------------------------------------------------------------------------------------
    def _check_alive(self) -> None:
        if self.supervisor.poll() is not None:
            raise RuntimeError(f"a required process of the fleet died ({self.events[-3:]}); logs in {self.log_dir}")

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        """Until the simulator runs and every robot's policy has sent a chunk (the slowest part to start)."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._check_alive()
            waiting = [r for r, m in self.monitors.items() if not m.log.latencies_ms.get("policy_inference_ms")]
            if self._fleet_gt is not None and not waiting:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the fleet did not come up in {timeout_s:.0f} s (no policy chunk from "
                                   f"{waiting or 'the simulator'}); logs in {self.log_dir}")
            time.sleep(0.2)

    def episode(self, seed: int, wall_timeout_s: float = 900.0, progress: Callable[[Any], None] | None = None,
                progress_period_s: float = 1.0) -> list[RobotResult]:
        """Reset the world to `seed`, run until every robot is done (or its time is up), score each robot.

        `progress` is called with the fleet's ground truth every `progress_period_s` of wall time.
        """
        from std_msgs.msg import Int64

        from physical_ai.convert import stamp_to_ns

        with self._lock:
            before = self._fleet_gt
            self._fleet_gt = None
            self._robot_poses.clear()
        end_before = stamp_to_ns(before.header.stamp) if before is not None else None
        self._first_obstacle = {robot: len(m.log.obstacles) for robot, m in self.monitors.items()}
        for monitor in self.monitors.values():
            monitor.new_episode()
        self._reset_pub.publish(Int64(data=int(seed)))
        reset_at = started_at = time.monotonic()
        deadline = reset_at + wall_timeout_s
        started, last_progress = False, 0.0
        while True:
            self._check_alive()
            with self._lock:
                gt = self._fleet_gt
            # the reset took effect once the clock went back; ground truth still in flight from before does not count
            if not started and gt is not None and (end_before is None or stamp_to_ns(gt.header.stamp) < end_before):
                started, started_at = True, time.monotonic()
            if started and gt.episode_done:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"episode {seed}: not done after {wall_timeout_s:.0f} s; logs in {self.log_dir}")
            if not started and time.monotonic() - reset_at > 10.0:  # the reset reached no one: send it again
                self._reset_pub.publish(Int64(data=int(seed)))
                reset_at = time.monotonic()
            if progress is not None and started and time.monotonic() - last_progress >= progress_period_s:
                last_progress = time.monotonic()
                progress(gt)
            time.sleep(0.05)
        end_ns = stamp_to_ns(gt.header.stamp)
        diag = self._diagnostics_after(end_ns, started_at)
        return [self._score(robot, seed, end_ns, diag) for robot in self.robots]

    def _diagnostics_after(self, end_ns: int, started_at: float, periods: float = 3.0,
                           stalled_s: float = 60.0) -> dict[str, str]:
        """The simulator's /diagnostics values (contacts, clearances) at the episode's end.

        The first received since the episode started (on the new clock) and stamped at or after its end. The
        simulator sends them every `diagnostics_period_s` of its own clock, so the wait is measured on that clock:
        up to `periods` periods past the end. (A fixed 10 s of wall time was one period at a tenth of real time, a
        simulator that a loaded machine slows to: the run raised at the end of an episode.) `stalled_s` of wall
        time without the clock reaching that point (a simulator that stopped) also ends the wait.
        """
        from physical_ai.convert import stamp_to_ns

        period_s = float(node_params(self._params, "mujoco_sim").get("diagnostics_period_s", 1.0))
        sim_deadline_ns = end_ns + round(periods * period_s * 1e9)
        wall_deadline = time.monotonic() + stalled_s
        while True:
            with self._lock:
                diag, gt = self._sim_diag, self._fleet_gt
            if diag is not None and diag[1] > started_at and diag[0] >= end_ns:
                return diag[2]
            self._check_alive()
            sim_now = stamp_to_ns(gt.header.stamp) if gt is not None else end_ns
            if sim_now > sim_deadline_ns or time.monotonic() > wall_deadline:
                raise RuntimeError(f"no simulator /diagnostics in {(sim_now - end_ns) * 1e-9:.1f} s of sim time "
                                   f"after the episode's end; logs in {self.log_dir}")
            time.sleep(0.05)

    def _score(self, robot: str, seed: int, end_ns: int, diag: dict[str, str]) -> RobotResult:
        monitor = self.monitors[robot]
        deadline = time.monotonic() + 5.0
        while True:  # its own ground truth up to the fleet's end (published in the same step, may arrive later)
            gt = monitor.state()["gt"]
            if gt is not None and gt.header.stamp.sec * 1_000_000_000 + gt.header.stamp.nanosec >= end_ns:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{robot}: no ground truth at the episode's end; logs in {self.log_dir}")
            time.sleep(0.05)
        corr = node_params(self._params, "trajectory_correction", robot)
        violations = monitor.limit_violations(
            float(corr.get("max_linear", 1.0)), float(corr.get("max_angular", 1.5)),
            float(corr.get("max_linear_acc", 1.0)), float(corr.get("max_angular_acc", 2.0)),
            period_s=1.0 / float(corr.get("rate_hz", 100.0)))
        reactions = monitor.reaction_latencies_ms()
        for ms in reactions:
            monitor.log.add_latency("reaction_e2e_ms", ms)
        return RobotResult(
            robot=robot, seed=seed, success=bool(gt.task_success), collisions=int(gt.collisions),
            contacts={kind: int(diag.get(f"{robot}.contacts.{kind}", -1)) for kind in ("robot", "person", "static")},
            min_person_clearance_m=round(float(gt.min_person_clearance_m), 3),
            min_robot_clearance_m=round(float(diag.get(f"{robot}.min_robot_clearance_m", "nan")), 3),
            robots_seen=self._robots_seen(robot), reaction_ms=[round(ms, 1) for ms in reactions],
            limit_violations=violations, progress=round(float(gt.progress), 3),
            time_s=round(end_ns * 1e-9, 2))

    def _robots_seen(self, robot: str, range_m: float = 8.0) -> dict[str, int]:
        """Per other robot: this episode's perception frames with an obstacle within SEEN_WITHIN_M of its base.

        Counted while that robot was within `range_m` of this one (the others' hulls are what its LiDAR sees of
        them; the monitor puts each perceived obstacle in the map with this robot's ground-truth pose).
        """
        with self._lock:
            truth = list(self._robot_poses)
        obstacles = self.monitors[robot].log.obstacles[self._first_obstacle.get(robot, 0):]
        if not truth or not obstacles:
            return {other: 0 for other in self.robots if other != robot}
        stamps = np.array([t for t, _ in truth])
        frames: dict[str, set[float]] = {other: set() for other in self.robots if other != robot}
        for t, x, y, _cls in obstacles:
            i = int(np.clip(np.searchsorted(stamps, t * 1e9), 0, len(truth) - 1))
            poses = truth[i][1]
            if robot not in poses:
                continue
            for other in frames:
                p = poses.get(other)
                if (p is not None and np.hypot(*(p - poses[robot])) < range_m
                        and np.hypot(x - p[0], y - p[1]) < SEEN_WITHIN_M):
                    frames[other].add(t)
        return {other: len(ts) for other, ts in frames.items()}


def summarise(results: Sequence[Sequence[RobotResult]]) -> dict[str, Any]:
    """Per robot and over the fleet: success rate, contacts by kind, minimum clearances, reaction latencies."""
    flat = [r for episode in results for r in episode]
    robots = sorted({r.robot for r in flat})
    per_robot = {}
    for robot in robots:
        rows = [r for r in flat if r.robot == robot]
        reactions = [ms for r in rows for ms in r.reaction_ms]
        per_robot[robot] = {
            "episodes": len(rows), "success": sum(r.success for r in rows) / len(rows),
            "collisions": sum(r.collisions for r in rows),
            "contacts": {k: sum(r.contacts[k] for r in rows) for k in ("robot", "person", "static")},
            "min_person_clearance_m": min(r.min_person_clearance_m for r in rows),
            "min_robot_clearance_m": min(r.min_robot_clearance_m for r in rows),
            "reaction_ms": {"count": len(reactions),
                            "p50": float(np.percentile(reactions, 50)) if reactions else None,
                            "max": max(reactions) if reactions else None},
            "limit_violations": sum(r.limit_violations for r in rows),
        }
    return {"robots": per_robot, "episodes": len(results),
            "success_min_over_robots": min((v["success"] for v in per_robot.values()), default=0.0),
            "collisions": sum(r.collisions for r in flat),
            "robot_robot_contacts": sum(r.contacts["robot"] for r in flat),
            "robot_person_contacts": sum(r.contacts["person"] for r in flat)}

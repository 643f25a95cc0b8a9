"""The fleet on one network: one simulator, three AMRs, each with its own namespaced stack and policy, over DDS."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from physical_ai.bringup.fleet import (
    POLICY_SERVER,
    ROBOTS,
    RobotResult,
    fleet_commands,
    fleet_params,
    free_port,
    summarise,
)
from physical_ai.bringup.stack import clock_topic, node_params, nodes_for


def _arg(argv: list[str], flag: str, prefix: str) -> list[str]:
    """Values of `flag` arguments that start with `prefix` (e.g. -r __ns:=...)."""
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag and argv[i + 1].startswith(prefix)]


def test_one_simulator_and_a_stack_per_robot_in_its_namespace():
    params = fleet_params()
    commands = fleet_commands(params, seed=7)
    assert [spec.label for spec, _ in commands] == ["mujoco_sim", *(f"{robot}/{spec.name}" for robot in ROBOTS
                                                                    for spec in nodes_for("none"))]
    for spec, argv in commands:
        assert [argv[i + 1] for i, a in enumerate(argv) if a == "--params-file"] == [str(p) for p in params]
        assert "use_sim_time:=true" in argv
        assert not _arg(argv, "-r", "/clock:="), "every robot follows the shared simulator's global /clock"
        assert _arg(argv, "-r", "__ns:=") == ([f"__ns:=/{spec.namespace}"] if spec.namespace else [])
    sim = commands[0][1]
    assert "seed:=7" in sim
    # the simulator plays the fleet; every robot's policy reads its pose in its own route frame, without a camera
    assert node_params(params, "mujoco_sim")["scenario"] == "fleet"
    for robot in ROBOTS:
        assert node_params(params, "policy_inference", robot)["pose_frame"] == "route"
        assert node_params(params, "perception_fusion", robot)["image_topic"] == ""
        assert node_params(params, "trajectory_correction", robot)["mode"] == "amr"  # amr.yaml's section
    assert clock_topic("") == "/clock"


def test_one_policy_server_serves_every_robot():
    commands = fleet_commands(fleet_params(), policy_server="models/amr_nav")
    servers = [argv for spec, argv in commands if spec is POLICY_SERVER]
    assert len(servers) == 1 and POLICY_SERVER.required
    port = servers[0][servers[0].index("--port") + 1]
    policies = [argv for spec, argv in commands if spec.name == "policy_inference"]
    assert len(policies) == len(ROBOTS)
    for argv in policies:
        assert "backend:=openpi" in argv and f"server_uri:=ws://127.0.0.1:{port}" in argv
        assert f"checkpoint:={Path('models/amr_nav').resolve()}" in argv  # the spec the robot checks replies against


def test_free_port_is_free():
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def _row(name: str, success: bool, **contacts: int) -> RobotResult:
    kinds = {"robot": 0, "person": 0, "static": 0, **contacts}
    return RobotResult(name, 1, success, sum(kinds.values()), kinds, 0.5, 0.8, {}, [120.0], 0, 1.0, 20.0)


def test_summary_per_robot_and_over_the_fleet():
    s = summarise([[_row("robot1", True), _row("robot2", False, robot=1)],
                   [_row("robot1", True), _row("robot2", True, person=1)]])
    assert s["robots"]["robot1"]["success"] == 1.0 and s["robots"]["robot2"]["success"] == 0.5
    assert s["success_min_over_robots"] == 0.5
    assert s["collisions"] == 2 and s["robot_robot_contacts"] == 1 and s["robot_person_contacts"] == 1
    assert s["robots"]["robot2"]["contacts"] == {"robot": 1, "person": 1, "static": 0}


@pytest.fixture(autouse=True)
def _no_leftover_processes():
    """Every process the fleet started is gone after the test (SIGINT, then SIGKILL)."""
    import psutil

    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before
            and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, [" ".join(p.cmdline()[:4]) for p in left]


def test_inprocess_fleet_drives_each_robot_along_its_own_route():
    """The in-process fleet (the bench's `--inprocess`): each robot's policy, in its route frame, moves it forward."""
    from physical_ai.policy.policy import TorchPolicy
    from physical_ai.sim.fleet import ROUTES
    from physical_ai.training.fleet_eval import run_fleet_episode

    policy = TorchPolicy(Path(__file__).resolve().parents[2] / "models" / "amr_nav", num_threads=1)
    results = run_fleet_episode(policy, 200_000, replan=5, time_limit_s=3.0)
    assert [r.robot for r in results] == [route.robot for route in ROUTES]
    for r in results:
        assert 2.9 <= r.time_s <= 3.1 and not r.success  # 3 s: on the way, not there yet
        assert r.progress > 0.05, r  # robot2 westbound: forward in its route frame is west in the map
        assert sum(r.contacts.values()) == 0 and r.min_robot_clearance_m > 0.5, r


class _SimClock:
    """Plays the simulator's side of an episode's end: its clock at `rtf` of real time from `end_ns`, and
    /diagnostics (as FleetRun receives them) every `period_s` of that clock while `diagnostics` is set."""

    def __init__(self, run, end_ns: int, rtf: float, period_s: float, diagnostics: bool) -> None:
        import threading

        self.run, self.end_ns, self.rtf, self.period_ns = run, end_ns, rtf, round(period_s * 1e9)
        self.diagnostics, self.stop = diagnostics, threading.Event()
        self.thread = threading.Thread(target=self._play, daemon=True)

    def _play(self) -> None:
        import time
        from types import SimpleNamespace

        from builtin_interfaces.msg import Time

        wall0, next_diag = time.monotonic(), self.end_ns + self.period_ns
        while not self.stop.wait(0.02):
            now_ns = self.end_ns + round((time.monotonic() - wall0) * self.rtf * 1e9)
            with self.run._lock:
                self.run._fleet_gt = SimpleNamespace(header=SimpleNamespace(stamp=Time(
                    sec=now_ns // 1_000_000_000, nanosec=now_ns % 1_000_000_000)))
                if self.diagnostics and now_ns >= next_diag:
                    self.run._sim_diag = (now_ns, time.monotonic(), {"robot1.contacts.robot": "0"})
                    next_diag += self.period_ns

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def test_episode_end_diagnostics_are_awaited_on_the_simulators_clock(tmp_path):
    """At a tenth of real time the simulator's 1 s diagnostics period is 10 s of wall time: still awaited (a fixed
    10 s wall timeout raised there); a simulator that runs on without sending any makes the wait fail within a few
    of its periods, not after a long wall timeout."""
    import time

    from physical_ai.bringup.fleet import FleetRun

    run = FleetRun([], fleet_params(), log_dir=tmp_path, env={})
    end_ns = 90 * 1_000_000_000  # an episode ended by the time limit
    started_at = time.monotonic()
    with _SimClock(run, end_ns, rtf=0.08, period_s=1.0, diagnostics=True):
        t0 = time.monotonic()
        assert run._diagnostics_after(end_ns, started_at) == {"robot1.contacts.robot": "0"}
        assert time.monotonic() - t0 > 10.0  # what the wall timeout gave up on
    with _SimClock(run, end_ns, rtf=5.0, period_s=1.0, diagnostics=False):
        run._sim_diag = None
        t0 = time.monotonic()
        with pytest.raises(RuntimeError, match="no simulator /diagnostics in 3"):
            run._diagnostics_after(end_ns, started_at)
        assert time.monotonic() - t0 < 2.0

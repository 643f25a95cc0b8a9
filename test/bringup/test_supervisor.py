"""Supervisor semantics with small real child processes, and `physai run amr --sim mujoco` end to end over DDS."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from bringup_testlib import ROOT, Probe, nonzero_cmd
from physical_ai_stack.msg import CorrectionStatus

from physical_ai.bringup.processes import Supervisor
from physical_ai.bringup.stack import NodeSpec

# A child that runs until SIGINT and then exits 0 (what a ROS 2 node does on Ctrl-C).
SLEEPER = "import time\ntry:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n    raise SystemExit(0)\n"


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _signal_recorder(tmp_path) -> str:
    """A child (argv[1]: its name) that writes which signal reached it to tmp_path/<name> and exits 0 on it."""
    return ("import signal, sys, time\n"
            f"out = {str(tmp_path)!r} + '/' + sys.argv[1]\n"
            "def on(sig, frame):\n"
            "    open(out, 'w').write(signal.Signals(sig).name); sys.exit(0)\n"
            "signal.signal(signal.SIGINT, on); signal.signal(signal.SIGTERM, on)\n"
            "open(out + '.ready', 'w').close()\n"
            "time.sleep(60)\n")


def _spin_until(sup: Supervisor, predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sup.poll()
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s} s waiting for: {what}")


def test_respawn_restarts_a_dying_node_until_max_respawns(tmp_path):
    events: list[str] = []
    marker = tmp_path / "starts"
    # Each start appends a line, then the child dies with code 3.
    dier = _py(f"open({str(marker)!r}, 'a').write('x\\n'); raise SystemExit(3)")
    sup = Supervisor([(NodeSpec("dier", respawn=True, required=False), dier),
                      (NodeSpec("keeper", respawn=False, required=True), _py(SLEEPER))],
                     log_dir=tmp_path, respawn_delay_s=0.05, max_respawns=2, on_event=events.append)
    sup.start()
    try:
        _spin_until(sup, lambda: sum("respawning dier" in e for e in events) == 2
                    and sum("dier exited" in e for e in events) == 3, 20, "two respawns and three exits")
        # Give it ample chances to respawn a third time: it must not.
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            assert sup.poll() is None, "a non-required node giving up must not end the bring-up"
            time.sleep(0.02)
        assert marker.read_text().count("x") == 3      # first start + max_respawns
        assert sup.pid("dier") is None
        assert sup.pid("keeper") is not None            # the others keep running
    finally:
        sup.stop(timeout_s=5)


def test_respawns_back_off_and_a_stable_run_starts_a_new_row(tmp_path):
    events: list[tuple[float, str]] = []
    quick = _py("raise SystemExit(3)")
    sup = Supervisor([(NodeSpec("quick", respawn=True, required=False), quick)], log_dir=tmp_path,
                     respawn_delay_s=0.1, max_respawn_delay_s=0.4, max_respawns=4, stable_s=30.0,
                     on_event=lambda e: events.append((time.monotonic(), e)))
    assert [sup.respawn_delay(k) for k in range(4)] == [0.1, 0.2, 0.4, 0.4]
    sup.start()
    try:
        _spin_until(sup, lambda: sum("respawning quick" in e for _, e in events) == 4, 20, "four respawns")
        exits = [t for t, e in events if "quick exited" in e]
        starts = [t for t, e in events if "respawning quick" in e]
        waits = [start - exit for exit, start in zip(exits, starts, strict=False)]
        assert all(w >= d - 0.03 for w, d in zip(waits, [0.1, 0.2, 0.4, 0.4], strict=True)), waits
    finally:
        sup.stop(timeout_s=5)
    # A node that ran for stable_s before dying starts a new row: it is never given up on for that.
    events.clear()
    stable = _py("import time; time.sleep(0.3); raise SystemExit(3)")
    sup = Supervisor([(NodeSpec("stable", respawn=True, required=True), stable)], log_dir=tmp_path,
                     respawn_delay_s=0.05, max_respawns=1, stable_s=0.2, on_event=lambda e: events.append((0, e)))
    sup.start()
    try:
        _spin_until(sup, lambda: sum("respawning stable" in e for _, e in events) >= 3, 20, "three respawns")
        assert sup.poll() is None and all("(1/1)" in e for _, e in events if "respawning" in e)
    finally:
        sup.stop(timeout_s=5)


def test_required_node_death_stops_the_others_with_nonzero_code(tmp_path):
    events: list[str] = []
    sup = Supervisor([(NodeSpec("a", required=True), _py(SLEEPER)),
                      (NodeSpec("crasher", required=True), _py("import time; time.sleep(0.3); raise SystemExit(7)")),
                      (NodeSpec("b", required=False), _py(SLEEPER))],
                     log_dir=tmp_path, on_event=events.append)
    sup.start()
    pids = [sup.pid("a"), sup.pid("b")]
    assert all(pids)
    try:
        code = sup.spin(period_s=0.02)
    finally:
        sup.stop(timeout_s=5)
    assert code == 7
    assert any("required node crasher is gone" in e for e in events)
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_required_node_exiting_zero_still_fails_the_bringup(tmp_path):
    sup = Supervisor([(NodeSpec("quitter", required=True), _py("pass")),
                      (NodeSpec("a", required=True), _py(SLEEPER))], log_dir=tmp_path, on_event=lambda e: None)
    sup.start()
    try:
        assert sup.spin(period_s=0.02) != 0
    finally:
        sup.stop(timeout_s=5)


def test_stop_sends_sigint_first_and_children_exit_zero(tmp_path):
    # The child records which signal reached it; SIGINT is translated to exit code 0 as ROS nodes do.
    handler = _signal_recorder(tmp_path)
    sup = Supervisor([(NodeSpec(f"n{i}"), [sys.executable, "-c", handler, f"n{i}"]) for i in range(3)],
                     log_dir=tmp_path, on_event=lambda e: None)
    sup.start()
    procs = [child.process for child in sup._children]
    deadline = time.monotonic() + 20
    while not all((tmp_path / f"n{i}.ready").exists() for i in range(3)):
        assert time.monotonic() < deadline, "children never installed their handlers"
        time.sleep(0.02)
    t0 = time.monotonic()
    sup.stop(timeout_s=10)
    assert time.monotonic() - t0 < 5, "stop waited for the SIGKILL timeout: SIGINT was not honoured"
    assert [p.returncode for p in procs] == [0, 0, 0]
    assert [(tmp_path / f"n{i}").read_text() for i in range(3)] == ["SIGINT"] * 3


def test_stop_kills_children_that_ignore_sigint(tmp_path):
    ignorer = _py("import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                  f"open({str(tmp_path / 'ready')!r}, 'w').close()\ntime.sleep(60)\n")
    sup = Supervisor([(NodeSpec("stubborn"), ignorer)], log_dir=tmp_path, on_event=lambda e: None)
    sup.start()
    proc = sup._children[0].process
    deadline = time.monotonic() + 20
    while not (tmp_path / "ready").exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    sup.stop(timeout_s=0.5)
    assert proc.returncode == -signal.SIGKILL


def test_sigterm_to_the_supervisor_stops_its_nodes_in_order(tmp_path):
    # The nodes run in sessions of their own (a terminal's Ctrl-C reaches only the supervisor), so a SIGTERM to
    # the supervisor (a service manager, `kill`) must be passed on as the same ordered SIGINT stop, not orphan them.
    handler = _signal_recorder(tmp_path)
    supervisor = ("import sys\n"
                  "from physical_ai.bringup.processes import Supervisor, stop_on_sigterm\n"
                  "from physical_ai.bringup.stack import NodeSpec\n"
                  f"handler = {handler!r}\n"
                  "sup = Supervisor([(NodeSpec(f'n{i}'), [sys.executable, '-c', handler, f'n{i}']) for i in range(3)],"
                  f" log_dir=__import__('pathlib').Path({str(tmp_path)!r}))\n"
                  "with stop_on_sigterm():\n"
                  "    sup.start()\n"
                  "    sys.exit(sup.spin(period_s=0.05))\n")
    proc = subprocess.Popen(_py(supervisor), stdout=open(tmp_path / "sup.out", "wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not all((tmp_path / f"n{i}.ready").exists() for i in range(3)):
        assert time.monotonic() < deadline, (tmp_path / "sup.out").read_text()
        time.sleep(0.02)
    children = psutil.Process(proc.pid).children()
    assert len(children) == 3
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0, (tmp_path / "sup.out").read_text()
    assert [(tmp_path / f"n{i}").read_text() for i in range(3)] == ["SIGINT"] * 3
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)


# ---- `physai run amr --sim mujoco` as a user runs it ------------------------------------------------------------

def _start_physai(tmp_path, *args: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "physical_ai.cli", "run", "amr", "--sim", "mujoco",
                             "--log-dir", str(tmp_path / "logs"), *args], cwd=ROOT, env=env,
                            stdout=open(tmp_path / "physai.out", "wb"), stderr=subprocess.STDOUT)


def _node_children(proc: subprocess.Popen[bytes], count: int, timeout_s: float = 30) -> dict[str, psutil.Process]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = {}
        for child in psutil.Process(proc.pid).children():
            cmd = " ".join(child.cmdline())
            for name in ("mujoco_sim", "perception_fusion", "policy_inference", "trajectory_correction"):
                if f"physical_ai_nodes.{name}" in cmd:
                    found[name] = child
        if len(found) == count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"physai run did not start {count} node processes")


def _cleanup(proc: subprocess.Popen[bytes], children: dict[str, psutil.Process]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    for child in children.values():
        if child.is_running():
            child.kill()


@pytest.fixture
def probe():
    p = Probe()
    yield p
    p.close()


def test_physai_run_amr_brings_the_stack_up_and_sigint_exits_zero(tmp_path, probe):
    proc = _start_physai(tmp_path)
    children: dict[str, psutil.Process] = {}
    try:
        children = _node_children(proc, 4)
        probe.wait(lambda: probe.fresh("/perception/obstacles") is not None, 60, "/perception/obstacles flowing")
        probe.wait(lambda: probe.fresh("/correction/status") is not None, 30, "/correction/status flowing")
        probe.wait(lambda: probe.fresh("/policy/action_chunk") is not None, 30, "/policy/action_chunk flowing")
        n_cmd = probe.count("/cmd_vel")
        probe.wait(lambda: probe.count("/cmd_vel") > n_cmd + 20, 10, "/cmd_vel flowing")
        probe.wait(lambda: any(nonzero_cmd(m) for _, _, m in probe.since("/cmd_vel", 0)), 30,
                   "a non-zero /cmd_vel (the policy drives the base)")
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        for name, child in children.items():
            assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, f"{name} left running"
        log = (tmp_path / "physai.out").read_text()
        assert "ignored SIGINT" not in log, log          # every node stopped on SIGINT, none needed SIGKILL
    finally:
        _cleanup(proc, children)


def test_physai_run_respawns_the_corrector_after_kill_9(tmp_path, probe):
    # issue 22: the corrector was never respawned; a required node that stays dead still ends the bring-up
    # (test_respawn_restarts_a_dying_node_until_max_respawns, test_required_node_death_stops_the_others...).
    proc = _start_physai(tmp_path)
    children: dict[str, psutil.Process] = {}
    try:
        children = _node_children(proc, 4)
        probe.wait(lambda: probe.fresh("/correction/status") is not None, 60, "/correction/status flowing")
        killed = children["trajectory_correction"]
        killed.kill()
        killed.wait(timeout=10)
        t_kill = time.monotonic()

        def respawned() -> bool:
            again = _node_children(proc, 4)
            return again["trajectory_correction"].pid != killed.pid

        probe.wait(respawned, 30, "a new trajectory_correction process")
        probe.wait(lambda: probe.since("/correction/status", t_kill), 60, "/correction/status from the new corrector")
        assert proc.poll() is None, "the bring-up ended instead of respawning the corrector"
        log = (tmp_path / "physai.out").read_text()
        assert "respawning trajectory_correction" in log and "is gone" not in log, log
        children = _node_children(proc, 4)
    finally:
        _cleanup(proc, children)


def test_physai_run_in_a_namespace_and_sigterm_stops_its_nodes(tmp_path, probe):
    # issue 20: SIGTERM to `physai run` stopped only the supervisor and left its nodes running.
    proc = _start_physai(tmp_path, "--namespace", "robot1")
    children: dict[str, psutil.Process] = {}
    try:
        children = _node_children(proc, 4)
        status = probe.node.create_subscription(CorrectionStatus, "/robot1/correction/status",
                                                probe._recorder("/robot1/correction/status"), 10)
        probe.wait(lambda: probe.count("/robot1/correction/status") > 5, 90, "/robot1/correction/status flowing")
        assert probe.count("/correction/status") == 0      # nothing of the robot at the root
        probe.node.destroy_subscription(status)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        for name, child in children.items():
            assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, f"{name} left running"
        assert "ignored SIGINT" not in (tmp_path / "physai.out").read_text()
    finally:
        _cleanup(proc, children)

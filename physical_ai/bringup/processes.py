"""A small process supervisor: one OS process per node, respawn where safe, clean SIGINT shutdown.

This is what `physai run` uses where `ros2 launch` is not installed. It follows the launch files' semantics:
nodes marked respawn are restarted (with a backoff, below), a required node that dies for good ends the bring-up
with a non-zero exit code, and Ctrl-C sends SIGINT to every node (the shutdown ROS 2 nodes expect), escalating
to SIGKILL only after a timeout. Nodes run in sessions of their own, so a signal to the supervisor reaches only
the supervisor: SIGTERM and SIGHUP (a service manager, `kill`, a closed terminal) are
turned into the same ordered stop as Ctrl-C by `stop_on_sigterm`.

Respawn policy: a node that dies is restarted after `respawn_delay_s`, doubled for each further death in a row
up to `max_respawn_delay_s` (a crash loop does not hammer the robot computer); a node that ran for `stable_s`
before dying starts a new row (delay and count reset). After `max_respawns` restarts in a row it counts as dead
for good. Every death and restart is reported.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

from physical_ai.bringup.stack import NodeSpec


@dataclasses.dataclass
class _Child:
    spec: NodeSpec
    command: list[str]
    process: subprocess.Popen[bytes] | None = None
    respawns: int = 0  # restarts in a row (reset once a run lasts stable_s)
    started_at: float = 0.0
    died_at: float | None = None
    log: IO[bytes] | None = None


class Supervisor:
    """Starts, watches and stops a set of node processes."""

    def __init__(self, commands: Sequence[tuple[NodeSpec, list[str]]], *, env: dict[str, str] | None = None,
                 log_dir: Path | None = None, respawn_delay_s: float = 1.0, max_respawns: int = 10,
                 max_respawn_delay_s: float = 30.0, stable_s: float = 60.0,
                 on_event: Callable[[str], None] | None = None) -> None:
        """Prepare the children.

        Args:
            commands: (spec, argv) per node, in start order.
            env: environment of the children (default: this process's).
            log_dir: write each node's output to <log_dir>/<name>.log; None streams it to this process's stdout
                with a "[name]" prefix.
            respawn_delay_s: wait before the first restart of a node that died [s]; doubled per death in a row.
            max_respawns: restarts in a row allowed per node before it counts as dead for good.
            max_respawn_delay_s: the longest wait before a restart [s].
            stable_s: a node that ran this long before dying starts a new row of restarts [s].
            on_event: called with a one-line description of each start, death and respawn.
        """
        self._children = [_Child(spec, list(cmd)) for spec, cmd in commands]
        self._env = dict(os.environ if env is None else env)
        self._log_dir = log_dir
        self._respawn_delay_s = respawn_delay_s
        self._max_respawns = max_respawns
        self._max_respawn_delay_s = max_respawn_delay_s
        self._stable_s = stable_s
        self._on_event = on_event or (lambda text: print(f"[physai] {text}", flush=True))
        self.exit_code: int | None = None

    def start(self) -> None:
        """Start every node."""
        if self._log_dir is not None:
            self._log_dir.mkdir(parents=True, exist_ok=True)
        for child in self._children:
            self._spawn(child)

    def pid(self, name: str) -> int | None:
        """PID of a running node by name or label (fault-injection tests), None when not running."""
        for child in self._children:
            running = child.process is not None and child.process.poll() is None
            if running and name in (child.spec.name, child.spec.label):
                return child.process.pid
        return None

    def poll(self) -> int | None:
        """Check the children once: respawn or fail as their specs say. Returns an exit code once finished."""
        if self.exit_code is not None:
            return self.exit_code
        now = time.monotonic()
        for child in self._children:
            proc = child.process
            if proc is None:
                if child.died_at is not None and now - child.died_at >= self.respawn_delay(child.respawns):
                    child.respawns += 1
                    self._on_event(f"respawning {child.spec.label} ({child.respawns}/{self._max_respawns})")
                    self._spawn(child)
                continue
            code = proc.poll()
            if code is None:
                continue
            self._on_event(f"{child.spec.label} exited with code {code}")
            child.process = None
            if now - child.started_at >= self._stable_s:
                child.respawns = 0
            if child.spec.respawn and child.respawns < self._max_respawns:
                self._on_event(f"{child.spec.name}: restarting in {self.respawn_delay(child.respawns):.1f} s")
                child.died_at = now
            elif child.spec.required:
                self._on_event(f"required node {child.spec.label} is gone: stopping the bring-up")
                self.stop()
                self.exit_code = code if code else 1
                return self.exit_code
        return None

    def respawn_delay(self, respawns: int) -> float:
        """Wait before the restart that follows `respawns` restarts in a row [s]."""
        return min(self._respawn_delay_s * 2.0 ** respawns, self._max_respawn_delay_s)

    def spin(self, stop_event: threading.Event | None = None, period_s: float = 0.2) -> int:
        """Supervise until a required node dies, `stop_event` is set or Ctrl-C; then stop all. Returns the code."""
        try:
            while stop_event is None or not stop_event.is_set():
                code = self.poll()
                if code is not None:
                    return code
                time.sleep(period_s)
        except KeyboardInterrupt:
            self._on_event("Ctrl-C: stopping")
        self.stop()
        return 0 if self.exit_code is None else self.exit_code

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGINT every running node (last started first), wait, then SIGKILL what is left.

        A second Ctrl-C or SIGTERM meanwhile does not cut this short (it would leave nodes behind).
        """
        with _signals_deferred():
            self._stop(timeout_s)

    def _stop(self, timeout_s: float) -> None:
        running = [c for c in reversed(self._children) if c.process is not None and c.process.poll() is None]
        for child in running:
            assert child.process is not None
            child.process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + timeout_s
        for child in running:
            assert child.process is not None
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._on_event(f"{child.spec.label} ignored SIGINT for {timeout_s:.0f} s: killing it")
                child.process.kill()
                child.process.wait()
        for child in self._children:
            child.process = None
            child.died_at = None  # no respawn after stop
            if child.log is not None:
                child.log.close()
                child.log = None

    def _spawn(self, child: _Child) -> None:
        child.died_at = None
        child.started_at = time.monotonic()
        if self._log_dir is not None:
            if child.log is None:
                path = self._log_dir / f"{child.spec.label}.log"  # robot1/perception_fusion.log in a fleet
                path.parent.mkdir(parents=True, exist_ok=True)
                child.log = open(path, "ab")  # closed in stop()
            out: int | IO[bytes] = child.log
        else:
            out = subprocess.PIPE
        # A new session: the terminal's Ctrl-C reaches only the supervisor, which then stops nodes in order.
        child.process = subprocess.Popen(child.command, env=self._env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        if out is subprocess.PIPE:
            threading.Thread(target=_prefix_lines, args=(child.process, child.spec.label), daemon=True).start()
        self._on_event(f"started {child.spec.label} (pid {child.process.pid})")


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Within this block SIGTERM and SIGHUP raise KeyboardInterrupt in the main thread, as Ctrl-C does.

    `Supervisor.spin` then stops every node in order. Outside the main thread (where Python cannot install signal
    handlers) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Ignore stop signals (main thread only) while the nodes are being stopped; restore the handlers after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _prefix_lines(process: subprocess.Popen[bytes], name: str) -> None:
    assert process.stdout is not None
    for raw in process.stdout:
        sys.stdout.write(f"[{name}] {raw.decode(errors='replace')}")
        sys.stdout.flush()

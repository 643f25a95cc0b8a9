"""An executor spun on a thread of its own that a test can stop cleanly (tests)."""

from __future__ import annotations

import threading

from rclpy.executors import Executor


class SpinThread:
    """Spins `executor` in 0.1 s steps on a daemon thread until `stop()`.

    `stop()` joins the thread before it shuts the executor down: shutting an executor down from another thread while
    it spins destroys its guard condition under the spinning thread (InvalidHandle tracebacks at teardown, seen in
    CI), and a busy machine can keep the thread in a callback for seconds.
    """

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.1)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Let the thread finish its step, then shut the executor down."""
        self._stop.set()
        self._thread.join(timeout_s)
        self.executor.shutdown(timeout_sec=2.0)

"""A fixed-rate loop on its own thread with monotonic deadlines, measured by p99 cycle time and deadline misses."""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Callable, Sequence

from physical_ai.stats import RollingStats


class LoopTimer:
    """Runs `cycle()` every `period_s` against absolute `time.monotonic()` deadlines (no drift).

    A cycle is a deadline miss when it finishes after the next cycle's deadline. After a long stall the loop
    skips the lost cycles instead of bursting to catch up (the corrector's state advances per cycle, and a burst
    would replay commands the actuator can no longer use).

    `wake()` (e.g. from a sensor callback) runs an extra cycle at once instead of at the next deadline; the periodic
    deadlines keep their phase. Cycles are then irregular: `dt_s` says how much time each one stands for (since the
    previous cycle's nominal time: its deadline, or its wake-up), so rate limits stay limits per second.

    Attributes:
        cycle_ms: wall time of recent cycles [ms] (RollingStats), preemption included.
        cpu_ms: CPU time of recent cycles [ms] (this thread's CPU clock): the compute alone.
        cycles: cycles run (woken ones included).
        woken: cycles run early by `wake()`.
        misses: deadline misses.
        dt_s: during a cycle, the time since the previous cycle's nominal time [s], in [0, period_s].
    """

    def __init__(self, period_s: float, cycle: Callable[[], None], spin_s: float = 0.0002, window: int = 5000,
                 rt_priority: int = 0, cpus: Sequence[int] = ()) -> None:
        """Set up (not started).

        Args:
            period_s: loop period [s].
            cycle: the work of one cycle; exceptions stop the loop and are kept in `error`.
            spin_s: the last part of each wait is a busy-wait, for sub-millisecond wake-up jitter [s]; 0 sleeps only.
            window: number of recent cycles kept for percentiles.
            rt_priority: SCHED_FIFO priority (1-99) for the loop thread; 0 keeps the normal scheduler. Needs
                CAP_SYS_NICE or an rtprio limit (see the README); when refused, the loop runs normally and
                `rt_error` says why.
            cpus: CPU cores the loop thread is pinned to (e.g. an isolated core); empty = no pinning.
        """
        if period_s <= 0:
            raise ValueError(f"period_s must be > 0, got {period_s}")
        self.period_s = period_s
        self._cycle = cycle
        self._spin_s = spin_s
        self.cycle_ms = RollingStats(window)
        self.cpu_ms = RollingStats(window)
        self.cycles = 0
        self.woken = 0
        self.dt_s = period_s
        self.misses = 0
        self.skipped = 0
        self.error: BaseException | None = None
        self.rt_priority = rt_priority
        self.cpus = tuple(cpus)
        self.rt_error: str | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, name: str = "control_loop") -> None:
        """Start the loop thread (daemon)."""
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name=name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Ask the loop to stop and wait for it."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _set_thread_scheduling(self) -> None:
        # On Linux, pid 0 in these calls means the calling thread, not the whole process.
        if self.cpus:
            try:
                os.sched_setaffinity(0, self.cpus)
            except OSError as exc:
                self.rt_error = f"affinity {self.cpus} refused: {exc}"
        if self.rt_priority > 0:
            try:
                os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(self.rt_priority))
            except (OSError, AttributeError) as exc:
                self.rt_error = f"SCHED_FIFO {self.rt_priority} refused: {exc}"
        # Objects alive now (the node, models, buffers) are never scanned again by the collector: shorter pauses.
        gc.freeze()

    @property
    def realtime(self) -> bool:
        """True when the loop thread runs under SCHED_FIFO."""
        return self.rt_priority > 0 and self.rt_error is None and self.cycles > 0

    def wake(self) -> None:
        """Run a cycle now (thread-safe); one that is due within the busy-wait time anyway is not doubled."""
        self._wake.set()

    def run(self, max_cycles: int | None = None) -> None:
        """Run in the calling thread until `stop()` (or `max_cycles`)."""
        self._set_thread_scheduling()
        period = self.period_s
        deadline = time.monotonic()
        previous = deadline - period  # nominal time of the previous cycle
        try:
            while not self._stop.is_set() and (max_cycles is None or self.cycles < max_cycles):
                woken = self._wait_until(deadline)
                if self._stop.is_set():
                    break
                self._wake.clear()  # a wake-up from now on asks for another cycle
                start = time.monotonic()
                nominal = start if woken else deadline
                self.dt_s = min(max(nominal - previous, 0.0), period)
                previous = nominal
                cpu = time.thread_time()
                self._cycle()
                end = time.monotonic()
                self.cpu_ms.add((time.thread_time() - cpu) * 1e3)
                self.cycle_ms.add((end - start) * 1e3)
                self.cycles += 1
                if woken:  # an extra cycle: the periodic deadline stays
                    self.woken += 1
                    continue
                deadline += period
                if end > deadline:
                    self.misses += 1
                    if end > deadline + period:  # stalled: skip the lost cycles, keep the phase
                        lost = int((end - deadline) / period)
                        self.skipped += lost
                        deadline += lost * period
        except BaseException as exc:  # the node reports it and stops the robot; never die silently
            self.error = exc

    def _wait_until(self, deadline: float) -> bool:
        """Wait for the deadline; True when woken before it (further than the busy-wait time from it)."""
        remaining = deadline - time.monotonic()
        if remaining > self._spin_s and self._wake.wait(remaining - self._spin_s):
            return not self._stop.is_set()
        while time.monotonic() < deadline:
            pass
        return False

    @property
    def miss_pct(self) -> float:
        """Deadline misses as a percentage of cycles."""
        return 100.0 * self.misses / self.cycles if self.cycles else 0.0

"""Rolling statistics for rates, latencies and loop timing (used by diagnostics and benchmarks)."""

from __future__ import annotations

import collections
import time

import numpy as np


class RollingStats:
    """Keeps the last `window` samples of a quantity and reports percentiles over them.

    The samples live in a numpy ring buffer: control loops report a p99 over thousands of cycles many times a
    second, and copying a deque into an array for each report cost ~1 ms of the loop's thread on a busy machine.
    """

    def __init__(self, window: int = 1000) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self._buf = np.empty(window)
        self._next = 0       # index of the next write
        self._filled = 0     # samples in the buffer
        self.count = 0

    def add(self, value: float) -> None:
        """Record one sample."""
        self._buf[self._next] = value
        self._next = (self._next + 1) % len(self._buf)
        self._filled = min(self._filled + 1, len(self._buf))
        self.count += 1

    def percentile(self, q: float) -> float:
        """The q-th percentile (0-100) of the window, NaN when empty."""
        if not self._filled:
            return float("nan")
        return float(np.percentile(self._buf[:self._filled], q))

    @property
    def last(self) -> float:
        """The most recent sample, NaN when empty."""
        return float(self._buf[self._next - 1]) if self._filled else float("nan")

    def __len__(self) -> int:
        return self._filled


class RateMeter:
    """Measures how often an event happens, over a sliding time window (monotonic clock)."""

    def __init__(self, window_s: float = 2.0) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self._window_s = window_s
        self._times: collections.deque[float] = collections.deque()
        self.count = 0

    def tick(self, now: float | None = None) -> None:
        """Record one event at `now` (seconds, monotonic; default: time.monotonic())."""
        now = time.monotonic() if now is None else now
        self._times.append(now)
        self.count += 1
        self._trim(now)

    def rate_hz(self, now: float | None = None) -> float:
        """Events per second over the window ending at `now`."""
        now = time.monotonic() if now is None else now
        self._trim(now)
        if len(self._times) < 2:
            return 0.0
        span = now - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self._window_s:
            self._times.popleft()

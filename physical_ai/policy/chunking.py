"""Asynchronous chunked execution: inference on a worker thread, the next chunk requested before this one ends.

Timing convention: a chunk computed from an observation taken at `obs_time` has `values[k]` applying at
`obs_time + k * dt`. When the chunk is ready, steps whose interval has fully elapsed are cut off (never replayed):
the published chunk starts at the step in effect now. The caller's thread (a ROS timer) only decides *when* to
ask; the model runs on the worker, so control never waits for it. Before each inference the policy is told the
rows of the chunk in execution from the observation's time on and how many of them the robot will have played when
the new chunk arrives (`Policy.executing`; the delay estimated from the last inferences' latencies).
"""

from __future__ import annotations

import math
import os
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from physical_ai.policy.observation import ObservationError
from physical_ai.policy.openpi_client import PolicyServerError
from physical_ai.policy.policy import ActionChunkResult, Policy

NS = 1_000_000_000
LATENCY_HISTORY = 3  # the next inference is expected to take as long as the slowest of this many last ones


@dataclass(frozen=True)
class TimedChunk:
    """A chunk ready to execute: `values[0]` applies at `start_time_ns`, later rows every `dt` seconds."""

    values: np.ndarray
    names: tuple[str, ...]
    dt: float
    obs_time_ns: int        # time of the observation it was computed from
    start_time_ns: int      # obs_time_ns + skipped * dt
    skipped: int            # elapsed steps cut from the front
    latency_ms: float
    embodiment: str
    model_id: str

    @property
    def end_time_ns(self) -> int:
        """Time at which the last step's interval ends."""
        return self.start_time_ns + round(len(self.values) * self.dt * NS)


def trim_elapsed(result: ActionChunkResult, obs_time_ns: int, now_ns: int) -> TimedChunk | None:
    """Cut the steps of `result` whose interval ended before `now_ns`; None when nothing is left."""
    dt_ns = result.dt * NS
    skipped = max(0, math.floor((now_ns - obs_time_ns) / dt_ns + 1e-9))
    if skipped >= result.horizon:
        return None
    return TimedChunk(values=result.values[skipped:], names=result.names, dt=result.dt, obs_time_ns=obs_time_ns,
                      start_time_ns=obs_time_ns + round(skipped * dt_ns), skipped=skipped,
                      latency_ms=result.latency_ms, embodiment=result.embodiment, model_id=result.model_id)


class AsyncChunkRunner:
    """Requests chunks from a policy on a worker thread and hands finished, trimmed chunks to `publish`.

    Drop reasons reported through `on_drop(reason, detail)`: "observation" (missing/stale/malformed input),
    "non_finite_output" (NaN/inf in the model output), "backend_unavailable" (server down or timed out),
    "expired" (the chunk was entirely in the past when it arrived), "stale_chunk" (older observation than the
    chunk already published), "inference_error" (anything else the backend raised).
    """

    def __init__(self, policy: Policy, clock_ns: Callable[[], int], publish: Callable[[TimedChunk], None],
                 on_drop: Callable[[str, str], None], request_threshold_s: float, min_period_s: float = 0.0,
                 nice: int = 0) -> None:
        """Configure the object.

        Args:
            policy: the backend.
            clock_ns: current time [ns] on the same clock as the observation stamps (node clock).
            publish: called on the worker thread with each accepted chunk.
            on_drop: called with (reason, detail) for each dropped observation or chunk.
            request_threshold_s: ask for the next chunk when the current one has less than this left [s].
            min_period_s: never start two inferences closer than this [s] (0: as fast as the backend allows).
            nice: scheduling niceness added to the worker thread (Linux: per thread), so that a busy model yields
                the CPU to real-time control loops on small machines.
        """
        self.policy = policy
        self.clock_ns = clock_ns
        self.publish = publish
        self.on_drop = on_drop
        self.request_threshold_s = request_threshold_s
        self.min_period_s = min_period_s
        self.nice = nice
        self._cond = threading.Condition()
        self._pending: tuple[Mapping[str, Any], int] | None = None
        self._busy = False
        self._stop = False
        self._last_request_ns: int | None = None
        self._current: TimedChunk | None = None
        self._latencies_ns: deque[int] = deque(maxlen=LATENCY_HISTORY)  # the last inferences' on the node clock
        self._thread = threading.Thread(target=self._loop, name="policy-inference", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        """True while an inference is queued or running."""
        with self._cond:
            return self._busy

    @property
    def current(self) -> TimedChunk | None:
        """The last published chunk."""
        with self._cond:
            return self._current

    def remaining_s(self, now_ns: int) -> float:
        """Seconds of the current chunk left at `now_ns` (0 without a chunk)."""
        with self._cond:
            if self._current is None:
                return 0.0
            return max(0.0, (self._current.end_time_ns - now_ns) / NS)

    def due(self, now_ns: int) -> bool:
        """Whether a new inference should start now."""
        with self._cond:
            if self._busy:
                return False
            if self._last_request_ns is not None and now_ns - self._last_request_ns < self.min_period_s * NS:
                return False
        return self.remaining_s(now_ns) < self.request_threshold_s

    def submit(self, obs: Mapping[str, Any], obs_time_ns: int) -> bool:
        """Queue one inference; False (nothing queued) while another is in progress."""
        with self._cond:
            if self._busy or self._stop:
                return False
            self._busy = True
            self._pending = (obs, obs_time_ns)
            self._last_request_ns = self.clock_ns()
            self._cond.notify()
            return True

    def maybe_request(self, get_observation: Callable[[], tuple[Mapping[str, Any], int]]) -> bool:
        """If due, take an observation (which may raise `ObservationError`: reported, skipped) and submit it."""
        if not self.due(self.clock_ns()):
            return False
        try:
            obs, stamp = get_observation()
        except ObservationError as exc:
            self.on_drop("observation", str(exc))
            return False
        return self.submit(obs, stamp)

    def reset(self) -> None:
        """Forget the current chunk and request time (after a pause or a clock reset, the next request is immediate)."""
        with self._cond:
            self._current = None
            self._last_request_ns = None

    def stop(self, timeout_s: float = 2.0) -> None:
        """End the worker thread (waits for a running inference up to `timeout_s`)."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout_s)

    def _loop(self) -> None:
        if self.nice > 0 and hasattr(os, "setpriority"):
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)
            except OSError:
                pass  # lowering our own priority cannot fail on Linux; elsewhere it is only an optimisation
        while True:
            with self._cond:
                while self._pending is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                obs, obs_time_ns = self._pending
                self._pending = None
            try:
                self._run(obs, obs_time_ns)
            finally:
                with self._cond:
                    self._busy = False

    def _executing(self, obs_time_ns: int) -> tuple[np.ndarray, int] | None:
        """The current chunk's rows from `obs_time_ns` on, and how many the robot plays before the next chunk."""
        with self._cond:
            current, latencies = self._current, list(self._latencies_ns)
        if current is None:
            return None
        dt_ns = current.dt * NS
        first = max(0, math.floor((obs_time_ns - current.start_time_ns) / dt_ns + 1e-9))
        if first >= len(current.values):
            return None
        expected_ns = self.clock_ns() - obs_time_ns + max(latencies, default=0)
        return current.values[first:], max(0, math.ceil(expected_ns / dt_ns - 1e-9))

    def _run(self, obs: Mapping[str, Any], obs_time_ns: int) -> None:
        try:
            executing = self._executing(obs_time_ns)
            if executing is not None:
                self.policy.executing(*executing)
            started_ns = self.clock_ns()
            result = self.policy.infer(obs)
        except ObservationError as exc:
            self.on_drop("observation", str(exc))
            return
        except PolicyServerError as exc:
            self.on_drop("backend_unavailable", str(exc))
            return
        except Exception as exc:  # a backend bug must not kill the worker; it is reported and counted
            self.on_drop("inference_error", f"{type(exc).__name__}: {exc}")
            return
        with self._cond:  # on the node clock, as the chunk's time (simulated time runs slower than the wall)
            self._latencies_ns.append(max(0, self.clock_ns() - started_ns))
        if not np.isfinite(result.values).all():
            self.on_drop("non_finite_output", f"{int((~np.isfinite(result.values)).sum())} non-finite values")
            return
        chunk = trim_elapsed(result, obs_time_ns, self.clock_ns())
        if chunk is None:
            self.on_drop("expired", f"chunk of {result.horizon} steps arrived after it ended "
                                    f"(latency {result.latency_ms:.1f} ms)")
            return
        with self._cond:
            if self._current is not None and chunk.obs_time_ns <= self._current.obs_time_ns:
                stale = True
            else:
                stale = False
                self._current = chunk
        if stale:
            self.on_drop("stale_chunk", "computed from an observation older than the current chunk's")
            return
        self.publish(chunk)

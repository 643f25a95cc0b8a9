"""One policy, many robots: requests that arrive together run as one batch, and each robot has a session.

A policy server serves each robot on a connection of its own (one thread per connection). `BatchedPolicy` sits
between those threads and the model:
- each robot's observation is checked and turned into model inputs on its own connection thread (a bad
  observation fails that robot's request only, never the batch it would have joined);
- one worker thread runs the model: it takes the oldest waiting request, waits at most `wait_s` for other robots'
  requests (or until `max_batch` are waiting), stacks them along the batch dimension and runs one forward pass;
- a robot's control loop never waits for this: the policy_inference node asks for its next chunk ahead of time
  on a thread of its own, and its corrector keeps executing the current chunk meanwhile.

Sessions (`SessionTable`): one per connection, named by the client (the robot's namespace, sent in the
`X-Robot-Id` header, else `robot-<n>`), with its request count and latency (p50/p99), logged when it closes and
readable while it is open; per-robot state a model needs between requests (observation history) lives there.

Batching pays where the model's cost is per forward pass, not per sample (small models on CPU, any model on a
GPU): `bench/policy_server_bench.py` measures it (`policy.server.p99_ms.robots_<n>`).
"""

from __future__ import annotations

import contextvars
import dataclasses
import itertools
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from physical_ai.stats import RollingStats

ROBOT_ID_HEADER = "X-Robot-Id"

PrepareFn = Callable[[Mapping[str, Any]], dict[str, np.ndarray]]
ForwardFn = Callable[[Sequence[dict[str, np.ndarray]]], list[np.ndarray]]


@dataclasses.dataclass
class Session:
    """One robot's connection to the server."""

    id: int
    robot: str
    peer: str
    opened_at: float = dataclasses.field(default_factory=time.monotonic)
    requests: int = 0
    errors: int = 0
    latency_ms: RollingStats = dataclasses.field(default_factory=lambda: RollingStats(1000))
    state: dict[str, Any] = dataclasses.field(default_factory=dict)  # per-robot model state (history), if any

    def summary(self) -> dict[str, Any]:
        """Request count and latency percentiles [ms] of this session."""
        return {"id": self.id, "robot": self.robot, "peer": self.peer, "requests": self.requests,
                "errors": self.errors, "p50_ms": round(self.latency_ms.percentile(50), 3),
                "p99_ms": round(self.latency_ms.percentile(99), 3)}


# The session of the request being served on this thread (the server sets it around each request).
current_session: contextvars.ContextVar[Session | None] = contextvars.ContextVar("current_session", default=None)


class SessionTable:
    """The open sessions of a server, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._open: dict[int, Session] = {}

    def open(self, robot: str, peer: str) -> Session:
        """Register a new connection; `robot` '' gets the name robot-<id>."""
        with self._lock:
            sid = next(self._ids)
            session = Session(sid, robot or f"robot-{sid}", peer)
            self._open[sid] = session
        return session

    def close(self, session: Session) -> None:
        """Forget a closed connection (its state goes with it)."""
        with self._lock:
            self._open.pop(session.id, None)

    def sessions(self) -> list[Session]:
        """The open sessions."""
        with self._lock:
            return list(self._open.values())


@dataclasses.dataclass
class _Pending:
    inputs: dict[str, np.ndarray]
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None


class BatchedPolicy:
    """Runs `forward` on requests from many threads, stacked into batches (see module docstring)."""

    def __init__(self, prepare: PrepareFn, forward: ForwardFn, max_batch: int = 8, wait_s: float = 0.002) -> None:
        """Start the batching thread.

        Args:
            prepare: one observation -> batch-1 model inputs (raises for a bad observation).
            forward: a list of prepared inputs -> one (H, D) action array per input, from one forward pass.
            max_batch: most requests in one forward pass (>= 1; 1 disables batching).
            wait_s: longest the oldest waiting request waits for others to join its batch [s].
        """
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if not 0.0 <= wait_s <= 1.0:
            raise ValueError(f"wait_s must be in [0, 1] s, got {wait_s}")
        self._prepare, self._forward = prepare, forward
        self.max_batch, self.wait_s = max_batch, wait_s
        self._queue: list[tuple[float, _Pending]] = []
        self._cv = threading.Condition()
        self._running = True
        self.batches = 0
        self.batch_sizes: list[int] = []  # the last 1000 batches' sizes
        self._thread = threading.Thread(target=self._loop, name="policy-batcher", daemon=True)
        self._thread.start()

    def infer(self, obs: Mapping[str, Any]) -> np.ndarray:
        """One robot's (H, D) actions; blocks this thread until the batch that holds the request has run."""
        pending = _Pending(self._prepare(obs))
        with self._cv:
            if not self._running:
                raise RuntimeError("the batching thread is stopped")
            self._queue.append((time.monotonic(), pending))
            self._cv.notify()
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None
        return pending.result

    def stop(self) -> None:
        """Stop the thread; requests still waiting fail."""
        with self._cv:
            self._running = False
            waiting, self._queue = self._queue, []
            self._cv.notify()
        for _, pending in waiting:
            pending.error = RuntimeError("the policy server is stopping")
            pending.done.set()
        self._thread.join(timeout=2.0)

    def _take_batch(self) -> list[_Pending]:
        with self._cv:
            while self._running and not self._queue:
                self._cv.wait()
            if not self._running:
                return []
            deadline = self._queue[0][0] + self.wait_s
            while self._running and len(self._queue) < self.max_batch:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(left)
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch:]
        return [pending for _, pending in batch]

    def _loop(self) -> None:
        while True:
            batch = self._take_batch()
            if not batch:
                return
            try:
                results = self._forward([p.inputs for p in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"forward returned {len(results)} results for a batch of {len(batch)}")
            except Exception as exc:  # the model failed: every request of this batch gets the error
                for pending in batch:
                    pending.error = exc
                    pending.done.set()
                continue
            self.batches += 1
            self.batch_sizes = [*self.batch_sizes[-999:], len(batch)]
            for pending, result in zip(batch, results, strict=True):
                pending.result = result
                pending.done.set()

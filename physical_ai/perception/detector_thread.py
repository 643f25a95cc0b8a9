"""The camera's people detector at its own rate, off the LiDAR path.

A full-frame detector on a 1600x900 image costs hundreds of milliseconds on one core (HOG: 400-880 ms for the six
nuScenes cameras), ten times the LiDAR cycle. Run inside the cycle it held every obstacle message back by that much.
Here it runs in its own thread on the newest image of each camera (older ones are replaced, never queued), at most
`rate_hz` images a second, under Linux's SCHED_IDLE policy (it gets a core only when nothing else wants it; where
that is refused, at a higher niceness), so the LiDAR cycle preempts it even on one core. On a saturated computer it
runs late or not at all: `runs` and `run_ms` tell how often it ran. The cycle fuses the newest finished detections
with this frame's clusters. OpenCV and the TFLite interpreter release the GIL while they compute, so the thread
does not stall the cycle's Python code either.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import numpy as np


class DetectorThread:
    """Run `detect(image, bgr) -> (K, 5) boxes` on the newest image per camera in a background thread."""

    def __init__(self, detect: Callable[[np.ndarray, bool], np.ndarray], rate_hz: float, nice: int = 19) -> None:
        """Start the thread.

        Args:
            detect: the detector (called from the thread only).
            rate_hz: most images processed per second, over all cameras.
            nice: the thread's niceness where SCHED_IDLE is not available.

        Raises:
            ValueError: for a rate <= 0.
        """
        if rate_hz <= 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
        self._detect = detect
        self._period = 1.0 / rate_hz
        self._nice = nice
        self._lock = threading.Condition()
        self._pending: dict[str, tuple[int, np.ndarray, bool]] = {}
        self._results: dict[str, tuple[int, np.ndarray]] = {}
        self._order: list[str] = []            # cameras in the order they were last served (round robin)
        self._closed = False
        self.runs = 0
        self.replaced = 0                      # images dropped for a newer one before the detector got to them
        self.run_ms: list[float] = []          # the last 100 detection times
        self._thread = threading.Thread(target=self._loop, name="people_detector", daemon=True)
        self._thread.start()

    def submit(self, camera: str, stamp_ns: int, image: np.ndarray, bgr: bool = False) -> None:
        """Hand over a camera's newest image (kept by reference: the caller must not write into it)."""
        with self._lock:
            if camera in self._pending:
                self.replaced += 1
            self._pending[camera] = (stamp_ns, image, bgr)
            if camera not in self._order:
                self._order.append(camera)
            self._lock.notify()

    def latest(self, camera: str) -> tuple[int, np.ndarray] | None:
        """The newest finished detections of a camera: (stamp of their image, (K, 5) boxes), or None yet."""
        with self._lock:
            return self._results.get(camera)

    def close(self) -> None:
        """Stop the thread (it finishes the image in hand first)."""
        with self._lock:
            self._closed = True
            self._lock.notify()
        self._thread.join(timeout=5.0)

    def _loop(self) -> None:
        tid = threading.get_native_id()
        try:
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        except (AttributeError, OSError):
            try:
                os.setpriority(os.PRIO_PROCESS, tid, self._nice)
            except (AttributeError, OSError):   # not Linux, or not permitted: runs at the caller's priority
                pass
        next_start = 0.0
        while True:
            with self._lock:
                # Keep the rate first, then take the newest image: one that arrives meanwhile replaces its older one.
                self._lock.wait_for(lambda: self._closed, timeout=max(next_start - time.monotonic(), 0.0))
                while not self._pending and not self._closed:
                    self._lock.wait()
                if self._closed:
                    return
                camera = next(c for c in self._order if c in self._pending)
                self._order.remove(camera)
                self._order.append(camera)
                stamp, image, bgr = self._pending.pop(camera)
            start = time.monotonic()
            boxes = self._detect(image, bgr)
            elapsed = time.monotonic() - start
            next_start = start + self._period
            with self._lock:
                self._results[camera] = (stamp, boxes)
                self.runs += 1
                self.run_ms = [*self.run_ms[-99:], elapsed * 1e3]

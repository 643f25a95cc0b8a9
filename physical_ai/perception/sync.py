"""Sensor synchronisation that never stalls on a dead or late sensor.

One sensor drives the cycle (the first alive of the trigger list, normally a LiDAR). Each of its frames is queued
and matched against the other sensors by stamp (approximate time, within `slop`). A frame waits for a missing
partner only while that partner is alive and only up to `max_wait`; it is never dropped because another sensor is
late: a newer trigger frame, a full queue or the wait bound all release it with whatever is fresh. Sensors with no
data within their age limit are reported stale and the bundle is flagged degraded.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SensorSpec:
    """Per-sensor timing limits."""

    max_age_ns: int                       # older data (relative to the trigger stamp, or unheard this long) is stale
    buffer: int = 8                       # messages kept for matching


@dataclass
class Bundle:
    """Data for one processing cycle."""

    trigger: str
    stamp_ns: int
    data: dict[str, tuple[int, Any]]      # sensor -> (stamp_ns, payload), trigger included
    stale: list[str] = field(default_factory=list)

    @property
    def degraded(self) -> bool:
        """True when a configured sensor contributed nothing fresh."""
        return bool(self.stale)


class SensorSync:
    """Approximate-time matcher with bounded waits.

    Args:
        sensors: name -> timing limits, for every configured sensor.
        triggers: sensors that may drive a cycle, in priority order.
        slop_ns: largest stamp difference for a match.
        max_wait_ns: longest a trigger frame waits for a late (but alive) partner.
    """

    def __init__(self, sensors: dict[str, SensorSpec], triggers: list[str], slop_ns: int, max_wait_ns: int) -> None:
        unknown = [t for t in triggers if t not in sensors]
        if unknown or not triggers:
            raise ValueError(f"triggers {triggers} must be non-empty and configured sensors")
        self.sensors = sensors
        self.triggers = triggers
        self.slop_ns = slop_ns
        self.max_wait_ns = max_wait_ns
        self._buffers: dict[str, collections.deque] = {s: collections.deque(maxlen=spec.buffer)
                                                       for s, spec in sensors.items()}
        self._last_rx: dict[str, int] = {}
        self._pending: collections.deque = collections.deque()   # (trigger, stamp_ns, payload, rx_ns)

    def alive(self, name: str, now_ns: int) -> bool:
        """Whether a sensor has been heard within its age limit."""
        rx = self._last_rx.get(name)
        return rx is not None and now_ns - rx <= self.sensors[name].max_age_ns

    def active_trigger(self, now_ns: int) -> str | None:
        """The trigger sensor that currently drives cycles (first alive one)."""
        return next((t for t in self.triggers if self.alive(t, now_ns)), None)

    def add(self, name: str, stamp_ns: int, payload: Any, now_ns: int) -> None:
        """Record a validated message received at `now_ns`."""
        if name not in self.sensors:
            raise KeyError(f"unknown sensor {name}")
        self._last_rx[name] = now_ns
        self._buffers[name].append((stamp_ns, payload))
        if name == self.active_trigger(now_ns):
            self._pending.append((name, stamp_ns, payload, now_ns))

    @property
    def pending(self) -> bool:
        """Whether a trigger frame waits to be released (by a later `poll`)."""
        return bool(self._pending)

    def poll(self, now_ns: int) -> list[Bundle]:
        """Release every trigger frame that is complete, has waited long enough, or has a newer successor."""
        out = []
        while self._pending:
            trigger, stamp, payload, rx = self._pending[0]
            must_release = len(self._pending) > 1 or now_ns - rx >= self.max_wait_ns
            bundle, waiting = self._match(trigger, stamp, payload, now_ns)
            if waiting and not must_release:
                break
            self._pending.popleft()
            out.append(bundle)
        return out

    def _match(self, trigger: str, stamp: int, payload: Any, now_ns: int) -> tuple[Bundle, bool]:
        data = {trigger: (stamp, payload)}
        stale, waiting = [], False
        for name, spec in self.sensors.items():
            if name == trigger:
                continue
            buf = self._buffers[name]
            best = min(buf, key=lambda m: abs(m[0] - stamp), default=None)
            if best is not None and abs(best[0] - stamp) <= self.slop_ns:
                data[name] = best
                continue
            newest = buf[-1] if buf else None
            # A partner that is alive but has not yet sent data for this stamp may still arrive: wait for it.
            if self.alive(name, now_ns) and (newest is None or newest[0] < stamp):
                waiting = True
            if newest is not None and abs(stamp - newest[0]) <= spec.max_age_ns and self.alive(name, now_ns):
                data[name] = newest
            else:
                stale.append(name)
        return Bundle(trigger, stamp, data, stale), waiting

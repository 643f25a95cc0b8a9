"""Staleness watchdogs: which inputs have gone quiet for longer than allowed, and why the robot must stop."""

from __future__ import annotations

from physical_ai.control.flags import Flag


class Watchdog:
    """Tracks when each named input was last received (controller clock, seconds) against its timeout."""

    def __init__(self, timeouts_s: dict[str, float], flags: dict[str, Flag] | None = None) -> None:
        """Args: timeouts_s: input name -> largest allowed age [s] (<= 0 disables); flags: name -> status flag."""
        self.timeouts_s = dict(timeouts_s)
        self.flags = flags or {}
        self._last: dict[str, float] = {}

    def feed(self, name: str, now_s: float) -> None:
        """Record that `name` was received at `now_s`."""
        self._last[name] = now_s

    def reset(self) -> None:
        """Forget every input (after a clock reset): each counts as stale until it is received again."""
        self._last.clear()

    def age(self, name: str, now_s: float) -> float:
        """Seconds since `name` was last received (inf if never)."""
        last = self._last.get(name)
        return float("inf") if last is None else now_s - last

    def check(self, now_s: float) -> tuple[int, list[str]]:
        """(flags, reasons) for every input older than its timeout; empty when all are fresh."""
        flags, reasons = 0, []
        for name, timeout in self.timeouts_s.items():
            if timeout <= 0:
                continue
            age = self.age(name, now_s)
            if age > timeout:
                flags |= int(self.flags.get(name, 0))
                what = "never received" if age == float("inf") else f"{age:.3f} s old (limit {timeout:.3f} s)"
                reasons.append(f"stale {name}: {what}")
        return flags, reasons

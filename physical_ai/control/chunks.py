"""Action chunks as time-indexed references, and the checks every chunk passes before it can move anything."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from physical_ai.control.limits import map_by_name


@dataclasses.dataclass(frozen=True)
class Reference:
    """Targets over time: values[k] applies at times[k] (seconds on the controller's clock)."""

    times: np.ndarray   # (H,), strictly increasing
    values: np.ndarray  # (H, n)

    @property
    def start(self) -> float:
        """Time of the first step [s]."""
        return float(self.times[0])

    @property
    def end(self) -> float:
        """Time of the last step [s]."""
        return float(self.times[-1])

    def sample(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Value and slope of the piecewise-linear reference at time t (held flat outside [start, end]).

        Returns:
            (value (n,), slope (n,)) with zero slope outside the reference and for one-step references.
        """
        times, values = self.times, self.values
        if len(times) == 1 or t <= times[0]:
            return values[0].copy(), np.zeros(values.shape[1])
        if t >= times[-1]:
            return values[-1].copy(), np.zeros(values.shape[1])
        k = int(np.searchsorted(times, t, side="right")) - 1
        span = times[k + 1] - times[k]
        slope = (values[k + 1] - values[k]) / span
        return values[k] + slope * (t - times[k]), slope

    def merged(self, other: Reference) -> Reference:
        """This reference combined with `other` by stamp: at each time, the one that starts later rules.

        Chunks sent faster than the loop or reordered by latency jitter are merged, not dropped: the earlier-starting
        one keeps its steps before the later one starts (and the later one's steps run from its start on).
        """
        first, second = (self, other) if self.start <= other.start else (other, self)
        head = first.times < second.start
        tail = first.times > second.end
        return Reference(np.concatenate((first.times[head], second.times, first.times[tail])),
                         np.concatenate((first.values[head], second.values, first.values[tail])))

    def end_slope(self) -> np.ndarray:
        """Slope of the last segment (zero for a one-step reference)."""
        if len(self.times) < 2:
            return np.zeros(self.values.shape[1])
        return (self.values[-1] - self.values[-2]) / (self.times[-1] - self.times[-2])


@dataclasses.dataclass(frozen=True)
class ChunkPolicy:
    """What a chunk must satisfy to be accepted.

    Attributes:
        names: the values the controller needs, in its own order (e.g. joint names, "linear_x").
        lower: per-name lower bound; targets below are clamped (with a reason).
        upper: per-name upper bound.
        max_age_s: a chunk whose last step is older than this is rejected as stale.
        max_future_s: a chunk starting further ahead than this is rejected (clock mismatch).
        max_dt_s: largest accepted step spacing.
        max_horizon: largest accepted number of steps.
        optional: names that may be missing from a chunk (e.g. "gripper").
        plausible_margin: a target further than this outside [lower, upper] is not clamped but rejects the whole
            chunk as implausible (wrong units, mislabelled columns, garbage) [same unit as the bounds]; inf = off.
        max_rate: per-name largest plausible rate of change between a chunk's steps (e.g. a few times the velocity
            limit) [unit/s]; None = off.
        reorder_window_s: a chunk starting up to this long before the newest accepted one is merged by stamp
            (latency jitter); earlier ones are rejected as non-monotonic [s].
    """

    names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    max_age_s: float = 0.5
    max_future_s: float = 0.5
    max_dt_s: float = 1.0
    max_horizon: int = 1000
    optional: tuple[str, ...] = ()
    plausible_margin: float = float("inf")
    max_rate: np.ndarray | None = None
    reorder_window_s: float = 0.0


@dataclasses.dataclass
class ChunkCheck:
    """Outcome of checking one chunk: a reference (None when rejected) and the reasons for what was done."""

    reference: Reference | None
    reasons: list[str]
    clamped: bool = False
    present: np.ndarray | None = None


def check_chunk(policy: ChunkPolicy, names: Sequence[str], values: Sequence[float] | np.ndarray, start_s: float,
                dt: float, horizon: int, now_s: float, last_start_s: float | None) -> ChunkCheck:
    """Validate a chunk and turn it into a `Reference` in the policy's name order.

    Rejects: non-finite or non-positive dt, wrong value count, duplicate names, missing required names, NaN/inf
    values, stale or far-future stamps, a start time more than `reorder_window_s` earlier than the previous chunk's
    (non-monotonic), and implausible chunks (targets beyond `plausible_margin` outside the bounds, steps faster than
    `max_rate`; reasons start with "rejected: implausible"). Clamps: targets outside [lower, upper] within the
    margin. Unknown names are ignored with a reason.
    """
    names = list(names)
    flat = np.asarray(values, dtype=float).ravel()
    if not (np.isfinite(dt) and 0.0 < dt <= policy.max_dt_s):
        return ChunkCheck(None, [f"rejected: dt={dt} outside (0, {policy.max_dt_s}] s"])
    if not 1 <= horizon <= policy.max_horizon:
        return ChunkCheck(None, [f"rejected: horizon={horizon} outside [1, {policy.max_horizon}]"])
    if not names or flat.size != horizon * len(names):
        return ChunkCheck(None, [f"rejected: wrong length: {flat.size} values for {horizon} steps x "
                                 f"{len(names)} names"])
    if not np.isfinite(start_s):
        return ChunkCheck(None, ["rejected: non-finite start time"])
    times = start_s + dt * np.arange(horizon)
    return check_points(policy, names, flat.reshape(horizon, len(names)), times, now_s, last_start_s)


def check_points(policy: ChunkPolicy, names: Sequence[str], grid: np.ndarray, times: np.ndarray, now_s: float,
                 last_start_s: float | None) -> ChunkCheck:
    """Validate targets `grid` (H, len(names)) at `times` (H,) [s] (e.g. a JointTrajectory) like `check_chunk`."""
    reasons: list[str] = []
    names = list(names)
    grid = np.asarray(grid, dtype=float)
    times = np.asarray(times, dtype=float)
    if grid.ndim != 2 or grid.shape[1] != len(names) or times.shape != (grid.shape[0],) or grid.shape[0] == 0:
        return ChunkCheck(None, [f"rejected: wrong length: values {grid.shape} for {len(names)} names and "
                                 f"{times.shape} times"])
    if grid.shape[0] > policy.max_horizon:
        return ChunkCheck(None, [f"rejected: {grid.shape[0]} points > {policy.max_horizon}"])
    if not np.all(np.isfinite(times)) or np.any(np.diff(times) <= 0):
        return ChunkCheck(None, ["rejected: non-monotonic or non-finite point times"])
    start_s = float(times[0])
    end_s = float(times[-1])
    if len(set(names)) != len(names):
        return ChunkCheck(None, ["rejected: duplicate action names"])
    unknown = [n for n in names if n not in policy.names]
    if unknown:
        reasons.append(f"ignored unknown names {unknown}")
    mapped, present = map_by_name(names, grid, policy.names)
    missing = [n for n, p in zip(policy.names, present, strict=True) if not p and n not in policy.optional]
    if missing:
        return ChunkCheck(None, [*reasons, f"rejected: missing names {missing}"])
    if not np.all(np.isfinite(mapped[:, present])):
        return ChunkCheck(None, [*reasons, "rejected: NaN/inf in values"])
    if end_s < now_s - policy.max_age_s:
        return ChunkCheck(None, [*reasons, f"rejected: stale chunk (ends {now_s - end_s:.3f} s ago)"])
    if start_s > now_s + policy.max_future_s:
        return ChunkCheck(None, [*reasons, f"rejected: chunk starts {start_s - now_s:.3f} s in the future"])
    if last_start_s is not None and start_s < last_start_s - policy.reorder_window_s:
        return ChunkCheck(None, [*reasons, f"rejected: non-monotonic time (start {start_s - last_start_s:.3f} s "
                                           f"before the previous chunk, reorder window {policy.reorder_window_s} s)"])
    implausible = _implausible(policy, mapped, present, times)
    if implausible:
        return ChunkCheck(None, [*reasons, f"rejected: implausible: {implausible}"])
    lo = np.broadcast_to(policy.lower, mapped.shape)
    hi = np.broadcast_to(policy.upper, mapped.shape)
    clipped = np.clip(mapped, lo, hi)
    with np.errstate(invalid="ignore"):
        clamped = bool(np.any(clipped[:, present] != mapped[:, present]))
    if clamped:
        reasons.append("clamped out-of-limit targets")
    return ChunkCheck(Reference(times, clipped), reasons, clamped, present)


def _implausible(policy: ChunkPolicy, mapped: np.ndarray, present: np.ndarray, times: np.ndarray) -> str:
    """Why a chunk cannot be what its names say ('' when plausible): far out of range or far too fast."""
    cols = np.flatnonzero(present)
    vals = mapped[:, cols]
    beyond = np.maximum(vals - policy.upper[cols], policy.lower[cols] - vals).max(axis=0)
    far = np.flatnonzero(beyond > policy.plausible_margin)
    if far.size:
        i = cols[far[0]]
        return (f"{policy.names[i]} target {beyond[far[0]]:.3g} beyond [{policy.lower[i]:.3g}, "
                f"{policy.upper[i]:.3g}] (margin {policy.plausible_margin}): wrong units or columns?")
    if policy.max_rate is not None and len(times) > 1:
        rate = (np.abs(np.diff(vals, axis=0)) / np.diff(times)[:, None]).max(axis=0)
        fast = np.flatnonzero(rate > policy.max_rate[cols])
        if fast.size:
            i = cols[fast[0]]
            return (f"{policy.names[i]} steps at {rate[fast[0]]:.3g}/s, plausible at most {policy.max_rate[i]:.3g}/s")
    return ""

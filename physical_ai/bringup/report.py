"""The run report a person looks at after `make demo`: PNG plots and metrics.json.

`RunLog` is filled while the stack runs (by the demo monitor node); `write_report` turns it into
- map.png: top-down map with the static world, the robot's path, the people's paths and perceived obstacles;
- timeline.png: commanded and actual speed, clearance to the nearest person, and corrector interventions;
- latency.png: histograms of policy inference, perception end-to-end, correction cycle and reaction latency;
- metrics.json: every figure in the summary.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np


@dataclasses.dataclass
class RunLog:
    """Time series gathered during one run."""

    scenario: str
    robot: list[tuple[float, float, float, float]] = dataclasses.field(default_factory=list)  # t, x, y, yaw
    # Every series is on one time axis: sim time [s] (the simulator's clock; commands at the sim time they arrived).
    speed: list[tuple[float, float, float]] = dataclasses.field(default_factory=list)  # t, commanded, actual [m/s]
    people: dict[str, list[tuple[float, float, float]]] = dataclasses.field(default_factory=dict)  # t, x, y
    obstacles: list[tuple[float, float, float, int]] = dataclasses.field(default_factory=list)  # t, x, y, class
    clearance: list[tuple[float, float]] = dataclasses.field(default_factory=list)  # t, nearest person [m]
    interventions: list[tuple[float, int]] = dataclasses.field(default_factory=list)  # t, CorrectionStatus flags
    latencies_ms: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    goal: tuple[float, float] | None = None
    summary: dict[str, object] = dataclasses.field(default_factory=dict)

    def add_latency(self, key: str, ms: float) -> None:
        """Record one latency sample under a named stream."""
        if math.isfinite(ms):
            self.latencies_ms.setdefault(key, []).append(float(ms))


def latency_summary(samples: list[float]) -> dict[str, float]:
    """p50/p99/max/count of a latency stream (NaN when empty)."""
    if not samples:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan"), "count": 0}
    arr = np.asarray(samples, dtype=float)
    return {"p50": float(np.percentile(arr, 50)), "p99": float(np.percentile(arr, 99)), "max": float(arr.max()),
            "count": int(arr.size)}


def _static_world(ax, mjcf: Path | None) -> None:
    """Draw the world body's boxes and cylinders top-down, from the scenario's MJCF."""
    if mjcf is None or not mjcf.is_file():
        return
    import mujoco
    from matplotlib.patches import Circle, Polygon

    model = mujoco.MjModel.from_xml_path(str(mjcf))
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    for g in range(model.ngeom):
        if model.geom_bodyid[g] != 0:  # only static geometry (attached to the world body)
            continue
        kind = model.geom_type[g]
        centre = data.geom_xpos[g]
        if kind == mujoco.mjtGeom.mjGEOM_BOX and centre[2] + model.geom_size[g][2] > 0.05:
            half = model.geom_size[g][:2]
            rot = data.geom_xmat[g].reshape(3, 3)[:2, :2]
            corners = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]]) * half
            ax.add_patch(Polygon(corners @ rot.T + centre[:2], closed=True, color="0.6", zorder=1))
        elif kind == mujoco.mjtGeom.mjGEOM_CYLINDER:
            ax.add_patch(Circle(centre[:2], model.geom_size[g][0], color="0.6", zorder=1))


def write_report(log: RunLog, out_dir: Path, mjcf: Path | None = None) -> dict[str, object]:
    """Write the plots and metrics.json into `out_dir`; return the metrics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, object] = dict(log.summary)
    metrics["scenario"] = log.scenario
    metrics["latency_ms"] = {k: latency_summary(v) for k, v in sorted(log.latencies_ms.items())}
    if log.clearance:
        metrics["min_person_clearance_m"] = float(min(c for _, c in log.clearance))
    if log.robot:
        xy = np.array([(x, y) for _, x, y, _ in log.robot])
        metrics["path_length_m"] = float(np.linalg.norm(np.diff(xy, axis=0), axis=1).sum()) if len(xy) > 1 else 0.0

    # map
    fig, ax = plt.subplots(figsize=(8, 8))
    _static_world(ax, mjcf)
    if log.obstacles:
        obs = np.array([(x, y) for _, x, y, _ in log.obstacles])
        people = np.array([c == 1 for *_, c in log.obstacles])
        ax.scatter(obs[~people, 0], obs[~people, 1], s=2, c="tab:orange", alpha=0.3, label="perceived obstacles",
                   zorder=2)
        ax.scatter(obs[people, 0], obs[people, 1], s=3, c="tab:red", alpha=0.4, label="perceived people", zorder=2)
    for name, samples in sorted(log.people.items()):
        p = np.array([(x, y) for _, x, y in samples])
        ax.plot(p[:, 0], p[:, 1], "--", color="tab:purple", lw=1.5, label=f"{name} (ground truth)", zorder=3)
    if log.robot:
        r = np.array([(x, y) for _, x, y, _ in log.robot])
        ax.plot(r[:, 0], r[:, 1], color="tab:blue", lw=2.5, label="robot path", zorder=4)
        ax.plot(*r[0], "o", color="tab:blue", ms=8, zorder=5)
    if log.goal is not None:
        ax.plot(*log.goal, "*", color="tab:green", ms=16, label="goal", zorder=5)
    ax.set_aspect("equal")
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    ax.set_title(f"{log.scenario}: top-down map")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_dir / "map.png", dpi=110)
    plt.close(fig)

    # timeline
    fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    if log.speed:
        s = np.array(log.speed)
        axes[0].plot(s[:, 0], s[:, 1], label="commanded")
        axes[0].plot(s[:, 0], s[:, 2], label="actual")
    axes[0].set_ylabel("speed [m/s]")
    axes[0].legend(fontsize=8)
    if log.clearance:
        c = np.array(log.clearance)
        axes[1].plot(c[:, 0], c[:, 1], color="tab:red")
        if "configured_clearance_m" in log.summary:
            axes[1].axhline(float(log.summary["configured_clearance_m"]), ls="--", color="k",  # type: ignore[arg-type]
                            label="configured clearance")
            axes[1].legend(fontsize=8)
    axes[1].set_ylabel("nearest person [m]")
    if log.interventions:
        iv = np.array(log.interventions)
        axes[2].step(iv[:, 0], (iv[:, 1] > 0).astype(float), where="post")
    axes[2].set_ylabel("corrector active")
    axes[2].set_xlabel("sim time [s]")
    for a in axes:
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_dir / "timeline.png", dpi=110)
    plt.close(fig)

    # latency histograms
    streams = [(k, v) for k, v in sorted(log.latencies_ms.items()) if v]
    fig, axes = plt.subplots(1, max(1, len(streams)), figsize=(4 * max(1, len(streams)), 3.5), squeeze=False)
    for ax, (key, values) in zip(axes[0], streams, strict=False):
        ax.hist(values, bins=40, color="tab:blue")
        ax.axvline(float(np.percentile(values, 99)), color="tab:red", ls="--", label="p99")
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("ms")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "latency.png", dpi=110)
    plt.close(fig)

    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    return metrics

"""The cleansing report of a dataset build: `meta/cleanse_report.json` and `meta/cleanse_report.png`.

The JSON holds the summary (episodes, frames, recorded seconds, throughput), every drop reason with its count
(frames, pieces of episodes, episodes, recordings), and per recording: its drops, notes (salvaged, unindexed, fewer
messages than indexed) or its error. The PNG shows the same drops as bars, one per reason, and frames kept vs
dropped per recording, for a person to read.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any


def write_report(root: Path, summary: dict[str, Any], results: list[Any], drops: dict[str, int]) -> None:
    """Write the JSON report and its PNG under `root/meta/`."""
    per_recording = []
    for r in results:
        kept = sum(len(e["frames"]["action"]) for e in r.episodes)
        per_recording.append({"recording": r.path, "ok": r.ok, "error": r.error, "drops": r.drops,
                              "episode_splits": r.splits,
                              "frames_considered": r.frames_in, "frames_kept": kept, "episodes": len(r.episodes),
                              "notes": r.notes, "people_masks": r.people})
    report = {"summary": summary, "drops": dict(sorted(drops.items())), "recordings": per_recording}
    (root / "meta" / "cleanse_report.json").write_text(json.dumps(report, indent=1) + "\n")
    _plot(root / "meta" / "cleanse_report.png", report)


def _plot(path: Path, report: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drops = Counter(report["drops"])
    recordings = report["recordings"]
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 0.4 * max(len(drops), len(recordings), 4) + 1.5))
    reasons = sorted(drops, key=drops.get) or ["(none)"]
    ax0.barh(reasons, [drops.get(r, 0) for r in reasons], color="tab:red")
    ax0.set_title("dropped, by reason")
    ax0.set_xlabel("count: frames; episodes for message_loss, too_short, task_failed; files for recording_unreadable")
    for y, r in enumerate(reasons):
        ax0.text(drops.get(r, 0), y, f" {drops.get(r, 0)}", va="center", fontsize=8)
    names = [Path(r["recording"]).name[-28:] for r in recordings]
    kept = [r["frames_kept"] for r in recordings]
    lost = [max(r["frames_considered"] - r["frames_kept"], 0) for r in recordings]
    ax1.barh(names, kept, color="tab:green", label="frames kept")
    ax1.barh(names, lost, left=kept, color="tab:orange", label="frames dropped")
    for y, r in enumerate(recordings):
        if not r["ok"]:
            ax1.text(0, y, "  unreadable: skipped", va="center", fontsize=8, color="tab:red")
    ax1.set_title("per recording")
    ax1.legend(loc="lower right", fontsize=8)
    s = report["summary"]
    fig.suptitle(f"{s['episodes']} episodes, {s['frames']} frames kept of {s['frames_considered']} "
                 f"({s['recorded_s']} s recorded, {len(s['failed'])} recordings skipped)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)

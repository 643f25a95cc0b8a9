"""Provenance manifests: where a dataset came from and what was done to it (`meta/provenance.json`).

A manifest lists every source file with its sha256 and size, the tool (name, version, git commit and whether the
checkout had uncommitted changes), the command and its parameters, each transformation in order with its
parameters, every dropped item counted by reason, the licence, and the sha256 of each file of the dataset it
describes. A policy trained from the dataset cites the manifest by its own sha256 (`cite`), so a model card can say
exactly which data, from which recordings, processed how, it was trained on.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import physical_ai

MANIFEST_PATH = "meta/provenance.json"
SCHEMA = "physai.provenance/1"


def sha256_file(path: str | Path, block: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def tool_identity() -> dict[str, Any]:
    """The stack's name, version and git commit (with a dirty flag); 'unknown' outside a git checkout."""
    repo = Path(physical_ai.__file__).resolve().parents[1]
    commit, dirty = "unknown", None
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=True).stdout
        dirty = bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return {"name": "physical_ai_stack", "version": physical_ai.__version__, "git_commit": commit,
            "git_dirty": dirty, "python": sys.version.split()[0]}


@dataclass
class Manifest:
    """A dataset's provenance, filled in while it is built and written beside it."""

    command: str
    parameters: dict[str, Any]
    licence: str
    sources: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    drops: dict[str, int] = field(default_factory=dict)
    dropped_items: list[dict[str, Any]] = field(default_factory=list)
    created: str = ""

    @classmethod
    def start(cls, command: str, parameters: dict[str, Any], licence: str = "") -> Manifest:
        """A new manifest for `command` run with `parameters`."""
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        return cls(command=command, parameters=dict(parameters), licence=licence, created=now)

    def add_source(self, path: str | Path, **facts: Any) -> None:
        """Record one source file (sha256, size) with any facts about it (messages, duration, ...)."""
        p = Path(path)
        self.sources.append({"path": str(p), "sha256": sha256_file(p), "bytes": p.stat().st_size, **facts})

    def add_step(self, name: str, parameters: dict[str, Any]) -> None:
        """Record one transformation, in the order they were applied."""
        self.steps.append({"name": name, "parameters": parameters})

    def add_drops(self, counts: dict[str, int], items: list[dict[str, Any]] | None = None) -> None:
        """Add dropped-item counts by reason (and, optionally, what each dropped item was)."""
        for reason, n in counts.items():
            self.drops[reason] = self.drops.get(reason, 0) + int(n)
        self.dropped_items.extend(items or [])

    def to_json(self, root: Path | None = None, **outputs: Any) -> dict[str, Any]:
        """The manifest as written; with `root`, the sha256 of every file of the dataset under it."""
        files = {}
        if root is not None:
            for path in sorted(root.rglob("*")):
                if path.is_file() and path.relative_to(root).as_posix() != MANIFEST_PATH:
                    files[path.relative_to(root).as_posix()] = sha256_file(path)
        return {"schema": SCHEMA, "created": self.created, "tool": tool_identity(), "command": self.command,
                "parameters": self.parameters, "licence": self.licence or "unspecified",
                "sources": self.sources, "steps": self.steps,
                "drops": {"total": sum(self.drops.values()), "by_reason": dict(sorted(self.drops.items())),
                          "items": self.dropped_items},
                "outputs": {**outputs, "files": files}}

    def write(self, root: str | Path, **outputs: Any) -> Path:
        """Write `meta/provenance.json` under the dataset `root` (after every other file is final)."""
        root = Path(root)
        path = root / MANIFEST_PATH
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(root, **outputs), indent=1) + "\n")
        tmp.replace(path)
        return path


def cite(dataset_root: str | Path) -> dict[str, Any]:
    """How a trained policy cites a dataset: its path, the manifest's sha256, licence, sources and commit.

    A dataset without a manifest (collected before manifests existed) is cited by path with `manifest: null`.
    """
    root = Path(dataset_root)
    path = root / MANIFEST_PATH
    if not path.is_file():
        return {"dataset": str(root), "manifest": None}
    manifest = json.loads(path.read_text())
    return {"dataset": str(root), "manifest": MANIFEST_PATH, "manifest_sha256": sha256_file(path),
            "licence": manifest.get("licence"), "sources": len(manifest.get("sources", [])),
            "tool_commit": manifest.get("tool", {}).get("git_commit"),
            "drops": manifest.get("drops", {}).get("total", 0)}


CARD_BEGIN = "<!-- training-data: written by physai train -->"
CARD_END = "<!-- /training-data -->"


def update_model_card(checkpoint: str | Path, citations: list[dict[str, Any]]) -> Path:
    """Write (or replace) the 'Training data' section of `<checkpoint>/MODEL_CARD.md` citing each dataset.

    The rest of a hand-written card is kept; a checkpoint without a card gets one with just this section.
    """
    path = Path(checkpoint) / "MODEL_CARD.md"
    lines = [CARD_BEGIN, "## Training data", ""]
    for c in citations:
        if c.get("manifest"):
            lines.append(f"- `{c['dataset']}`: provenance manifest `{c['manifest']}` (sha256 "
                         f"`{c['manifest_sha256']}`), licence {c['licence']}, {c['sources']} source files, built at "
                         f"commit `{c['tool_commit']}`, {c['drops']} items dropped (reasons in the manifest)")
        else:
            lines.append(f"- `{c['dataset']}`: no provenance manifest (a dataset from before manifests existed)")
    section = "\n".join([*lines, CARD_END]) + "\n"
    text = path.read_text() if path.is_file() else f"# {Path(checkpoint).name}\n\n"
    if CARD_BEGIN in text and CARD_END in text:
        head, rest = text.split(CARD_BEGIN, 1)
        text = head + section + rest.split(CARD_END, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)
    return path

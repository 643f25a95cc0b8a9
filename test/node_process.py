"""One node module as its own process, started and stopped as a launcher does (tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from testdata import ROOT

STOP_TIMEOUT_S = 15.0  # a node's clean-up (the corrector's safe command, the recorder's file end) on a loaded machine


def start_node(module: str, *params: str, params_file: Path | None = None) -> subprocess.Popen[str]:
    """Start `physical_ai_nodes.<module>` with `-p name:=value` params (and a params file), output captured."""
    args = [sys.executable, "-m", f"physical_ai_nodes.{module}", "--ros-args"]
    if params_file is not None:
        args += ["--params-file", str(params_file)]
    for p in params:
        args += ["-p", p]
    return subprocess.Popen(args, cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def stop_node(proc: subprocess.Popen[str]) -> str:
    """SIGINT (if still running), wait up to STOP_TIMEOUT_S, then SIGKILL; returns everything the node printed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""

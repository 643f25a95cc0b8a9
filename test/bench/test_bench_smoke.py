"""Every benchmark runs once in its short smoke mode, so that a broken benchmark fails `make test`.

The figures are not asserted (they mean nothing at these sizes); a benchmark must exit 0 and print BENCH lines.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHES = sorted(p.name for p in (ROOT / "bench").glob("*_bench.py"))


def test_every_benchmark_is_collected():
    assert len(BENCHES) >= 10, BENCHES


@pytest.mark.parametrize("name", BENCHES)
def test_benchmark_smoke(name: str):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run_all.py"), "--smoke", name], cwd=ROOT,
                          env=dict(os.environ), capture_output=True, text=True, timeout=240)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert any(line.startswith("BENCH ") for line in proc.stdout.splitlines()), out[-4000:]

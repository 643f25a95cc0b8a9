"""Runs every benchmark in bench/ (files named *_bench.py), each in its own process, and collects BENCH lines.

Each benchmark prints `BENCH <name> <value> <unit>` lines, its figures beside a baseline measured in the same run.
Usage: python bench/run_all.py [--smoke] [substring ...]  (only benchmarks whose file name contains a substring)
`--smoke` runs each benchmark once in its short mode (every measurement briefly, the figures mean nothing): what
`make test` does (test/bench/test_bench_smoke.py) so that a broken benchmark fails the tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def bench_files(filters: list[str]) -> list[Path]:
    """The benchmark files whose name contains one of `filters` (all of them without filters)."""
    files = sorted(HERE.glob("*_bench.py"))
    return [f for f in files if not filters or any(s in f.name for s in filters)]


def main(argv: list[str]) -> int:
    """Run the selected benchmarks; exit non-zero if any failed."""
    smoke = "--smoke" in argv
    files = bench_files([a for a in argv if a != "--smoke"])
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    failed = []
    lines = []
    print(f"== load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs", flush=True)
    for f in files:
        print(f"== {f.name}", flush=True)
        start = time.monotonic()
        proc = subprocess.Popen([sys.executable, str(f), *(["--smoke"] if smoke else [])], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=env, cwd=HERE.parent)
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="", flush=True)
            if line.startswith("BENCH "):
                lines.append(line.rstrip())
        if proc.wait() != 0:
            failed.append(f.name)
        print(f"== {f.name} done in {time.monotonic() - start:.1f} s (exit {proc.returncode})", flush=True)
    print("\n== summary")
    for line in lines:
        print(line)
    print(f"== load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if failed:
        print(f"failed: {' '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

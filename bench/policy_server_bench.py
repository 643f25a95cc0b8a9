"""One policy server for many robots: request latency as the fleet grows, batching, and robots' loops not stalled.

BENCH policy.server.p99_ms.robots_<n>      n = 1, 2, 4, 8 robots, each a process of its own asking one server
                                           (`physical_ai.policy.policy_server`, models/amr_nav, torch, one thread,
                                           batching up to 8) for a chunk every 0.5 s as policy_inference does
                                           (request_threshold_s of a 1 s chunk), phases random: round trip, p99
                                           over every request of every robot
BENCH policy.server.p99_ms.robots_8.unbatched  baseline in the same run: the same 8 robots, server without batching
BENCH policy.server.direct_p99_ms          baseline in the same run: the model called in-process (no server)
BENCH policy.server.throughput_rps.robots_8[.unbatched]  8 robots asking back to back (saturated server): replies
                                           per second with and without batching
BENCH policy.server.control_stall_ms.robots_8  each robot process also runs a 100 Hz loop (as the corrector's is,
                                           which never calls the policy): its worst lateness while its requests
                                           wait on the server, worst over the robots
Scaling past one machine: README, "One policy server for a fleet".
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHECKPOINT = ROOT / "models" / "amr_nav"
PERIOD_S = 0.5
SMOKE = "--smoke" in sys.argv[1:]  # make test: every measurement once, 2 s each; the figures mean nothing
DURATION_S = 2.0 if SMOKE else float(os.environ.get("PHYSAI_BENCH_SERVER_S", "20"))

# One robot: connect, then ask every PERIOD_S (or back to back), with a 100 Hz loop thread beside; print JSON.
ROBOT = r"""
import json, sys, threading, time
import numpy as np
from physical_ai.policy.policy import make_policy
uri, robot, duration, period, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
policy = make_policy("openpi", sys.argv[6], uri=uri, timeout_s=5.0, connect_timeout_s=10.0, robot_id=robot)
rng = np.random.default_rng(seed)
obs = {"state": rng.normal(size=3), "obstacles": rng.normal(size=(8, 7)),
       "instruction": "drive to the drop-off station"}
policy.infer(obs)  # connected and warm
lateness = []
stop = threading.Event()
def loop():  # a 100 Hz control loop in the same process: it must not wait for the policy
    period_ns, nxt = 10_000_000, time.monotonic_ns()
    while not stop.is_set():
        nxt += period_ns
        time.sleep(max(0.0, (nxt - time.monotonic_ns()) * 1e-9))
        lateness.append((time.monotonic_ns() - nxt) * 1e-6)
threading.Thread(target=loop, daemon=True).start()
time.sleep(rng.uniform(0, period) if period > 0 else 0)
latencies, end = [], time.monotonic() + duration
while time.monotonic() < end:
    t0 = time.monotonic()
    policy.infer(obs)
    latencies.append((time.monotonic() - t0) * 1e3)
    if period > 0:
        time.sleep(max(0.0, period - (time.monotonic() - t0)))
stop.set()
print(json.dumps({"latencies_ms": latencies, "max_lateness_ms": max(lateness[50:] or [0.0])}))
policy.close()
"""


def bench(name: str, value: float, unit: str) -> None:
    """Print one BENCH line."""
    print(f"BENCH {name} {value:.4g} {unit}", flush=True)


def start_server(max_batch: int, log: Path) -> tuple[subprocess.Popen, str]:
    """A policy server process on a free port; returns it and its URI once it listens."""
    with socket.socket() as probe:  # a port free now (the server binds it a moment later)
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    proc = subprocess.Popen([sys.executable, "-m", "physical_ai.policy.policy_server", str(CHECKPOINT), "--port",
                             str(port), "--max-batch", str(max_batch)], stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 60
    while "serving" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"policy server did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    return proc, f"ws://127.0.0.1:{port}"


def run_robots(uri: str, n: int, period_s: float) -> tuple[list[float], float]:
    """Run `n` robot processes against one server; (every round trip [ms], worst control-loop lateness [ms])."""
    procs = [subprocess.Popen([sys.executable, "-c", ROBOT, uri, f"robot{i + 1}", str(DURATION_S), str(period_s),
                               str(i), str(CHECKPOINT)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1")) for i in range(n)]
    latencies: list[float] = []
    lateness = 0.0
    for proc in procs:
        out, err = proc.communicate(timeout=DURATION_S + 120)
        if proc.returncode != 0:
            raise RuntimeError(f"robot process failed: {err[-2000:]}")
        result = json.loads(out.strip().splitlines()[-1])
        latencies += result["latencies_ms"]
        lateness = max(lateness, result["max_lateness_ms"])
    return latencies, lateness


def direct_p99() -> float:
    """The model in-process, batch 1, one thread: the floor under any server latency."""
    import torch

    from physical_ai.policy.policy import make_policy

    torch.set_num_threads(1)
    policy = make_policy("torch", CHECKPOINT, num_threads=1)
    rng = np.random.default_rng(0)
    obs = {"state": rng.normal(size=3), "obstacles": rng.normal(size=(8, 7)),
           "instruction": "drive to the drop-off station"}
    times = []
    for i in range(330):
        t0 = time.perf_counter()
        policy.infer(obs)
        if i >= 30:
            times.append((time.perf_counter() - t0) * 1e3)
    return float(np.percentile(times, 99))


def main() -> int:
    """Run the measurements and print BENCH lines."""
    print(f"load average before: {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores; {DURATION_S:.0f} s per run; "
          f"each robot asks every {PERIOD_S} s", flush=True)
    bench("policy.server.direct_p99_ms", direct_p99(), "ms")
    log = Path(tempfile.mkdtemp(prefix="policy_server_bench_")) / "server.log"
    for max_batch, suffix in ((8, ""), (1, ".unbatched")):
        server, uri = start_server(max_batch, log)
        try:
            for n in (1, 2, 4, 8) if max_batch > 1 else (8,):
                latencies, lateness = run_robots(uri, n, PERIOD_S)
                print(f"{n} robot(s){suffix or ', batching up to 8'}: {len(latencies)} requests, p50 "
                      f"{np.percentile(latencies, 50):.2f} ms, max {max(latencies):.2f} ms", flush=True)
                bench(f"policy.server.p99_ms.robots_{n}{suffix}", float(np.percentile(latencies, 99)), "ms")
                if n == 8:
                    bench(f"policy.server.control_stall_ms.robots_8{suffix}", lateness, "ms")
            latencies, _ = run_robots(uri, 8, 0.0)
            bench(f"policy.server.throughput_rps.robots_8{suffix}", len(latencies) / DURATION_S, "req/s")
        finally:
            server.terminate()
            server.wait(timeout=10)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fuzz bench (issue 22): drawn messages on every input topic of every node, through real DDS.

Runs test/reliability/fuzzlib's FuzzStack (perception, policy and corrector on the AMR configuration, plus an arm
corrector, each in its own process) and publishes `--examples` hypothesis-drawn messages per input topic. Prints
the messages tried, node exits and restarts (must be 0), and unsafe commands (non-finite or beyond limits; must be
0) beside the number of commands checked in the same run, so a silent corrector cannot pass for a safe one.

Usage: python bench/reliability_bench.py [--examples 100] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(ROOT / "config" / "fastdds.xml"))
sys.path.insert(0, str(ROOT / "test"))  # fuzzlib's helpers (spin_thread)
sys.path.insert(0, str(ROOT / "test" / "reliability"))

from fuzzlib import INPUTS, FuzzStack, message_strategy  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402


def fuzz_topic(stack: FuzzStack, topic: str, kind: type, examples: int) -> None:
    """Publish `examples` drawn messages of `kind` on `topic`."""
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(msg=message_strategy(kind))
    def fuzz(msg):
        stack.publish(topic, msg)

    fuzz()


def main() -> None:
    """Fuzz every input, then print the BENCH lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100, help="messages drawn per input topic")
    parser.add_argument("--smoke", action="store_true", help="2 messages per topic (figures mean nothing)")
    args = parser.parse_args()
    if args.smoke:
        args.examples = 2
    with tempfile.TemporaryDirectory() as logs:
        stack = FuzzStack(Path(logs))
        try:
            stack.wait_ready()
            start = time.monotonic()
            for topic, kind in INPUTS:
                fuzz_topic(stack, topic, kind, args.examples)
            time.sleep(2.0)  # a late exit from the last messages shows here
            exits = stack.node_exits()
            elapsed = time.monotonic() - start
        finally:
            stack.close()
    for line in exits + stack.unsafe[:10]:
        print(line)
    print(f"{len(INPUTS)} input topics, {elapsed:.0f} s, load {os.getloadavg()[0]:.1f}")
    print(f"BENCH reliability.fuzz.cases {stack.sent} messages", flush=True)
    print(f"BENCH reliability.fuzz.node_exits {len(exits)} exits", flush=True)
    print(f"BENCH reliability.fuzz.unsafe_commands {len(stack.unsafe)} commands", flush=True)
    print(f"BENCH reliability.fuzz.commands_checked {sum(stack.commands.values())} commands", flush=True)
    sys.exit(1 if exits or stack.unsafe else 0)


if __name__ == "__main__":
    main()

"""Official JavaScript packages as test clients (Foxglove's ws-protocol client, the MCAP reader Foxglove uses).

Installed once with npm into build/npm (git-ignored); tests that need them skip, naming the reason, where node or
the npm registry is not available.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PREFIX = ROOT / "build" / "npm"
PACKAGES = {"@foxglove/ws-protocol": "0.8.0", "ws": "8.23.0", "@mcap/core": "2.2.2", "fzstd": "0.1.1"}


def node_modules() -> Path:
    """build/npm/node_modules with PACKAGES installed (npm install on first use); skips the test if impossible."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm not installed (apt-get install nodejs npm)")
    stamp = PREFIX / "physai-packages.json"
    if not stamp.is_file() or json.loads(stamp.read_text()) != PACKAGES:
        PREFIX.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(PREFIX),
                               *(f"{name}@{version}" for name, version in PACKAGES.items())],
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            pytest.skip(f"npm install failed (registry unreachable?): {done.stderr.strip()[-300:]}")
        stamp.write_text(json.dumps(PACKAGES))
    return PREFIX / "node_modules"


def run_node_script(script: str, *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run a CommonJS script with the installed packages resolvable."""
    modules = node_modules()
    return subprocess.run(["node", "-e", script, "--", *args], capture_output=True, text=True, timeout=timeout_s,
                          env={"NODE_PATH": str(modules), "PATH": "/usr/bin:/bin"}, cwd=PREFIX)


MCAP_CHECK = r"""
const fs = require("fs");
const { McapIndexedReader } = require("@mcap/core");
const fzstd = require("fzstd");
const path = process.argv[process.argv.length - 1];
const fd = fs.openSync(path, "r");
const readable = {
  size: async () => BigInt(fs.fstatSync(fd).size),
  read: async (offset, length) => {
    const buf = Buffer.alloc(Number(length));
    fs.readSync(fd, buf, 0, Number(length), Number(offset));
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  },
};
(async () => {
  try {
    const reader = await McapIndexedReader.Initialize({
      readable, decompressHandlers: { zstd: (data, size) => fzstd.decompress(data, new Uint8Array(Number(size))) },
    });
    const counts = {};
    let total = 0;
    for await (const message of reader.readMessages()) {
      const topic = reader.channelsById.get(message.channelId).topic;
      counts[topic] = (counts[topic] || 0) + 1;
      total += 1;
    }
    const expected = {};
    for (const [id, n] of reader.statistics.channelMessageCounts) {
      expected[reader.channelsById.get(id).topic] = Number(n);
    }
    const statistics = Number(reader.statistics.messageCount);
    console.log(JSON.stringify({ ok: true, total, statistics, counts, expected }));
  } catch (err) {
    console.log(JSON.stringify({ ok: false, error: String(err && err.message || err) }));
    process.exit(1);
  }
})();
"""


def mcap_core_read(path: Path) -> dict:
    """Read `path` with @mcap/core's indexed reader (the one Foxglove uses): counts per topic and the statistics."""
    done = run_node_script(MCAP_CHECK, str(path), timeout_s=300)
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise AssertionError(f"@mcap/core reader printed nothing: {done.stderr[-2000:]}")
    return json.loads(lines[-1])

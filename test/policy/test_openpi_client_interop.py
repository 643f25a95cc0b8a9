"""Our openpi protocol side against the real upstream packages: `openpi-client` and openpi's `WebsocketPolicyServer`.

- `physai serve` answers the stock `openpi-client` as a robot running openpi's LIBERO example would use it;
- our `openpi` backend with the `droid` key preset drives openpi's server (the `openpi-server` package: the
  upstream WebsocketPolicyServer) in front of a policy that reads the DROID example's keys, as stock pi0 / pi0.5
  DROID configs do.

openpi-client pins numpy < 2, so both live in an environment of their own: build/openpi-client-env, created with
pip on first use (~16 s, ~130 MB; `python3 -m venv build/openpi-client-env && build/openpi-client-env/bin/pip
install openpi-client==0.1.2 openpi-server==0.1.0 typing-extensions`). Without the package registry the tests
skip, saying so.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from policy_testlib import make_checkpoint

from physical_ai.policy.policy import make_policy

ROOT = Path(__file__).resolve().parents[2]
ENV = ROOT / "build" / "openpi-client-env"
# typing-extensions: openpi_client imports it without declaring it (openpi-client 0.1.2)
PINS = ("openpi-client==0.1.2", "openpi-server==0.1.0", "numpy==1.26.4", "msgpack==1.2.4", "websockets==17.4",
        "typing-extensions==4.16.0")

# A LIBERO-style robot loop step with the stock client: two cameras, the state, a prompt.
CLIENT = r"""
import json, sys
import numpy as np
from openpi_client import image_tools, websocket_client_policy
port = int(sys.argv[1])
rng = np.random.default_rng(0)
image = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
wrist = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
state = rng.normal(size=15).astype(np.float32)
obstacles = rng.normal(size=(3, 7)).astype(np.float32)
parts = rng.normal(size=(2, 7)).astype(np.float32)
policy = websocket_client_policy.WebsocketClientPolicy(host="127.0.0.1", port=port)
meta = policy.get_server_metadata()
obs = {"observation/image": image_tools.convert_to_uint8(image), "observation/wrist_image": wrist,
       "observation/state": state, "observation/obstacles": obstacles, "observation/parts": parts,
       "prompt": "pick the cube and place it in the bin"}
reply = policy.infer(obs)
np.savez(sys.argv[2], image=image, state=state, obstacles=obstacles, parts=parts, actions=reply["actions"])
try:
    policy.infer({"observation/image": image})  # missing keys: the server says which, and closes
    error = ""
except Exception as exc:
    error = str(exc)
print(json.dumps({"meta": meta, "timing": sorted(reply.get("server_timing", {})), "error": error,
                  "numpy": np.__version__}))
"""


@pytest.fixture(scope="module")
def openpi_client_python() -> Path:
    python = ENV / "bin" / "python"
    probe = "import openpi_client.websocket_client_policy, openpi_server.websocket_policy_server"
    if not (python.is_file() and subprocess.run([str(python), "-c", probe]).returncode == 0):
        if subprocess.run([sys.executable, "-m", "venv", "--clear", str(ENV)]).returncode != 0:
            pytest.skip(f"cannot create a venv at {ENV}")
        done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *PINS],
                              capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            pytest.skip(f"cannot create {ENV} ({' '.join(PINS)}): {done.stderr.strip()[-300:]}")
    return python


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_openpi_client_against_physai_serve_with_libero_keys(openpi_client_python, tmp_path):
    ckpt = tmp_path / "arm"
    make_checkpoint(ckpt, "arm")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "physical_ai.cli", "serve", str(ckpt), "--port", str(port), "--keys", "libero",
         "--key-map", "observation/obstacles=obstacles", "--key-map", "observation/parts=parts"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 60
        healthy = False
        while time.monotonic() < deadline and server.poll() is None and not healthy:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as reply:
                    healthy = reply.status == 200
            except OSError:
                time.sleep(0.2)
        assert healthy, "physai serve never answered /healthz"
        done = subprocess.run([str(openpi_client_python), "-c", CLIENT, str(port), str(tmp_path / "io.npz")],
                              capture_output=True, text=True, timeout=120, env={"PATH": os.environ["PATH"]})
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        server.send_signal(signal.SIGTERM)  # physai serve stops on SIGTERM as on Ctrl-C
        out = server.communicate(timeout=20)[0]
    assert server.returncode == 0, out
    assert "ignored ['observation/wrist_image']" in out  # the one-camera model does not read it: said, not hidden
    assert result["numpy"].startswith("1.")  # really the openpi-client environment
    meta = result["meta"]
    assert meta["action_names"][:2] == ["joint1", "joint2"] and meta["ignored_keys"] == ["observation/wrist_image"]
    assert meta["keys"]["observation/state"] == "state" and result["timing"] == ["infer_ms"]
    assert "request lacks" in result["error"] and "observation/state" in result["error"]
    # The same observation through our own policy gives the same actions.
    io = np.load(tmp_path / "io.npz")
    local = make_policy("torch", ckpt)
    expected = local.infer({"image": io["image"], "state": io["state"].astype(np.float64),
                            "obstacles": io["obstacles"], "parts": io["parts"],
                            "instruction": "pick the cube and place it in the bin"}).values
    np.testing.assert_allclose(io["actions"], expected, atol=1e-5)


# openpi's server in front of a policy that reads the DROID example's keys (KeyError otherwise, as pi0 DROID).
UPSTREAM_SERVER = r"""
import sys
import numpy as np
from openpi_client import base_policy
from openpi_server.websocket_policy_server import WebsocketPolicyServer

class DroidKeys(base_policy.BasePolicy):
    def infer(self, obs):
        base, wrist = obs["observation/exterior_image_1_left"], obs["observation/wrist_image_left"]
        joints, gripper = obs["observation/joint_position"], obs["observation/gripper_position"]
        assert base.dtype == np.uint8 and base.shape == (224, 224, 3) and wrist.shape == (224, 224, 3)
        assert joints.shape == (7,) and gripper.shape == (1,)
        row = np.concatenate([joints, gripper]) + base.mean() / 255 - wrist.mean() / 255 + len(obs["prompt"])
        return {"actions": (np.tile(row, (10, 1)) + np.arange(10)[:, None]).astype(np.float32)}

WebsocketPolicyServer(DroidKeys(), host="127.0.0.1", port=int(sys.argv[1]),
                      metadata={"policy": "droid-keys"}).serve_forever()
"""


def test_openpi_backend_drives_upstream_server_with_droid_keys(openpi_client_python, tmp_path):
    from physical_ai.policy.openpi_client import PolicyServerError

    joints = [f"joint{i}" for i in range(1, 8)] + ["gripper"]
    spec = {"format_version": 1, "name": "droid_remote", "embodiment": "arm", "dt": 0.066, "chunk_length": 10,
            "architecture": {"type": "remote"},
            "observation": {"image": {"shape": [3, 224, 224]}, "wrist_image": {"shape": [3, 224, 224]},
                            "state": {"names": [f"{j}.position" for j in joints], "units": ["rad"] * 7 + ["m"],
                                      "mean": [0.0] * 8, "std": [1.0] * 8},
                            "instruction": {}},
            "action": {"names": joints, "units": ["rad/s"] * 7 + ["m"], "mean": [0.0] * 8, "std": [1.0] * 8}}
    (tmp_path / "config.json").write_text(json.dumps(spec))
    port = _free_port()
    server = subprocess.Popen([str(openpi_client_python), "-c", UPSTREAM_SERVER, str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={"PATH": os.environ["PATH"]})
    rng = np.random.default_rng(1)
    obs = {"image": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
           "wrist_image": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
           "state": rng.normal(size=8), "instruction": "put the marker in the cup"}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        droid = make_policy("openpi", tmp_path, uri=f"ws://127.0.0.1:{port}", key_preset="droid", timeout_s=10.0)
        got = droid.infer(obs).values
        assert droid.client.metadata == {"policy": "droid-keys"}
        droid.close()
        # Our old fixed keys ("observation/<group>", "prompt") are what stock DROID servers refuse.
        plain = make_policy("openpi", tmp_path, uri=f"ws://127.0.0.1:{port}", timeout_s=10.0)
        with pytest.raises(PolicyServerError, match="KeyError"):
            plain.infer(obs)
        plain.close()
    finally:
        server.kill()
        server.communicate(timeout=10)
    row = (obs["state"].astype(np.float32) + obs["image"].mean() / 255 - obs["wrist_image"].mean() / 255
           + len(obs["instruction"]))
    np.testing.assert_allclose(got, np.tile(row, (10, 1)) + np.arange(10)[:, None], atol=1e-5)

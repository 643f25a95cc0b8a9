"""Rendering works on a machine without a display and without MUJOCO_GL set (as `physai collect` runs on a server)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The arm env renders the overhead depth camera in observe(); `physai collect arm` goes through the same call.
PROBE = ("from physical_ai.training.envs import make_env\n"
         "env = make_env('arm'); env.reset(0); obs = env.observe()\n"
         "import os; print(os.environ['MUJOCO_GL'], sorted(obs))")


def test_arm_env_renders_headless_without_environment_variables():
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "DISPLAY", "PYOPENGL_PLATFORM")}
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[0] == "egl" and "parts" in done.stdout

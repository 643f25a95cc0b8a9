"""Training pipeline: demonstration collection, imitation learning, closed-loop evaluation."""

import os

# Collection renders camera images with MuJoCo: headless by default (EGL), before any submodule imports mujoco.
os.environ.setdefault("MUJOCO_GL", "egl")

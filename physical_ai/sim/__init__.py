"""MuJoCo simulation that plays the robot drivers: scenarios, sensors, command interfaces, experts."""

import os

# Headless rendering: EGL works without a display (set before any module imports mujoco). A user's own choice
# (osmesa, glfw) is kept.
os.environ.setdefault("MUJOCO_GL", "egl")

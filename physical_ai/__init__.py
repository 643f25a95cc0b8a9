"""physical_ai: the ROS-free core of physical_ai_stack (perception, policy, world model, control, simulation).

Nothing in this package imports rclpy; the ROS 2 wiring lives in `physical_ai_nodes` (the `nodes/` folder).
"""

import os

# Headless rendering: MuJoCo picks its GL backend when it is imported, so this is set before any module of the
# package can import it (EGL needs no display; `physai collect` on a server crashed without it). A user's own
# choice (osmesa, glfw) is kept.
os.environ.setdefault("MUJOCO_GL", "egl")

__version__ = "0.1.0"

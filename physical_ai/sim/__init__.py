"""MuJoCo simulation that plays the robot drivers: scenarios, sensors, command interfaces, experts."""
# MUJOCO_GL (headless EGL) is set in physical_ai/__init__.py, before anything imports mujoco.

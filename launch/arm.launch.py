"""Bring up the arm stack: `ros2 launch physical_ai_stack arm.launch.py sim:=mujoco|gazebo|none`.

Arguments: sim, use_sim_time, namespace, params_file, policy, record (see `ros2 launch ... --show-args`).
"""

from physical_ai.bringup.launch_description import generate


def generate_launch_description():  # noqa: D103 - the launch file entry point
    return generate("arm")

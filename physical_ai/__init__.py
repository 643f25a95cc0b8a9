"""physical_ai: the ROS-free core of physical_ai_stack (perception, policy, world model, control, simulation).

Nothing in this package imports rclpy; the ROS 2 wiring lives in `physical_ai_nodes` (the `nodes/` folder).
"""

__version__ = "0.1.0"

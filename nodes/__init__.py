"""physical_ai_nodes: one module per ROS 2 node, each a thin rclpy wrapper over the `physical_ai` core."""

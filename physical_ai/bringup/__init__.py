"""Bring-up: which nodes make up each robot's stack, and a process supervisor that runs them without ROS launch."""

"""MuJoCo simulation that plays the robot drivers: scenarios, sensors, command interfaces, experts."""

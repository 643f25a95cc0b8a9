"""Real-time trajectory correction: chunk execution, limits, obstacle filters and watchdogs (ROS-free).

Modules by job: `limits` (joint limits and input checks), `chunks` (action chunks as time-indexed references),
`arm` (jerk-limited blended execution with ruckig), `arm_collision` (capsule link model and clearance),
`amr` (footprint sweep and velocity correction), `grid_planner` (A* on an occupancy grid), `vehicle`
(path tracking with obstacle-aware speed), `watchdog` (stale-input detection) and `loop_timer` (deadline loop).
"""

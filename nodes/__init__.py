"""physical_ai_nodes: one module per ROS 2 node, each a thin rclpy wrapper over the `physical_ai` core."""

import os

# One BLAS thread per node, set before any node module imports numpy. The nodes share a robot computer's few cores;
# OpenBLAS's extra threads spin while they wait, and on a busy 2-core machine a perception cycle of the arm cell took
# 63 ms with two BLAS threads against 39 ms with one (25 ms either way when idle). A user's own setting is kept.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

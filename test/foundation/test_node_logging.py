"""PhysaiNode.log_throttled: each key logged at most once per period, without rclpy's per-call caller lookup."""

from __future__ import annotations

import time
from types import SimpleNamespace

import rclpy

from physical_ai_nodes._base import PhysaiNode


def test_log_throttled_logs_each_key_at_most_once_per_period():
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = PhysaiNode("log_probe", context=context)
        node.log_throttled("real_logger", "a warning", period_s=0.0)  # rclpy's logger takes both levels in turn
        node.log_throttled("real_logger", "an error", period_s=0.0, level="error")
        node.log_throttled("real_logger", "a warning again", period_s=0.0)
        logged: list[tuple[str, str]] = []
        logger = SimpleNamespace(warning=lambda text: logged.append(("warning", text)),
                                 error=lambda text: logged.append(("error", text)))
        node.get_logger = lambda: logger
        node.log_throttled("points_malformed", "first", period_s=0.3)
        node.log_throttled("points_malformed", "suppressed", period_s=0.3)
        node.log_throttled("scan_malformed", "another key", period_s=0.3, level="error")
        assert logged == [("warning", "first"), ("error", "another key")]
        time.sleep(0.4)  # the period has passed: the key logs again
        node.log_throttled("points_malformed", "again", period_s=0.3)
        assert logged[-1] == ("warning", "again") and len(logged) == 3
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)

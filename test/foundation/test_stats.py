"""RollingStats keeps exactly the last `window` samples; RateMeter counts events over its time window."""

from __future__ import annotations

import math

import numpy as np
import pytest

from physical_ai.stats import RateMeter, RollingStats


def test_rolling_stats_reports_over_the_last_window_samples_only():
    stats = RollingStats(window=100)
    assert len(stats) == 0 and math.isnan(stats.percentile(50)) and math.isnan(stats.last)
    values = np.random.default_rng(0).normal(size=1234)
    for v in values:
        stats.add(v)
    assert len(stats) == 100 and stats.count == 1234 and stats.last == values[-1]
    for q in (0, 1, 50, 99, 100):
        assert stats.percentile(q) == pytest.approx(np.percentile(values[-100:], q))
    with pytest.raises(ValueError):
        RollingStats(window=0)


def test_rate_meter_counts_events_in_its_window():
    meter = RateMeter(window_s=1.0)
    for i in range(11):
        meter.tick(now=10.0 + 0.1 * i)
    assert meter.rate_hz(now=11.0) == pytest.approx(10.0)
    assert meter.rate_hz(now=13.0) == 0.0

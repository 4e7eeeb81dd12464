"""``paxctl bench``'s statistics: nearest-rank percentiles, never an interpolated latency."""

from __future__ import annotations

import pytest

from paxctl.bench.stats import latency_ms, percentile, summary


def test_nearest_rank_picks_a_sample_that_happened() -> None:
    samples = [float(i) for i in range(1, 1001)]  # 1..1000
    assert percentile(samples, 50) == 500
    assert percentile(samples, 99) == 990
    assert percentile(samples, 99.9) == 999
    assert percentile(samples, 100) == 1000
    assert percentile([7.0], 99.9) == 7.0
    assert percentile([1.0, 2.0], 50) == 1.0


def test_no_samples_is_an_error_for_a_percentile_and_none_in_a_summary() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    assert latency_ms([]) == {"p50": None, "p99": None, "p999": None, "mean": None, "max": None}
    assert summary([], 1.0)["ops"] == 0


def test_latencies_are_reported_in_milliseconds_in_any_order() -> None:
    got = latency_ms([0.003, 0.001, 0.002, 0.004])
    assert got == {"p50": 2.0, "p99": 4.0, "p999": 4.0, "mean": 2.5, "max": 4.0}


def test_rate_is_operations_over_elapsed_seconds() -> None:
    doc = summary([0.001] * 300, 2.0)
    assert doc["ops"] == 300 and doc["ops_per_s"] == 150.0
    assert summary([0.001], 0.0)["ops_per_s"] == 0.0

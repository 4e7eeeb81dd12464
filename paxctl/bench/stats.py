"""Latency percentiles and throughput of one run, as plain numbers (no I/O, no clock).

Percentiles are by nearest rank on the sorted samples: p99.9 of 1,000 samples is the largest
but one, never an interpolation between two operations that both happened.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

#: The percentiles reported, by their JSON key (``p999`` is p99.9: a dot in a key is awkward
#: in jq and most query languages).
PERCENTILES = (("p50", 50.0), ("p99", 99.0), ("p999", 99.9))


def percentile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile of ``ordered`` (sorted ascending, not empty)."""
    if not ordered:
        raise ValueError("no samples")
    # rounded first: 99.9 / 100 * 1000 is 999.0000000000001 in floating point, not 999
    rank = max(1, math.ceil(round(q / 100.0 * len(ordered), 6)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_ms(samples: Sequence[float]) -> dict[str, float | None]:
    """p50, p99, p99.9, mean and max of ``samples`` (seconds) in milliseconds, rounded to
    microseconds; None each when there are no samples."""
    keys = [k for k, _ in PERCENTILES] + ["mean", "max"]
    if not samples:
        return dict.fromkeys(keys)
    ordered = sorted(samples)
    found = {key: percentile(ordered, q) for key, q in PERCENTILES}
    found["mean"] = sum(ordered) / len(ordered)
    found["max"] = ordered[-1]
    return {key: round(found[key] * 1000, 3) for key in keys}


def summary(samples: Sequence[float], elapsed: float) -> dict[str, Any]:
    """Operations, operations per second over ``elapsed`` seconds, and their latency."""
    rate = len(samples) / elapsed if elapsed > 0 else 0.0
    return {"ops": len(samples), "ops_per_s": round(rate, 1), "latency_ms": latency_ms(samples)}

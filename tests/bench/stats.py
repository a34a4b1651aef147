"""Latency summaries: percentiles by linear interpolation, in milliseconds."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def percentile(ordered: list[float], p: float) -> float:
    """The p-th percentile (0-100) of an already sorted list (linear interpolation)."""
    if not ordered:
        return math.nan
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * p / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(values_ms: Iterable[float]) -> dict[str, Any]:
    ordered = sorted(values_ms)
    if not ordered:
        return {"n": 0}
    return {
        "n": len(ordered),
        "min": round(ordered[0], 3),
        "p50": round(percentile(ordered, 50), 3),
        "p95": round(percentile(ordered, 95), 3),
        "p99": round(percentile(ordered, 99), 3),
        "max": round(ordered[-1], 3),
        "mean": round(sum(ordered) / len(ordered), 3),
    }

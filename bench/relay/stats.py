"""Percentiles and side-by-side summaries: medians over rounds, differences and ratios vs a base.

Each round yields one figure per variant; a variant's figure is the median over rounds, and an
"added" figure is the median over rounds of (variant − base) measured in the same round, so a
slow round (a noisy neighbour on the shared cores) moves both sides together.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None without samples."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_figures(ttft: Sequence[float], itl: Sequence[float]) -> dict[str, float | None]:
    """TTFT and inter-token latency p50/p99, in milliseconds."""
    out: dict[str, float | None] = {}
    for name, values in (("ttft", ttft), ("itl", itl)):
        for q in (50, 99):
            value = percentile(values, q)
            out[f"{name}_p{q}_ms"] = None if value is None else value * 1000
    return out


def median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(
    rounds: list[dict[str, dict[str, Any]]], base: str, keys: Sequence[str]
) -> dict[str, dict[str, float | None]]:
    """Per variant: median of each key over rounds, plus `added_<key>` and `ratio_<key>` vs base."""
    variants = list(rounds[0]) if rounds else []
    summary: dict[str, dict[str, float | None]] = {}
    for variant in variants:
        row: dict[str, float | None] = {}
        for key in keys:
            row[key] = median([r[variant].get(key) for r in rounds])
            if variant == base:
                continue
            diffs, ratios = [], []
            for r in rounds:
                mine, theirs = r[variant].get(key), r[base].get(key)
                if mine is None or theirs is None:
                    continue
                diffs.append(mine - theirs)
                if theirs:
                    ratios.append(mine / theirs)
            row[f"added_{key}"] = median(diffs)
            row[f"ratio_{key}"] = median(ratios)
        summary[variant] = row
    return summary


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b

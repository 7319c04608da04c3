"""The magnitude test's pieces: score bins, their threshold, extrapolation for aggregated points."""

from __future__ import annotations

import itertools
import math
import random
from statistics import NormalDist

import pytest

from sidecar.drift.score import (
    GRID,
    SCORES,
    TOP_SCORE,
    edges,
    extrapolated,
    grid_of,
    seconds_far,
    steady_top,
    tail_slope,
    threshold,
)
from sidecar.drift.sketch import new_sketch


def test_scores_are_bounded_centred_normal_scores() -> None:
    assert len(SCORES) == GRID
    assert all(a < b for a, b in itertools.pairwise(SCORES))
    assert sum(SCORES) == pytest.approx(0.0, abs=1e-9)
    variance = sum(s * s for s in SCORES) / GRID
    assert 0.98 < variance < 1.0  # a bin's mean: a little less spread than N(0, 1)
    assert TOP_SCORE == SCORES[-1] == pytest.approx(2.51, abs=0.01)


def test_edges_read_the_sketch_quantiles_in_one_pass() -> None:
    rng = random.Random(4)
    sketch = new_sketch()
    for _ in range(5000):
        sketch.add(rng.lognormvariate(0.0, 0.5))
    for _ in range(200):
        sketch.add(0.0)  # zeros sit below every positive bin
    grid = edges(sketch, 0.0)
    assert grid is not None and len(grid) == GRID - 1
    expected = [sketch.get_quantile_value(i / GRID) for i in range(1, GRID)]
    assert grid == pytest.approx(expected)
    assert grid[1] == 0.0 < grid[2]  # 200 of 5,200 (3.8 %) are zeros: 2/64 < 3.8 % < 3/64
    floored = edges(sketch, 0.02)
    assert floored == pytest.approx([g + 0.02 for g in grid])
    small = new_sketch()
    small.add(1.0)
    assert edges(small, 0.0) is None


def test_grid_of_values_matches_their_quantiles() -> None:
    values = [float(i) for i in range(6400)]
    grid = grid_of(values, 0.5)
    assert grid is not None
    assert grid[31] == 3200.5 and grid[0] == 100.5 and grid[-1] == 6300.5
    assert grid_of(values[:100], 0.0) is None  # too few for 64 bins


@pytest.mark.parametrize("k", [0.25, 0.5])
def test_threshold_gives_the_run_length_it_promises(k: float) -> None:
    # Budget: one false crossing per week at 1 sample per 302.4 s = one per 2,000 samples.
    h = threshold(1 / 302.4, 10**9, k, 1.0)
    rng = random.Random(1)
    lengths = []
    for _ in range(300):
        s, n = 0.0, 0
        while s < h:
            s = max(0.0, s + rng.choice(SCORES) - k)
            n += 1
        lengths.append(n)
    mean = sum(lengths) / len(lengths)
    assert 1200 < mean < 4000, (h, mean)  # Siegmund's approximation, within its error


def test_threshold_rises_with_traffic_strictness_and_a_short_baseline() -> None:
    base = threshold(1.0, 3600, 0.25, 1.0)
    assert threshold(10.0, 3600, 0.25, 1.0) > base + 4  # 10x the samples per week
    assert threshold(1.0, 3600, 0.25, 0.1) > base + 4  # 10x fewer false pages
    assert threshold(1.0, 400, 0.25, 1.0) > base  # a noisier zero point
    assert 20 < base < 27


def test_extrapolated_scores_grow_with_distance_and_stop_at_the_cap() -> None:
    grid = [math.exp(0.2 * NormalDist().inv_cdf(i / GRID)) for i in range(1, GRID)]  # lognormal
    slope = tail_slope(grid)
    assert slope == pytest.approx(1 / 0.2, rel=0.01)  # one score per sigma of ln(value)
    assert extrapolated(grid[-1] * 1.01, grid, slope, 6.0) == TOP_SCORE  # never below the bin
    near = extrapolated(grid[-1] * 1.1, grid, slope, 6.0)
    far = extrapolated(grid[-1] * 1.3, grid, slope, 6.0)
    assert TOP_SCORE <= near < far <= 6.0
    assert extrapolated(grid[-1] * 100, grid, slope, 6.0) == 6.0
    assert tail_slope([1.0] * (GRID - 1)) == 0.0  # no spread: no extrapolation


def test_a_point_far_above_every_baseline_point_scores_the_cap() -> None:
    def lognormal(sigma: float) -> list[float]:
        return [math.exp(sigma * NormalDist().inv_cdf(i / GRID)) for i in range(1, GRID)]

    tight = lognormal(0.04)  # points of a p95 over many samples: top edge ~1.09x the median
    slope = tail_slope(tight)
    assert extrapolated(tight[-1] * 1.09, tight, slope, 6.0) < 5.0  # extrapolated: ~4 sigmas
    # 1.1x the baseline's top point (~its 98th percentile; "ratio > 1.2" rules compare with the
    # day's p95, lower): the cap
    assert extrapolated(tight[-1] * 1.1, tight, slope, 6.0) == 6.0
    wider = lognormal(0.08)  # top edge ~1.19x the median: as far above the top as that
    slope = tail_slope(wider)
    assert extrapolated(wider[-1] * 1.15, wider, slope, 6.0) < 6.0
    assert extrapolated(wider[-1] * 1.2, wider, slope, 6.0) == 6.0
    noisy = lognormal(0.3)  # a p95 of few samples: top edge ~1.9x the median
    slope = tail_slope(noisy)
    # 1.2x the top is within the baseline's own spread here: extrapolated, not the cap
    assert extrapolated(noisy[-1] * 1.2, noisy, slope, 6.0) < 4.0
    assert extrapolated(noisy[-1] * 1.95, noisy, slope, 6.0) == 6.0


def _lognormal(sigma: float) -> list[float]:
    return [math.exp(sigma * NormalDist().inv_cdf(i / GRID)) for i in range(1, GRID)]


def test_the_steady_top_is_the_top_edge_of_a_lognormal_baseline() -> None:
    grid = _lognormal(0.08)
    assert steady_top(grid) == pytest.approx(grid[-1], rel=1e-9)
    squeezed = [*grid[:-1], grid[-2]]  # the highest point left the baseline
    assert steady_top(squeezed) == pytest.approx(grid[-1], rel=1e-9)
    assert steady_top([1.0] * (GRID - 1)) == 1.0  # no spread: the top edge itself


def test_the_second_of_a_pair_must_clear_the_top_its_spread_implies() -> None:
    # 1/s at 5-min steps (round 7's missed run): top edge 1.17x the median, 90th percentile 1.10x
    tight = [*_lognormal(0.0745)[:-1], 1.17]
    assert seconds_far(1.27, tight)
    assert not seconds_far(1.22, tight)  # not 1.05x above the top edge
    # 0.2/s: the same top edge, but the 90th percentile at 1.15x: quiet pairs reach 1.28x
    wide = [*_lognormal(0.106)[:-1], 1.17]
    assert steady_top(wide) > 1.25
    assert not seconds_far(1.28, wide)
    assert seconds_far(1.33, wide)

"""The magnitude test's pieces: normal scores against the baseline, and its calibrated threshold.

The exceedance CUSUMs see one bit per sample (above q_ref or not), so a +50 % step of lognormal
latencies at one request per second needs ~150 samples. The value itself says more: its rank in
the baseline's distribution, mapped to a normal score, is N(0, 1) under no change whatever the
latency distribution, and a multiplicative step moves it by ln(factor) / sigma_log (+50 % at
sigma 0.5: +0.8). A CUSUM on those scores needs ~40 samples for that step.

The baseline's distribution is cut into `GRID` equiprobable bins (edges read from its sketch); a
sample scores the mean of N(0, 1) over its bin, so scores are bounded (+-2.4: one huge value
cannot page) and average 0 under no change. Edges are raised by the signal's floor: a rise
smaller than the floor moves no score.
"""

from __future__ import annotations

import math
from statistics import NormalDist

from ddsketch import LogCollapsingLowestDenseDDSketch

GRID = 64  # bins; 1/64 of the baseline's mass each
WEEK = 7 * 86400.0
_SIEGMUND = 1.166  # Siegmund's correction: b = h + 1.166 for a unit-variance Gaussian CUSUM


def _bin_means(bins: int) -> tuple[float, ...]:
    """E[Z | Z in bin i] for `bins` equiprobable bins of N(0, 1): mean 0, bounded."""
    normal = NormalDist()
    cuts = [-math.inf, *(normal.inv_cdf(i / bins) for i in range(1, bins)), math.inf]
    pdf = [0.0 if math.isinf(c) else normal.pdf(c) for c in cuts]
    return tuple(bins * (pdf[i] - pdf[i + 1]) for i in range(bins))


SCORES = _bin_means(GRID)
TOP_SCORE = SCORES[-1]  # what a failed request scores


def edges(sketch: LogCollapsingLowestDenseDDSketch, floor: float) -> list[float] | None:
    """The baseline's quantiles at 1/GRID .. (GRID-1)/GRID, plus `floor`, in one pass."""
    count = sketch.count
    if count < GRID:
        return None
    # one pass over the bins instead of GRID get_quantile_value calls (each a pass)
    store = sketch._store
    mapping = sketch._mapping
    zeros = sketch._zero_count
    out: list[float] = []
    target_index = 1
    rank = target_index / GRID * (count - 1)
    running = zeros
    # quantile q sits at rank q * (count - 1), as DDSketch's get_quantile_value reads it
    while target_index < GRID and rank < running:
        out.append(floor)
        target_index += 1
        rank = target_index / GRID * (count - 1)
    for i, weight in enumerate(store.bins):
        if not weight:
            continue
        running += weight
        if running <= rank:
            continue
        value = float(mapping.value(i + store.offset)) + floor
        while target_index < GRID and rank < running:
            out.append(value)
            target_index += 1
            rank = target_index / GRID * (count - 1)
        if target_index >= GRID:
            break
    while len(out) < GRID - 1:  # float rounding at the very top
        out.append(out[-1] if out else floor)
    return out


def grid_of(values: list[float], floor: float) -> list[float] | None:
    """The same quantiles as `edges`, from a list of values (the covariate reservoir)."""
    if len(values) < 4 * GRID:
        return None
    ordered = sorted(values)
    n = len(ordered)
    return [ordered[min(n - 1, i * n // GRID)] + floor for i in range(1, GRID)]


def threshold(rate: float, samples: int, k: float, false_pages_per_week: float) -> float:
    """h for a CUSUM on scores with reference k: one false crossing per 1 / budget weeks.

    Siegmund's approximation of the in-control run length, ARL = (e^{2kb} - 2kb - 1) / (2k^2)
    with b = h + 1.166, solved for the samples a key at `rate` per second sees in the budget's
    time. A baseline of n samples estimates the scores' zero point to about 1/sqrt(n); the
    reference is reduced by that much so a short baseline does not page more often.
    """
    target = max(WEEK * rate / max(false_pages_per_week, 1e-9), 100.0)
    k_eff = max(k - 1.0 / math.sqrt(max(samples, 1)), 0.05)
    lo, hi = 0.0, 200.0
    for _ in range(60):  # bisection: ARL is increasing in b
        b = (lo + hi) / 2
        x = 2 * k_eff * b
        arl = (math.expm1(x) - x) / (2 * k_eff * k_eff)
        lo, hi = (b, hi) if arl < target else (lo, b)
    return max(hi - _SIEGMUND, 1.0)


_Q75_Z = NormalDist().inv_cdf(0.75)  # ~0.674
_Q50, _Q75 = GRID // 2 - 1, 3 * GRID // 4 - 1  # edges at quantiles 1/2 and 3/4


def tail_slope(grid: list[float]) -> float:
    """Scores per unit of ln(value) above the top edge, from the baseline's upper quartile.

    For a pre-aggregated series (each point a step's p95) a point far above every baseline point
    is strong evidence, not one sample's noise: it scores as if the baseline were lognormal with
    its median and upper quartile (stable with ~100 points, unlike its top edge), capped by the
    caller, and never less than the top bin's score. 0 when the upper quartile has no spread.
    """
    mid, upper = grid[_Q50], grid[_Q75]
    if mid <= 0 or upper <= mid:
        return 0.0
    return _Q75_Z / math.log(upper / mid)


FAR = 1.1  # a point this far above every baseline point scores the cap (round 5: 1.2)


def extrapolated(value: float, grid: list[float], slope: float, cap: float) -> float:
    """The score of a value above the top edge (see tail_slope), at most `cap`.

    A point at least FAR x the top edge scores the cap whatever the spread: two of them in a row
    page, as "ratio > 1.2 twice" rules do. The top edge is the baseline's ~98th percentile point,
    above their day's p95, hence 1.1, not 1.2: at 1.2 two 5-min points of repeated bursts ~1.37x
    the baseline's median point were missed in 4 of 48 tune runs (1 at 1.1, no new quiet page).
    Without it, a baseline whose points spread widely (a p95 of few samples) extrapolates such
    points to ~4 sigmas, and two repeated bursts that lift two 5-min points by ~1.4x were missed
    3 times in 8 (tune seeds).
    """
    top = grid[-1]
    if value >= top * max(
        FAR, top / grid[_Q50]
    ):  # and as far above the top as it is above the median
        return cap
    return min(max(_Q75_Z + slope * math.log(value / grid[_Q75]), TOP_SCORE), cap)


_Q90 = 57  # the edge at quantile 58/64 (~0.906)
_TOP_PER_Q90 = NormalDist().inv_cdf(63 / 64) / NormalDist().inv_cdf(58 / 64)  # ~1.63
SECOND = 1.05  # the second point of a pair: this far above the baseline's top (below)


def steady_top(grid: list[float]) -> float:
    """The baseline's top edge as its 90th-percentile point implies it (lognormal spread).

    The top edge itself is the ~98th-percentile point, about the second highest of ~100
    aggregated points: it moves by a bin whenever one point enters or leaves the baseline. The
    90th percentile rests on ~10 points and sets the spread far more steadily.
    """
    mid, upper = grid[_Q50], grid[_Q90]
    if mid <= 0 or upper <= mid:
        return grid[-1]
    return mid * math.exp(_TOP_PER_Q90 * math.log(upper / mid))


def seconds_far(value: float, grid: list[float]) -> bool:
    """Whether a point right after a far one (one that scored the cap) also scores the cap.

    For long steps only (DetectorConfig.score_far_pairs). Two 5-min points of repeated 45 s x2
    bursts are ~1.4x the baseline's median point each, but one in 48 tune runs drew 1.41x then
    1.27x over a baseline whose top edge sat at 1.17x: the second point was extrapolated to ~2.8
    and the pair missed, where "ratio > 1.2 twice" pages on the first point alone. The same
    pair (1.39x, 1.28x over a top at 1.17x) came from quiet traffic at 0.2 samples/s, whose
    points spread wider: its 90th-percentile point (1.15x, against 1.10x) says so, its top edge
    did not. So the second point must be SECOND x above both the top edge and the top that the
    90th percentile implies.
    """
    return value >= SECOND * max(grid[-1], steady_top(grid))

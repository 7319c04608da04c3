"""Where a change began: the likeliest start of a shift in normal scores, sized by what is seen.

The magnitude CUSUM's persistence clock starts at this estimate. Starting it early lets a burst's
last samples count as "still there" after the burst ended, so an early error is what pages bursts.
The previous estimate, the lowest point of the running sum of `score - k` (the likeliest start
of a shift of exactly 2k), errs early whenever noise before a burst averaged above k for a while,
which at k = 0.4 happens in a few % of 10-30 s stretches. A burst of twice the latency shifts the
scores by ~1.3, so the likelihood ratio at the shift actually seen (its own reference, half of it)
needs noise twice as unlikely to move the start back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

Mark = tuple[float, float, int]  # (t, running sum of `score - k` up to t, samples up to t)


def likeliest_onset(marks: Iterable[Mark], total: float, n: int, k: float, least: int) -> float:
    return _likeliest(marks, total, n, k, least)[0]


def likeliest_shift(
    marks: Sequence[Mark], total: float, n: int, k: float, least: int, floor: float
) -> float:
    """The mean score after the likeliest start of a shift of at least `floor` (0: none)."""
    start = _likeliest(marks, total, n, k, least, floor=floor)
    return shift_since(start, total, n, k) if start[0] > -float("inf") else 0.0


def _likeliest(
    marks: Iterable[Mark],
    total: float,
    n: int,
    k: float,
    least: int,
    mu: float | None = None,
    floor: float | None = None,
) -> Mark:
    """The time of the mark after which a shift is likeliest, given the sums now (`total`, `n`).

    For the m samples after a mark, with d their sum of scores, a shift mu has log-likelihood
    ratio mu * d - mu^2 * m / 2; mu is the observed mean d / m, but at least 2k or `floor` (a
    shift smaller than the one the CUSUM is tuned to is not a change worth dating). At mu = 2k
    this picks the lowest point of the running sum (the previous estimate); at a bigger observed
    shift, its own. Marks with fewer than `least` samples after them are skipped: a handful of
    lucky samples must not date the change, and ties go to the later mark (later is the safe
    side for bursts).
    Returns -inf when no mark qualifies.
    """
    floor = 2 * k if floor is None else floor
    best, when = -float("inf"), (-float("inf"), 0.0, n)
    for t, running, count in marks:
        m = n - count
        if m < least:
            continue
        d = total - running + k * m  # sum of scores after the mark
        size = max(d / m, floor) if mu is None else mu
        ratio = size * d - size * size * m / 2
        if ratio >= best:
            best, when = ratio, (t, running, count)
    return when


def later_start(
    marks: Sequence[Mark], since: float, total: float, n: int, k: float, least: int, spread: float
) -> float | None:
    """The likeliest start of the change, if it is clearly later than `since`; else None.

    The change is sized by the mean score mu since `since` (the whole episode: ~45 samples at
    1/s, a fair estimate), so a small shift is dated at its own size, not at 2k, where the
    running sum of `score - k` keeps falling and its lowest point is always "now".
    "Clearly": more than `spread` / mu^2 samples later. A change point's estimate wanders by
    ~1 / mu^2 samples, so a +50 % step (0.8: ~8 samples at spread 5) keeps its clock unless the
    evidence moved a lot, a +20 % one (0.36: ~38) nearly always does, and a big burst (1.3: ~3)
    is re-dated precisely.
    """
    sized = _sized(marks, since, total, n, k, least)
    if sized is None:
        return None
    first, mu = sized
    t, _, count = _likeliest((m for m in marks if m[0] >= since), total, n, k, least, mu)
    return t if count - first[2] > spread / (mu * mu) else None


def _sized(
    marks: Sequence[Mark], since: float, total: float, n: int, k: float, least: int
) -> tuple[Mark, float] | None:
    """The first mark at or after `since` and the mean score after it, if enough and > 0."""
    first = next((m for m in marks if m[0] >= since), None)
    if first is None or n - first[2] < least:
        return None
    mu = shift_since(first, total, n, k)
    return None if mu <= 0 else (first, mu)


def shift_since(mark: Mark, total: float, n: int, k: float) -> float:
    """The mean score of the samples after `mark` (0 when there are none)."""
    return (total - mark[1]) / (n - mark[2]) + k if n > mark[2] else 0.0


def ended(evidence: float, score: float, mu: float) -> float:
    """One step of a CUSUM on "the shift of size mu has ended": S <- max(0, S + mu(mu/2 - z)).

    Its increment is the log-likelihood ratio of a normal sample (mean 0) against a shifted one
    (mean mu). While the shift lasts it drifts down by mu^2 / 2 a sample and exceeds c nats with
    probability ~e^-c at any moment; once a burst has ended it climbs by mu^2 / 2 a sample (~1 at
    a x2 burst's 1.4). A burst whose persistence clock started a few seconds early has a few of
    its own samples among the late ones, then normal ones: this is what tells it from a step.
    """
    return max(0.0, evidence + mu * (mu / 2 - score))


def latest_plausible(
    marks: Sequence[Mark], since: float, total: float, n: int, k: float, least: int, slack: float
) -> float | None:
    """The latest start of the change within `slack` nats of the likeliest, if later than `since`.

    Sized like later_start (the mean score since `since`). A burst whose clock started early
    because noise before it looked shifted has a flat likelihood between that noise and its own
    start: its own start is within a nat or two of the best, and a clock there leaves only the
    burst's normal aftermath to the late samples. A step's likelihood falls by ~mu^2/2 a sample
    past its start (0.32 nats at +50 %): `slack` nats cost a step about slack / 0.32 samples.
    """
    sized = _sized(marks, since, total, n, k, least)
    if sized is None:
        return None
    mu = sized[1]
    ratios = []
    for t, running, count in marks:
        m = n - count
        if t < since or m < least:
            continue
        d = total - running + k * m
        ratios.append((t, mu * d - mu * mu * m / 2))
    if not ratios:
        return None
    best = max(r for _, r in ratios)
    t = max(t for t, r in ratios if r >= best - slack)
    return t if t > since else None

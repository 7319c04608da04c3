"""Does a shift outlast any burst of `persist` seconds? A likelihood-ratio test with no clock.

Round 8 (docs/benchmarks-drift.md). Rounds 4-7 started a persistence clock at one estimated
onset and asked the samples arriving `persist` seconds later for evidence. An onset dated a few
seconds early lets a burst's own last samples count, and a late one delays steps; at one sample
a second the clock's error costs about as much as the test itself. Here no onset is chosen: the
generalized likelihood ratio of

    H1: the scores shifted by mu from some start on, and still are `persist` seconds later, and
    H0: they shifted by mu for at most `persist` seconds, anywhere, and were normal otherwise,

is the best H1 (over every start) less the best H0 (over every window of <= `persist` seconds).
A sample's log-likelihood ratio of "shifted" to "normal" is mu (z - mu / 2). After a burst the
samples are normal and the statistic falls by ~mu^2 / 2 a sample; it passes c nats about e^-c of
the time. While a step lasts it climbs by ~mu^2 / 2 a sample past the first `persist` seconds,
less what moving H0's window along the step gains by chance (both are measured).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from sidecar.drift.onset import Mark, likeliest_shift


def outlasts(marks: Sequence[Mark], k: float, persist: float, least: int, floor: float) -> float:
    """The statistic in nats (-inf while no start is `persist` seconds old).

    `marks` are (t, running sum of `score - k`, samples) with the first one before any sample of
    the episode. mu is the mean score after the likeliest start (onset.py), at least `floor`: a
    lasting small shift is read at its own size, a big burst at its own.
    """
    now, total, n = marks[-1]
    mu = max(likeliest_shift(marks, total, n, k, least, floor), floor)
    # prefix sums of mu (z - mu/2) = mu (z - k) + mu (k - mu/2) per sample
    slope = mu * (k - mu / 2)
    prefix = [mu * running + slope * count for _, running, count in marks]
    last = prefix[-1]
    # H1: a start after mark j (before sample j + 1) whose shift outlasts `persist`: now - t_j
    # > persist. H0: samples j+1..i shifted, a burst window: t_i - t_{j+1} <= persist.
    best_step = max(
        (last - p for (t, _, _), p in zip(marks, prefix, strict=True) if now - t > persist),
        default=None,
    )
    if best_step is None:
        return -float("inf")
    best_burst = 0.0
    lows: deque[int] = deque()  # indices j whose prefix may be the window's minimum
    for i, (t, _, _) in enumerate(marks):
        while lows and marks[lows[0] + 1][0] < t - persist:
            lows.popleft()
        best_burst = max(best_burst, prefix[i] - prefix[lows[0]]) if lows else best_burst
        while lows and prefix[lows[-1]] >= prefix[i]:
            lows.pop()
        lows.append(i)
    return best_step - best_burst

"""The two simple rules of the shapes benchmark, fed the same buckets as ours.

A bucket is (end time, values): one minute of raw samples, or one aggregated point (a 1-min or
5-min p95). Both rules page on two consecutive true evaluations, one evaluation per bucket, and
merge pages within 10 min of the last true evaluation (as ours merges flaps).

* `RatioRule`: the p95 of the last hour over the p95 of the trailing day before it (at least
  6 h of it) > 1.2: the rule of the issue's outside measurement.
* `FixedRule`: the bucket's p95 (the last minute's, or the point) > a threshold, tuned per
  traffic and sampling on quiet tune runs: just above the highest value two consecutive buckets
  both reached.
"""

from __future__ import annotations

import itertools
import math
from collections import deque

FLAP = 600.0
_BIN = math.log(1.01)  # 1 % geometric bins: p95 to ~1 %


class RollingP95:
    """Counts in 1 % geometric bins; values can be added and removed again."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.n = 0

    @staticmethod
    def _key(value: float) -> int:
        return math.floor(math.log(max(value, 1e-6)) / _BIN)

    def add(self, values: list[float], sign: int = 1) -> None:
        counts = self.counts
        for value in values:
            key = self._key(value)
            counts[key] = counts.get(key, 0) + sign
        self.n += sign * len(values)

    def p95(self) -> float | None:
        if self.n <= 0:
            return None
        above = 0.05 * self.n
        seen = 0
        for key in sorted((k for k, c in self.counts.items() if c), reverse=True):
            seen += self.counts[key]
            if seen >= above:
                return math.exp((key + 0.5) * _BIN)
        return None


def exact_p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


class _TwiceRule:
    def __init__(self, name: str) -> None:
        self.name = name
        self.pages: list[float] = []
        self._streak = 0
        self._last_true = -math.inf

    def _verdict(self, t: float, true: bool) -> None:
        self._streak = self._streak + 1 if true else 0
        if self._streak >= 2:
            if t - self._last_true > FLAP:
                self.pages.append(t)
            self._last_true = t


class RatioRule(_TwiceRule):
    def __init__(
        self,
        name: str,
        ratio: float = 1.2,
        window: float = 3600.0,
        trailing: float = 86400.0,
        min_trailing: float = 6 * 3600.0,
    ) -> None:
        super().__init__(name)
        self.ratio, self.window, self.trailing, self.min_trailing = (
            ratio, window, trailing, min_trailing,
        )  # fmt: skip
        self._recent: deque[tuple[float, list[float]]] = deque()
        self._old: deque[tuple[float, list[float]]] = deque()
        self._recent_p95, self._old_p95 = RollingP95(), RollingP95()
        self._first: float | None = None

    def feed(self, t: float, values: list[float]) -> None:
        if self._first is None:
            self._first = t
        self._recent.append((t, values))
        self._recent_p95.add(values)
        while self._recent[0][0] <= t - self.window:
            moved = self._recent.popleft()
            self._recent_p95.add(moved[1], -1)
            self._old.append(moved)
            self._old_p95.add(moved[1])
        while self._old and self._old[0][0] <= t - self.window - self.trailing:
            self._old_p95.add(self._old.popleft()[1], -1)
        if t - self._first < self.window + self.min_trailing:
            return
        now, base = self._recent_p95.p95(), self._old_p95.p95()
        self._verdict(t, now is not None and base is not None and now > self.ratio * base)


class FixedRule(_TwiceRule):
    def __init__(self, name: str, limit: float) -> None:
        super().__init__(name)
        self.limit = limit

    def feed(self, t: float, values: list[float]) -> None:
        if values:
            self._verdict(t, exact_p95(values) > self.limit)


def highest_pair(buckets: list[list[float]]) -> float:
    """The highest level two consecutive buckets' p95 both reached (for tuning FixedRule)."""
    p95s = [exact_p95(b) for b in buckets if b]
    return max((min(a, b) for a, b in itertools.pairwise(p95s)), default=0.0)

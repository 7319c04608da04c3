"""Time-sliced quantile sketches: 10 s slots merged into 1 min buckets, queried as windows.

A sample lands in the slot containing its timestamp. Each finished slot is merged at once into the
bucket (one refresh interval, 1 min by default) it belongs to, so buckets are always complete up to
the last finished slot. Recent windows (short, medium) are read from slots; the baseline is read
from buckets, which keeps the baseline merge to ~60 sketches per minute instead of ~360.

Window edges, exactly (slot width w, `now` in slot k = floor(now / w)):
  * `recent(now, W)` holds slots k - W/w + 1 .. k: the current, partial slot and the W/w - 1
    before it, so a 60 s window at t = 125 s covers slots starting at 70..120 s.
  * `buckets(start, end)` holds buckets lying entirely in [start, end) (complete when `end` is
    at or before the current slot, as the baseline's gap guarantees).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from ddsketch import LogCollapsingLowestDenseDDSketch

# 1% relative accuracy and at most 1,024 bins (~8 KB): covers 1 µs .. 10^4 s without collapsing.
RELATIVE_ACCURACY = 0.01
BIN_LIMIT = 1024


def new_sketch() -> LogCollapsingLowestDenseDDSketch:
    return LogCollapsingLowestDenseDDSketch(RELATIVE_ACCURACY, bin_limit=BIN_LIMIT)


def quantile(sketch: LogCollapsingLowestDenseDDSketch, q: float) -> float | None:
    if sketch.count == 0:
        return None
    value = sketch.get_quantile_value(q)
    return None if value is None else float(value)


@dataclass(slots=True)
class Tally:
    """Samples of one slot or bucket: normalised and raw sketches, counts.

    Counts are taken against the levels in force when each sample arrived (the baseline changes
    once a minute at most, and never during an alert), so windows are read without merging.
    """

    start: float
    separate_raw: bool = True  # False when values are not normalised: one sketch serves both
    norm: LogCollapsingLowestDenseDDSketch = field(default_factory=new_sketch)
    raw: LogCollapsingLowestDenseDDSketch = field(default_factory=new_sketch)
    n: int = 0
    exceed: int = 0  # above q_ref (or failed)
    over_crit: int = 0  # above the WARN -> CRIT level (crit_ratio x baseline p95)
    over_fast: int = 0  # above the fast-path level (fast_ratio x baseline p95)
    failed: int = 0  # errors, timeouts, aborted streams (also counted in `exceed`)

    def __post_init__(self) -> None:
        if not self.separate_raw:
            self.raw = self.norm

    def merge(self, other: Tally) -> None:
        self.norm.merge(other.norm)
        if self.separate_raw:
            self.raw.merge(other.raw)
        self.n += other.n
        self.exceed += other.exceed
        self.over_crit += other.over_crit
        self.over_fast += other.over_fast
        self.failed += other.failed


@dataclass(frozen=True, slots=True)
class Counts:
    n: int = 0
    exceed: int = 0
    over_crit: int = 0
    over_fast: int = 0

    @property
    def fraction(self) -> float:
        return self.exceed / self.n if self.n else 0.0


def merged(tallies: list[Tally], start: float, separate_raw: bool = True) -> Tally:
    total = Tally(start, separate_raw)
    for tally in tallies:
        total.merge(tally)
    return total


class Windows:
    """Slots for the recent past, buckets for the baseline; memory bounded by the horizons."""

    def __init__(
        self,
        slot_seconds: float,
        bucket_seconds: float,
        recent_seconds: float,
        history_seconds: float,
        separate_raw: bool = True,
    ) -> None:
        ratio = bucket_seconds / slot_seconds
        if slot_seconds <= 0 or ratio < 1 or abs(ratio - round(ratio)) > 1e-9:
            raise ValueError("bucket_seconds must be a positive multiple of slot_seconds")
        self.slot_seconds = slot_seconds
        self.bucket_seconds = bucket_seconds
        self.separate_raw = separate_raw
        self._recent_slots = max(1, math.ceil(recent_seconds / slot_seconds))
        self._history_buckets = max(1, math.ceil(history_seconds / bucket_seconds)) + 1
        self._slots: deque[Tally] = deque()
        self._buckets: deque[Tally] = deque()
        self._slot_index = -(2**62)
        self.slot: Tally | None = None  # newest slot; samples before `slot_end` go into it
        self.slot_end = -math.inf

    def slot_start(self, t: float) -> float:
        return math.floor(t / self.slot_seconds) * self.slot_seconds

    def current(self, t: float) -> Tally:
        """The slot to add a sample at `t` into (late samples go into the newest slot)."""
        if t < self.slot_end and self.slot is not None:
            return self.slot
        index = math.floor(t / self.slot_seconds)
        if index > self._slot_index:
            self._open(index)
        return self._slots[-1]

    def _open(self, index: int) -> None:
        if self._slots:
            self._close(self._slots[-1])
        self._slot_index = index
        self.slot = Tally(index * self.slot_seconds, self.separate_raw)
        self.slot_end = (index + 1) * self.slot_seconds
        self._slots.append(self.slot)
        while len(self._slots) > self._recent_slots:
            self._slots.popleft()

    def _close(self, slot: Tally) -> None:
        start = math.floor(slot.start / self.bucket_seconds + 1e-9) * self.bucket_seconds
        if not self._buckets or self._buckets[-1].start < start:
            self._buckets.append(Tally(start, self.separate_raw))
        self._buckets[-1].merge(slot)
        while self._buckets and self._buckets[0].start < start - (
            self._history_buckets * self.bucket_seconds
        ):
            self._buckets.popleft()

    def recent(self, now: float, seconds: float) -> list[Tally]:
        first = self.slot_start(now) - (round(seconds / self.slot_seconds) - 1) * self.slot_seconds
        last = self.slot_start(now)
        eps = self.slot_seconds * 1e-6
        return [s for s in self._slots if first - eps <= s.start <= last + eps]

    def counts(self, now: float, seconds: float) -> Counts:
        n = exceed = crit = fast = 0
        for slot in self.recent(now, seconds):
            n += slot.n
            exceed += slot.exceed
            crit += slot.over_crit
            fast += slot.over_fast
        return Counts(n, exceed, crit, fast)

    def merged(self, now: float, seconds: float) -> Tally:
        return merged(self.recent(now, seconds), now, self.separate_raw)

    def buckets(self, start: float, end: float) -> list[Tally]:
        """Buckets lying entirely in [start, end), as merged from closed slots so far.

        A bucket exists once its first slot closes and is complete once `end` is at or before
        the current slot; the baseline's gap (`end = now - 5 min`) always ensures that.
        """
        eps = self.bucket_seconds * 1e-6
        return [
            b
            for b in self._buckets
            if b.start >= start - eps and b.start + self.bucket_seconds <= end + eps
        ]

    def flush(self, now: float) -> None:
        """Close the current slot if `now` is past it, so its bucket is complete."""
        if self._slots and math.floor(now / self.slot_seconds) > self._slot_index:
            self._open(math.floor(now / self.slot_seconds))

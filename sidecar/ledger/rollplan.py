"""Which parts of a report period come from the hourly rollups, and which from stream rows.

A rollup hour holds the sums of that UTC hour's finished streams, exact as long as the hour is
not marked stale (`ledger/rollup.py`). A period [since, until) is split into:

- rollup ranges: whole hours before the rollups' high-water mark, not marked stale;
- running ranges: the same hours, whose running streams (no outcome yet, so in no rollup)
  are read row by row through a small partial index;
- raw ranges: everything else, every stream row: the partial hours at either edge, the stale
  hours, and the hours not rolled up yet (the last few, mostly).

Together they cover the period exactly once, so a report over the plan equals the report
over the rows. Pure: no SQL, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

HOUR: Final = timedelta(hours=1)
MAX_RANGES: Final = 64  # beyond this many stale stretches, reading the rows is simpler

# [start, end); None: unbounded on that side
Range = tuple[datetime | None, datetime | None]


@dataclass(frozen=True, slots=True)
class Plan:
    rollup: tuple[Range, ...]
    running: tuple[Range, ...]
    raw: tuple[Range, ...]


def floor_hour(instant: datetime) -> datetime:
    utc = instant.astimezone(UTC) if instant.tzinfo else instant.replace(tzinfo=UTC)
    return utc.replace(minute=0, second=0, microsecond=0)


def ceil_hour(instant: datetime) -> datetime:
    floor = floor_hour(instant)
    return floor if floor == instant else floor + HOUR


def rollup_span(
    since: datetime | None, until: datetime | None, rolled_until: datetime | None
) -> Range | None:
    """The whole hours of [since, until) that the rollups cover, or None if there are none."""
    if rolled_until is None:
        return None
    low = None if since is None else ceil_hour(since)
    high = rolled_until if until is None else min(floor_hour(until), rolled_until)
    if low is not None and low >= high:
        return None
    return low, high


def plan(
    since: datetime | None,
    until: datetime | None,
    rolled_until: datetime | None,
    stale_hours: Iterable[datetime],
) -> Plan:
    """Split [since, until) as the module docstring says. `stale_hours`: the marked hours
    (those outside the rollup span are ignored)."""
    everything = Plan(rollup=(), running=(), raw=((since, until),))
    span = rollup_span(since, until, rolled_until)
    if span is None:
        return everything
    low, high = span
    assert high is not None
    stale = _stretches(h for h in stale_hours if (low is None or h >= low) and h < high)
    clean: list[Range] = []
    start = low
    for first, end in stale:
        if start is None or first > start:
            clean.append((start, first))
        start = end
    if start is None or start < high:
        clean.append((start, high))
    raw: list[Range] = []
    if since is not None and low is not None and since < low:
        raw.append((since, low))
    raw.extend(stale)
    if until is None or high < until:
        raw.append((high, until))
    if len(clean) + len(raw) > MAX_RANGES:
        return everything
    return Plan(rollup=tuple(clean), running=tuple(clean), raw=tuple(raw))


def _stretches(hours: Iterable[datetime]) -> list[tuple[datetime, datetime]]:
    """Sorted, distinct hours merged into [first, end) runs of consecutive hours."""
    runs: list[tuple[datetime, datetime]] = []
    for hour in sorted(set(hours)):
        if runs and runs[-1][1] == hour:
            runs[-1] = (runs[-1][0], hour + HOUR)
        else:
            runs.append((hour, hour + HOUR))
    return runs

"""The split of a report period between rollups and rows (pure: no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from sidecar.ledger.rollplan import (
    HOUR,
    MAX_RANGES,
    Plan,
    Range,
    ceil_hour,
    floor_hour,
    plan,
)

T0 = datetime(2026, 11, 20, tzinfo=UTC)


def h(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def test_edges_stale_hours_and_the_tail_are_read_from_rows() -> None:
    parts = plan(h(0.5), h(10.25), rolled_until=h(8), stale_hours=[h(3), h(4), h(6), h(9)])
    assert parts.rollup == ((h(1), h(3)), (h(5), h(6)), (h(7), h(8)))
    assert parts.running == parts.rollup  # running streams are in no rollup
    assert parts.raw == ((h(0.5), h(1)), (h(3), h(5)), (h(6), h(7)), (h(8), h(10.25)))


def test_nothing_rolled_up_or_too_short_a_period_reads_every_row() -> None:
    everything = Plan(rollup=(), running=(), raw=((h(0.5), h(1.5)),))
    assert plan(h(0.5), h(1.5), rolled_until=h(8), stale_hours=[]) == everything
    assert plan(h(0.5), h(1.5), rolled_until=None, stale_hours=[]) == everything
    assert plan(None, None, rolled_until=None, stale_hours=[]).raw == ((None, None),)


def test_open_ended_periods() -> None:
    parts = plan(None, None, rolled_until=h(5), stale_hours=[h(0)])
    assert parts.rollup == ((None, h(0)), (h(1), h(5)))
    assert parts.raw == ((h(0), h(1)), (h(5), None))


def test_too_many_stale_stretches_fall_back_to_rows() -> None:
    stale = [h(2 * n) for n in range(MAX_RANGES)]
    assert plan(h(0), h(4 * MAX_RANGES), h(4 * MAX_RANGES), stale).rollup == ()


def test_hours_round_in_utc() -> None:
    assert floor_hour(h(2.75)) == h(2) and ceil_hour(h(2.75)) == h(3) and ceil_hour(h(2)) == h(2)
    assert floor_hour(datetime(2026, 11, 20, 5, 30)) == h(5)  # naive: UTC


minutes = st.integers(0, 48 * 60)


@given(
    since=st.one_of(st.none(), minutes),
    length=st.one_of(st.none(), st.integers(1, 48 * 60)),
    rolled=st.one_of(st.none(), st.integers(0, 50)),
    stale=st.lists(st.integers(-2, 50), max_size=20),
    probe=st.integers(-120, 52 * 60),
)
def test_every_instant_of_the_period_is_read_exactly_once(
    since: int | None, length: int | None, rolled: int | None, stale: list[int], probe: int
) -> None:
    start = None if since is None else T0 + timedelta(minutes=since)
    end = None if length is None else (start or T0) + timedelta(minutes=length)
    parts = plan(start, end, None if rolled is None else h(rolled), [h(n) for n in stale])
    at = T0 + timedelta(minutes=probe)
    inside = (start is None or at >= start) and (end is None or at < end)
    sources = [r for r in (*parts.rollup, *parts.raw) if _covers(r, at)]
    assert len(sources) == (1 if inside else 0)
    for first, last in parts.rollup:  # rollups only for whole, clean, rolled-up hours
        assert first is None or first == floor_hour(first)
        assert last is not None and last == floor_hour(last) and last <= h(rolled or 0)
        assert not any(_covers((first, last), h(n)) for n in stale)


def _covers(span: Range, at: datetime) -> bool:
    first, last = span
    return (first is None or at >= first) and (last is None or at < last)


def test_a_stale_hour_at_the_edge_of_the_span() -> None:
    parts = plan(h(1), h(4), rolled_until=h(4), stale_hours=[h(1), h(3)])
    assert parts.rollup == ((h(2), h(3)),)
    assert parts.raw == ((h(1), h(2)), (h(3), h(4)))
    assert timedelta(hours=1) == HOUR

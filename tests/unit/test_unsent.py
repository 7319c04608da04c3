"""Mapping the bytes a client never got back to the streams whose deltas they held."""

from __future__ import annotations

from collections import deque

from sidecar.ingress.unsent import Writes, drop_acknowledged, unsent_by_owner


def writes() -> Writes[str]:
    # Three streams interleaved on one connection: (where the write ended, stream, deltas).
    return deque([(100, "a", 1), (180, "b", 2), (260, "a", 1), (300, "c", 3), (420, "b", 1)])


def test_writes_ending_after_the_lost_offset_are_unsent_per_stream() -> None:
    assert unsent_by_owner(writes(), 260) == {"c": 3, "b": 1}
    assert unsent_by_owner(writes(), 259) == {"c": 3, "b": 1, "a": 1}  # 1 byte of it was lost


def test_nothing_lost_and_everything_lost() -> None:
    assert unsent_by_owner(writes(), 420) == {}
    assert unsent_by_owner(writes(), 0) == {"a": 2, "b": 3, "c": 3}
    assert unsent_by_owner(deque(), 0) == {}


def test_acknowledged_writes_are_dropped_and_never_count_unsent() -> None:
    log = writes()
    drop_acknowledged(log, 260)
    assert list(log) == [(300, "c", 3), (420, "b", 1)]
    assert unsent_by_owner(log, 0) == {"c": 3, "b": 1}  # what the peer acknowledged stays out
    drop_acknowledged(log, 10_000)
    assert not log

"""The replay buffer keeps deltas as compact text within its bounds (sidecar.ingress.replay)."""

from __future__ import annotations

from sidecar.ingress.replay import ReplayBudget, ReplayBuffer, delta_cost


def _filled(buffer: ReplayBuffer, texts: list[str], first: int = 1) -> ReplayBuffer:
    for seq, text in enumerate(texts, start=first):
        buffer.append(seq, text)
    return buffer


def test_texts_after_a_seq_come_back_in_order_and_unicode_survives() -> None:
    buffer = _filled(ReplayBuffer(100, ReplayBudget(0)), ["Hel", "lo ", "wörld", " 🙂"])
    assert buffer.texts_after(0) == ["Hel", "lo ", "wörld", " 🙂"]
    assert buffer.texts_after(2) == ["wörld", " 🙂"]
    assert buffer.texts_after(4) == [] and buffer.texts_after(9) == []


def test_the_count_bound_drops_the_oldest_and_a_resume_from_before_is_too_late() -> None:
    buffer = _filled(ReplayBuffer(3, ReplayBudget(0)), ["a", "b", "c", "d", "e"])
    assert buffer.first_seq == 3 and len(buffer) == 3
    assert buffer.texts_after(2) == ["c", "d", "e"]
    assert buffer.texts_after(1) is None


def test_bytes_are_charged_to_the_connection_and_the_process_and_given_back() -> None:
    process = ReplayBudget(0)
    connection = ReplayBudget(0, process)
    one, two = ReplayBuffer(100, connection), ReplayBuffer(100, connection)
    _filled(one, ["abc", "de"])
    _filled(two, ["x" * 300])
    expected = delta_cost(3) + delta_cost(2) + delta_cost(300)
    assert delta_cost(300) - 300 > delta_cost(3) - 3  # a long length is an int of its own
    assert connection.used == process.used == one.size + two.size == expected
    one.release()
    assert connection.used == process.used == two.size
    two.release()
    assert connection.used == process.used == 0
    assert two.texts_after(0) is None  # nothing left to replay after a release


def test_the_connection_bound_makes_the_appending_stream_drop_its_own_oldest() -> None:
    connection = ReplayBudget(10 * delta_cost(1))
    quiet = _filled(ReplayBuffer(100, connection), ["q"] * 4)
    busy = _filled(ReplayBuffer(100, connection), ["b"] * 20)
    assert len(quiet) == 4 and quiet.texts_after(0) == ["q"] * 4  # untouched
    assert len(busy) == 6 and busy.first_seq == 15  # the newest that fit
    assert connection.used == 10 * delta_cost(1)


def test_a_stream_that_starts_after_the_bound_is_full_still_keeps_its_newest() -> None:
    connection = ReplayBudget(10 * delta_cost(1))
    first = _filled(ReplayBuffer(100, connection), ["a"] * 20)  # fills the bound alone
    assert len(first) == 10
    later = _filled(ReplayBuffer(100, connection), ["b"] * 20)
    # The largest gives way: both keep a window of their newest deltas, none is starved.
    assert len(first) == 5 and first.first_seq == 16
    assert len(later) == 5 and later.texts_after(15) == ["b"] * 5
    assert later.texts_after(0) is None and connection.used == 10 * delta_cost(1)


def test_the_process_bound_applies_across_connections() -> None:
    process = ReplayBudget(8 * delta_cost(1))
    first = _filled(ReplayBuffer(100, ReplayBudget(0, process)), ["a"] * 6)
    second = _filled(ReplayBuffer(100, ReplayBudget(0, process)), ["b"] * 5)
    assert len(first) == 6 and len(second) == 2 and second.first_seq == 4
    assert process.used == 8 * delta_cost(1)


def test_a_delta_larger_than_the_bound_is_not_kept() -> None:
    buffer = _filled(ReplayBuffer(100, ReplayBudget(64)), ["ok", "x" * 100])
    assert len(buffer) == 0 and buffer.first_seq == 3
    assert buffer.texts_after(2) == [] and buffer.texts_after(1) is None
    assert buffer.budget.used == 0


def test_acknowledged_deltas_are_dropped() -> None:
    buffer = _filled(ReplayBuffer(100, ReplayBudget(0)), ["a", "b", "c", "d"])
    buffer.discard_through(2)
    assert buffer.first_seq == 3 and buffer.texts_after(2) == ["c", "d"]
    assert buffer.budget.used == 2 * delta_cost(1)
    buffer.discard_through(10)
    assert len(buffer) == 0 and buffer.first_seq == 5 and buffer.budget.used == 0
    buffer.append(5, "e")  # the seqs go on where they were
    assert buffer.texts_after(4) == ["e"]


def test_the_newest_deltas_come_back_in_order() -> None:
    buffer = _filled(ReplayBuffer(3, ReplayBudget(0)), ["a", "bé", "c", "d"])
    assert buffer.newest(2) == ["c", "d"]
    assert buffer.newest(10) == ["bé", "c", "d"]  # only what is kept

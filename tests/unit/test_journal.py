"""The crash journal (sidecar.ledger.journal) and the start rows that only it holds: a stream
shorter than a second costs the database one row, and no row is ever only in a deleted segment."""

from __future__ import annotations

from pathlib import Path

import orjson

from sidecar.accounting.pricing import PriceBook
from sidecar.accounting.recorder import Recorder
from sidecar.accounting.stream import Outcome, StreamAccount
from sidecar.ledger.journal import Journal, absorb, segments
from sidecar.ledger.writer import Barrier, Row
from sidecar.telemetry.metrics import Metrics
from tests.unit.test_accounting import account


def _account(stream_id: str, t_start: float = 10.0) -> StreamAccount:
    return account(stream_id=stream_id, request_id="r-" + stream_id, t_start=t_start)


def _journaled(directory: Path) -> list[tuple[str, bool]]:
    """(stream id, final) of every row in the journal's segments, in order."""
    data = b"".join(path.read_bytes().rstrip(b"\0") for path in segments(directory, "j"))
    lines = data.splitlines()
    return [(row["v"]["id"], row["f"]) for row in map(orjson.loads, lines)]


def _setup(tmp_path: Path, segment_bytes: int = 1 << 20) -> tuple[Journal, Recorder, list]:
    queued: list[Row | Barrier] = []
    journal = Journal(tmp_path, "j", queued.append, segment_bytes)
    recorder = Recorder(
        Metrics(), journal.submit, PriceBook(), "i", lambda: 0.0, None, journal_only=journal.note
    )
    journal.on_rotate = recorder.submit_journaled
    return journal, recorder, queued


def test_a_short_stream_reaches_the_database_as_its_final_row_only(tmp_path: Path) -> None:
    _journal, recorder, queued = _setup(tmp_path)
    account = _account("s1")
    recorder.started(account)
    assert queued == [] and _journaled(tmp_path) == [("s1", False)]  # durable, not queued
    account.on_content(10.1, "tok")
    account.finish(Outcome.COMPLETED, 10.2)
    recorder.finished(account, 10.2)
    assert [(r.values["id"], r.final) for r in queued if isinstance(r, Row)] == [("s1", True)]
    assert _journaled(tmp_path) == [("s1", False), ("s1", True)]


def test_a_stream_running_a_second_gets_its_row_queued_even_when_idle(tmp_path: Path) -> None:
    _journal, recorder, queued = _setup(tmp_path)
    recorder.started(_account("s1", t_start=10.0))
    assert recorder.checkpoint_all(10.5) == 0 and queued == []  # younger than a second
    assert recorder.checkpoint_all(11.5) == 1  # idle (no token yet), but running: queued
    (row,) = queued
    assert isinstance(row, Row) and row.values["id"] == "s1" and not row.final
    assert recorder.checkpoint_all(12.5) == 0  # once


def test_a_full_segment_queues_its_journal_only_rows_before_it_may_be_deleted(
    tmp_path: Path,
) -> None:
    journal, recorder, queued = _setup(tmp_path, segment_bytes=2000)
    for stream_id in ("a", "b"):
        recorder.started(_account(stream_id))
    for n in range(20):  # other streams' rows until the segment is full
        journal.submit(Row("streams", {"id": f"x{n}", "pad": "p" * 100}))
        if any(isinstance(item, Barrier) for item in queued):
            break
    barrier_at = next(i for i, item in enumerate(queued) if isinstance(item, Barrier))
    before = [r.values["id"] for r in queued[:barrier_at] if isinstance(r, Row)]
    assert {"a", "b"} <= set(before)  # in the database before the segment goes
    first = segments(tmp_path, "j")[0]
    barrier = queued[barrier_at]
    assert isinstance(barrier, Barrier)
    barrier.then()
    assert not first.exists()
    assert {("a", False), ("b", False)} <= set(_journaled(tmp_path))  # and in the new segment


def test_a_row_larger_than_a_segment_is_journaled_whole(tmp_path: Path) -> None:
    journal, _recorder, queued = _setup(tmp_path, segment_bytes=4096)
    journal.submit(Row("streams", {"id": "big", "pad": "p" * 10_000}))
    journal.submit(Row("streams", {"id": "next"}))
    assert [i for i, _f in _journaled(tmp_path)] == ["big", "next"]
    assert len(queued) >= 2


def test_a_killed_runs_segments_reach_the_spool_without_padding_or_a_cut_line(
    tmp_path: Path,
) -> None:
    journal, recorder, _queued = _setup(tmp_path)
    recorder.started(_account("s1"))
    recorder.started(_account("s2"))
    # What a SIGKILL mid-copy leaves: the mapping's pages as they were (no close, no unlink).
    (segment,) = segments(tmp_path, "j")
    data = segment.read_bytes()
    end = data.index(b"\0")
    segment.write_bytes(data[: end - 10] + b"\0" * 100)  # the second row cut short
    spool = tmp_path / "spool.jsonl"
    assert absorb(tmp_path, "j", spool) > 0
    rows = [orjson.loads(line) for line in spool.read_bytes().splitlines()]
    assert [row["v"]["id"] for row in rows] == ["s1"]
    assert segments(tmp_path, "j") == []
    journal.close()

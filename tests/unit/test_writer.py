"""The ledger writer against a real SQLite file: batching, idempotent upserts, the spool."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from sidecar.ledger import db
from sidecar.ledger.models import Stream
from sidecar.ledger.writer import LedgerWriter, Row, read_spool


def stream(n: int, outcome: str | None = "completed", generated: int = 10) -> dict[str, Any]:
    now = datetime(2026, 11, 22, tzinfo=UTC)
    return {
        "id": f"s{n}",
        "session_id": None,
        "instance_id": "i",
        "request_id": f"r{n}",
        "model": "m",
        "tenant": "t",
        "ingress": "ws",
        "path": "/v1/chat/completions",
        "started_at": now,
        "ended_at": now if outcome else None,
        "outcome": outcome,
        "finish_reason": None,
        "error_code": None,
        "count_source": "usage",
        "prompt_tokens": 1,
        "generated_tokens": generated,
        "delivered_tokens": generated,
        "wasted_tokens": 0,
        "ttft_s": None,
        "duration_s": None,
        "price_key": None,
        "input_nusd_per_mtok": None,
        "output_nusd_per_mtok": None,
        "prompt_cost_nusd": None,
        "generated_cost_nusd": None,
        "wasted_cost_nusd": None,
        "trace_id": None,
    }


def rows_in(url: str) -> list[Any]:
    engine = db.make_engine(url)
    with engine.connect() as connection:
        return list(connection.execute(select(Stream.id, Stream.outcome, Stream.generated_tokens)))


def test_checkpoint_never_overwrites_a_final_row_and_replays_are_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    db.upgrade(url)
    writer = LedgerWriter(db.make_engine(url), tmp_path / "spool.jsonl", flush_interval=0.01)
    writer.start()
    writer.submit(Row("streams", stream(1, None, 3), final=False))
    writer.submit(Row("streams", stream(1, "completed", 9)))
    writer.submit(Row("streams", stream(1, None, 5), final=False))  # a late checkpoint
    writer.submit(Row("streams", stream(1, "completed", 9)))  # a replayed final row
    writer.close()
    assert rows_in(url) == [("s1", "completed", 9)]


def test_unreachable_database_spools_then_replays_exactly_once(tmp_path: Path) -> None:
    missing = tmp_path / "not-yet"
    url = f"sqlite:///{missing / 'l.db'}"  # its directory does not exist: writes fail
    spool = tmp_path / "spool.jsonl"
    writer = LedgerWriter(db.make_engine(url), spool, flush_interval=0.01, retry_interval=0.05)
    writer.start()
    for n in range(20):
        writer.submit(Row("streams", stream(n)))
    assert writer.wait_idle(5)
    assert writer.spooled_rows == 20 and writer.stats.errors >= 1
    assert len(read_spool(spool)) == 20
    os.mkdir(missing)
    db.upgrade(url)  # the database comes back
    writer.submit(Row("streams", stream(99)))
    writer.close()
    assert sorted(r[0] for r in rows_in(url)) == sorted([f"s{n}" for n in range(20)] + ["s99"])
    assert not spool.exists() and writer.spooled_rows == 0


def test_backlog_beyond_the_bound_goes_to_the_spool(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    db.upgrade(url)
    engine = db.make_engine(url)
    writer = LedgerWriter(engine, tmp_path / "spool.jsonl", batch_size=10, max_queue=50)
    for n in range(500):  # queued before the thread starts: a burst the database cannot absorb
        writer.submit(Row("streams", stream(n)))
    writer.start()
    writer.close()
    assert writer.stats.spooled > 0  # memory stayed bounded
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(Stream)).scalar() == 500


def test_interleaved_start_and_final_rows_take_one_statement_per_kind(tmp_path: Path) -> None:
    from sqlalchemy import event

    url = f"sqlite:///{tmp_path / 'l.db'}"
    db.upgrade(url)
    engine = db.make_engine(url)
    statements: list[int] = []
    event.listen(
        engine,
        "before_cursor_execute",
        lambda _conn, _cur, _sql, params, _ctx, many: statements.append(len(params) if many else 1),
    )
    writer = LedgerWriter(engine, tmp_path / "spool.jsonl", flush_interval=0.01)
    # As short streams produce them: start 1, start 2, end 1, start 3, end 2, checkpoint 3.
    batch = [
        Row("streams", stream(1, None, 0), final=False),
        Row("streams", stream(2, None, 0), final=False),
        Row("streams", stream(1, generated=5)),
        Row("streams", stream(3, None, 0), final=False),
        Row("streams", stream(2, generated=7)),
        Row("streams", stream(3, None, 4), final=False),
    ]
    assert writer._write(batch)
    # stream 3's latest checkpoint; the two final rows; their one hour's rollup marked stale
    assert statements == [1, 2, 1]
    assert sorted(rows_in(url)) == [("s1", "completed", 5), ("s2", "completed", 7), ("s3", None, 4)]

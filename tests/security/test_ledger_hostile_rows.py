"""F1: one hostile request must not stop the ledger for everyone (Hardening).

A row the database refuses is isolated from its batch: the other rows land, the refused one
goes to the dead-letter file with its error, `sidecar_ledger_dead_letter_rows_total` counts it
and the writer reports itself degraded. The same on spool replay after a restart. Both
databases; client-chosen text is bounded the same way on both before they see it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, select

from sidecar.ledger import db
from sidecar.ledger.models import Stream
from sidecar.ledger.writer import LedgerGauges, LedgerWriter, Row
from sidecar.telemetry.metrics import Metrics
from tests.ledger.conftest import BACKENDS, _new_url
from tests.unit.test_writer import stream

HOSTILE = {
    # Still refused after cleaning: a NOT NULL column without a value, a count beyond BIGINT.
    "null_model": {"model": None},
    "huge_count": {"prompt_tokens": 2**70},
}


@pytest.fixture(params=BACKENDS)
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    url = _new_url(request.param, request, tmp_path)
    db.upgrade(url)
    return url


@pytest.fixture
def engine(ledger: str) -> Iterator[Engine]:
    engine = db.make_engine(ledger)
    yield engine
    engine.dispose()


def ids_in(url: str) -> dict[str, str]:
    reader = db.make_engine(url)
    with reader.connect() as connection:
        found = dict(connection.execute(select(Stream.id, Stream.model)).all())
    reader.dispose()
    return {str(k): str(v) for k, v in found.items()}


def batch_with_one_hostile(change: dict[str, Any]) -> list[Row]:
    rows = [Row("streams", stream(n)) for n in range(50)]
    rows.insert(25, Row("streams", {**stream(999), **change}))
    return rows


def dead_letters(writer: LedgerWriter) -> list[dict[str, Any]]:
    text = writer.dead_letter_path.read_bytes()
    return [orjson.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize("hostile", sorted(HOSTILE))
def test_a_refused_row_is_set_aside_and_its_batch_lands(
    ledger: str, engine: Engine, tmp_path: Path, hostile: str
) -> None:
    metrics = Metrics(CollectorRegistry())
    writer = LedgerWriter(
        engine,
        tmp_path / "spool.jsonl",
        flush_interval=0.01,
        batch_size=500,
        on_change=LedgerGauges(metrics),
    )
    writer.start()
    for row in batch_with_one_hostile(HOSTILE[hostile]):
        writer.submit(row)
    assert writer.wait_idle(10)
    writer.submit(Row("streams", stream(1000)))  # the writer goes on after it
    assert writer.wait_idle(10)
    writer.close()
    assert set(ids_in(ledger)) == {f"s{n}" for n in [*range(50), 1000]}
    assert writer.spooled_rows == 0 and not writer.spool_path.exists()
    [dead] = dead_letters(writer)
    assert dead["v"]["id"] == "s999" and dead["t"] == "streams"
    assert dead["error"].split(":")[0] in {"IntegrityError", "DataError", "OverflowError"}
    registry = metrics.registry
    assert registry.get_sample_value("sidecar_ledger_dead_letter_rows_total") == 1.0
    assert writer.health() == "ledger_dead_letters"


def test_spool_replay_after_a_restart_sets_the_refused_row_aside(
    ledger: str, engine: Engine, tmp_path: Path
) -> None:
    spool = tmp_path / "spool.jsonl"
    spool.write_bytes(
        b"".join(
            orjson.dumps({"t": r.table, "f": r.final, "v": r.values}) + b"\n"
            for r in batch_with_one_hostile(HOSTILE["null_model"])
        )
    )
    writer = LedgerWriter(engine, spool, batch_size=20)
    assert writer.spooled_rows == 51
    writer.replay_now()
    assert set(ids_in(ledger)) == {f"s{n}" for n in range(50)}
    assert not spool.exists() and writer.spooled_rows == 0
    assert [d["v"]["id"] for d in dead_letters(writer)] == ["s999"]
    assert writer.stats.dead_letters == 1


def test_long_and_nul_names_are_bounded_alike_on_both_databases(
    ledger: str, engine: Engine, tmp_path: Path
) -> None:
    """A spool written before the rule existed (a 10,000-character model, a NUL) replays."""
    rows = [
        Row("streams", {**stream(1), "model": "m" * 10_000}),
        Row("streams", {**stream(2), "model": "a\x00b", "finish_reason": "x" * 500}),
        Row("streams", stream(3)),
    ]
    writer = LedgerWriter(engine, tmp_path / "spool.jsonl", flush_interval=0.01)
    writer.start()
    for row in rows:
        writer.submit(row)
    assert writer.wait_idle(10)
    writer.close()
    models = ids_in(ledger)
    assert models == {"s1": "m" * 127 + "…", "s2": "ab", "s3": "m"}
    assert not writer.dead_letter_path.exists() and writer.health() is None

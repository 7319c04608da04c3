"""Rollups: a report read from them equals the report over every stream row, on SQLite and
PostgreSQL, whatever the writes did (property-based: checkpoints, final rows, replays, crash
recovery, a row closed `interrupted` and later overwritten by its real final row, price
backfills, refreshes at any point, GPU-hour prices)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, func, insert, select

from sidecar.accounting.hourly import HourlyBook, HourlyPrice
from sidecar.cli.db import command as db_command
from sidecar.cli.report import command as report_command
from sidecar.errors import ConfigError
from sidecar.ledger import db
from sidecar.ledger.backfill import backfill
from sidecar.ledger.facts import ROLLUP_DIMENSIONS, report_plan, snapshot
from sidecar.ledger.models import (
    ModelRollup,
    Price,
    RollupMark,
    RollupState,
    Session,
    Stream,
    StreamRollup,
)
from sidecar.ledger.query import ReportQuery
from sidecar.ledger.recovery import close_interrupted
from sidecar.ledger.report import run_report
from sidecar.ledger.retention import Pruned, prune
from sidecar.ledger.rollplan import HOUR, floor_hour
from sidecar.ledger.rollup import _marks_within, _recompute, keep_rolled_up, mark_stale, refresh
from sidecar.ledger.writer import LedgerWriter, Row
from tests.ledger.conftest import (
    BACKENDS,
    SESSIONS,
    STREAMS,
    _new_url,
    at,
    engine_for,
    fill,
    stream,
)
from tests.support.timeouts import scaled

BASE = at(20, 0)  # streams start over the following three days
MINUTES = 3 * 24 * 60
MODELS = ("big", "small", "mystery")  # mystery has no price until a backfill gives it one
OUTCOMES = ("completed", "client_gone", "client_cancelled", "timeout")
DIMS = sorted(ROLLUP_DIMENSIONS)


@pytest.fixture(scope="module", params=BACKENDS)
def ledger(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Engine, Path]]:
    tmp = tmp_path_factory.mktemp("rollups")
    url = _new_url(request.param, request, tmp)
    db.upgrade(url)
    engine = db.make_engine(url)
    yield engine, tmp
    engine.dispose()


def clear(engine: Engine) -> None:
    with engine.begin() as connection:
        for table in (Stream, Session, StreamRollup, ModelRollup, RollupMark, Price):
            connection.execute(delete(table))
        connection.execute(
            RollupState.__table__.update().values(rolled_until=None, pruned_before=None)
        )


# One stream's life: (start minute, model, tenant, instance, ingress, outcome, tokens)
streams = st.tuples(
    st.integers(0, MINUTES - 1),
    st.sampled_from(MODELS),
    st.sampled_from(("acme", "globex", "initech")),
    st.sampled_from(("i-1", "i-2")),
    st.sampled_from(("ws", "http")),
    st.sampled_from(OUTCOMES),
    st.tuples(st.integers(0, 5000), st.integers(0, 3000), st.integers(0, 3000)),
)
# What happens to stream n (an index into the drawn streams) or to the ledger as a whole.
operations = st.one_of(
    st.tuples(st.just("checkpoint"), st.integers(0, 29)),
    st.tuples(st.just("final"), st.integers(0, 29)),
    st.tuples(st.just("final"), st.integers(0, 29)),  # twice as likely
    st.tuples(st.just("replay"), st.integers(0, 29)),
    st.tuples(st.just("recover"), st.sampled_from(("i-1", "i-2"))),
    st.tuples(st.just("backfill"), st.just(0)),
    st.tuples(st.just("refresh"), st.integers(0, MINUTES + 600)),
    st.tuples(st.just("flush"), st.just(0)),
)
queries = st.tuples(
    st.one_of(st.none(), st.integers(-60, MINUTES)),  # since, minutes after BASE
    st.one_of(st.none(), st.integers(1, MINUTES + 120)),  # until, minutes after since
    st.lists(st.sampled_from(DIMS), unique=True, max_size=3),
    st.booleans(),  # GPU-hour prices
)


def row_of(n: int, drawn: tuple[Any, ...], final: bool) -> dict[str, Any]:
    minute, model, tenant, instance, ingress, outcome, (prompt, generated, delivered) = drawn
    delivered = min(delivered, generated)
    if not final:  # a checkpoint: part of the tokens, no outcome yet
        generated, delivered = generated // 2, delivered // 2
    return stream(
        n, model, tenant, outcome if final else None, (prompt, generated, delivered),
        BASE + timedelta(minutes=minute), instance=instance, ingress=ingress,
        session=f"s{n % 4}",
    )  # fmt: skip


def apply(engine: Engine, tmp: Path, drawn: list[Any], ops: list[tuple[str, Any]]) -> None:
    writer = LedgerWriter(engine, tmp / "spool.jsonl")
    batch: list[Row] = []
    for op, arg in ops:
        if op in ("checkpoint", "final", "replay") and arg < len(drawn):
            batch.append(
                Row("streams", row_of(arg, drawn[arg], op != "checkpoint"), op != "checkpoint")
            )
            continue
        if batch:  # everything else sees the rows written so far
            assert writer._write(batch)
            batch = []
        if op == "recover":
            close_interrupted(engine, arg, BASE + timedelta(days=4))
        elif op == "backfill":
            with engine.begin() as connection:
                if (
                    connection.execute(select(Price).where(Price.model == "mystery")).first()
                    is None
                ):
                    connection.execute(insert(Price).values(
                        model="mystery", input_per_mtok="0.3", output_per_mtok="0.9",
                        cached_input_per_mtok=None, effective_from=BASE, source="test",
                    ))  # fmt: skip
            backfill(engine, "mystery", None, None, "test", BASE + timedelta(days=4))
        elif op == "refresh":
            refresh(engine, BASE + timedelta(minutes=arg))
    if batch:
        assert writer._write(batch)


def query_of(drawn: tuple[Any, ...]) -> ReportQuery:
    since_m, length, by, hourly = drawn
    since = None if since_m is None else BASE + timedelta(minutes=since_m)
    until = None if length is None else (since or BASE) + timedelta(minutes=length)
    book = HourlyBook(
        [
            HourlyPrice("instance", "i-1", Decimal("2.5"), BASE),
            HourlyPrice("model", "mystery", Decimal("1.25"), BASE, capacity_tokens_per_hour=9000),
        ]
        if hourly
        else []
    )
    end = until or BASE + timedelta(days=4)
    return ReportQuery(by=tuple(by), since=since, until=until, hourly=book, now=end)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    drawn=st.lists(streams, min_size=1, max_size=30),
    ops=st.lists(operations, min_size=1, max_size=60),
    asked=st.lists(queries, min_size=1, max_size=3),
)
def test_a_report_from_rollups_equals_the_report_from_rows(
    ledger: tuple[Engine, Path], drawn: list[Any], ops: list[tuple[str, Any]], asked: list[Any]
) -> None:
    engine, tmp = ledger
    clear(engine)
    apply(engine, tmp, drawn, ops)
    for query in map(query_of, asked):
        assert run_report(engine, query) == run_report(engine, replace(query, rollups=False))


def test_rollups_are_what_the_report_reads(ledger: tuple[Engine, Path]) -> None:
    """After a refresh the report sums the rollups: rows deleted behind their back (as a
    retention job would) no longer change the bill, while a stale hour is read row by row."""
    engine, tmp = ledger
    clear(engine)
    drawn = [(m, "big", "acme", "i-1", "ws", "completed", (100, 10, 10)) for m in (30, 90, 150)]
    apply(engine, tmp, drawn, [("final", 0), ("final", 1), ("final", 2)])
    done = refresh(engine, BASE + timedelta(hours=5))
    assert (done.hours, done.rolled_until) == (4, BASE + timedelta(hours=4))
    query = ReportQuery(by=("hour",), since=BASE, until=BASE + timedelta(hours=6))
    with engine.connect() as connection:
        parts = report_plan(snapshot(connection), query)
    assert parts.rollup == ((BASE, BASE + timedelta(hours=4)),)
    assert parts.raw == ((BASE + timedelta(hours=4), BASE + timedelta(hours=6)),)
    with engine.begin() as connection:
        connection.execute(delete(Stream))  # raw rows gone; the rollups keep the bill
    report = run_report(engine, query)
    assert [(r["hour"], r["streams"], r["prompt_tokens"]) for r in report["rows"]] == [
        ("2026-11-20T00:00", 1, 100), ("2026-11-20T01:00", 1, 100), ("2026-11-20T02:00", 1, 100)
    ]  # fmt: skip
    # A late final row in hour 1 marks it stale: that hour is read from its rows (now only the
    # late one) until a refresh rolls it up again.
    apply(engine, tmp, [(75, "big", "acme", "i-2", "ws", "completed", (7, 1, 1))], [("final", 0)])
    hours = [
        (r["hour"], r["streams"], r["prompt_tokens"]) for r in run_report(engine, query)["rows"]
    ]
    assert hours == [
        ("2026-11-20T00:00", 1, 100), ("2026-11-20T01:00", 1, 7), ("2026-11-20T02:00", 1, 100)
    ]  # fmt: skip
    assert refresh(engine, BASE + timedelta(hours=5)).hours == 1
    with engine.connect() as connection:
        assert report_plan(snapshot(connection), query).rollup == (
            (BASE, BASE + timedelta(hours=4)),
        )
    assert [
        (r["hour"], r["streams"], r["prompt_tokens"]) for r in run_report(engine, query)["rows"]
    ] == hours


def test_upgrade_from_0004_keeps_the_bill_and_rolls_up(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A ledger written before rollups: the same report right after the upgrade (no rollup
    yet: every row is read), after the first refresh, and down again to 0004."""
    for backend in BACKENDS:
        url = _new_url(backend, request, tmp_path / backend)
        (tmp_path / backend).mkdir(exist_ok=True)
        db.upgrade(url, "0004")
        engine = db.make_engine(url)
        fill(engine, STREAMS, SESSIONS)
        query = ReportQuery(by=("model", "day"), since=at(1, 0, month=1), until=at(23, 0))
        before = run_report(engine, replace(query, rollups=False))
        db.upgrade(url)
        assert run_report(engine, query) == before
        assert refresh(engine, at(23, 0)).rolled_until == at(22, 23)
        with engine.connect() as connection:
            assert report_plan(snapshot(connection), query).rollup
        assert run_report(engine, query) == before
        db.downgrade(url, "0004")
        engine.dispose()


def test_db_rollup_command_and_report_by_instance(empty_ledger: str, tmp_path: Path) -> None:
    engine = db.make_engine(empty_ledger)
    drawn = [
        (30, "big", "acme", "i-1", "ws", "completed", (100, 10, 10)),
        (40, "big", "acme", "i-2", "ws", "client_gone", (100, 10, 4)),
        (50, "small", "acme", "i-2", "http", "completed", (10, 10, 10)),
    ]
    apply(engine, tmp_path, drawn, [("final", 0), ("final", 1), ("final", 2)])
    engine.dispose()
    runner = CliRunner()
    result = runner.invoke(db_command, ["rollup", "--db", empty_ledger])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("rolled up ")
    assert " hours (3 rows); rolled up until " in result.output  # one row per group
    args = ["--db", empty_ledger, "--since", "2026-11-20", "--by", "instance", "--format", "csv"]
    lines = runner.invoke(report_command, args).output.splitlines()
    assert [line.split(",")[:3] for line in lines] == [
        ["instance", "streams", "prompt_tokens"],
        ["i-1", "1", "100"],
        ["i-2", "2", "110"],
    ]
    again = runner.invoke(db_command, ["rollup", "--db", empty_ledger, "--rebuild", "all"])
    assert again.exit_code == 0, again.output
    bad = runner.invoke(db_command, ["rollup", "--db", empty_ledger, "--rebuild", "lately"])
    assert bad.exit_code != 0
    pruned = runner.invoke(db_command, ["prune", "--db", empty_ledger, "--before", "2026-11-20"])
    assert pruned.output == (
        "deleted 0 finished streams started, and 0 sessions ended, before 2026-11-20 00:00 UTC\n"
    )


def test_prune_keeps_the_bill_and_freezes_the_pruned_hours(
    ledger: tuple[Engine, Path],
) -> None:
    engine, tmp = ledger
    clear(engine)
    drawn = [
        (m, model, "acme", "i-1", "ws", "completed", (100, 10, 10))
        for m, model in ((30, "big"), (90, "small"), (150, "big"), (1500, "big"))
    ]
    apply(engine, tmp, drawn, [("checkpoint", 0), ("final", 1), ("final", 2), ("final", 3)])
    query = ReportQuery(by=("model", "day"), since=BASE, until=BASE + timedelta(days=2))
    before = run_report(engine, replace(query, rollups=False))
    now = BASE + timedelta(days=1, hours=5)
    with pytest.raises(ConfigError, match="cover only up to"):
        prune(engine, BASE + timedelta(days=2), now)
    with pytest.raises(ConfigError, match="whole hour"):
        prune(engine, BASE + timedelta(minutes=90), now)
    with pytest.raises(ConfigError, match="1 streams that started before it have no outcome"):
        prune(engine, BASE + timedelta(hours=3), now)  # s0 would be lost when it finishes
    apply(engine, tmp, drawn, [("final", 0)])
    before = run_report(engine, replace(query, rollups=False))
    assert prune(engine, BASE + timedelta(hours=3), now, dry_run=True) == Pruned(3, 0)
    assert prune(engine, BASE + timedelta(hours=3), now) == Pruned(3, 0)
    with engine.connect() as connection:
        assert connection.execute(select(Stream.id)).scalars().all() == ["s3"]
    assert run_report(engine, query) == before
    # A late final row for a pruned hour cannot be honoured: the bill there stays as pruned.
    late = (40, "big", "acme", "i-2", "ws", "completed", (1, 1, 1))
    assert LedgerWriter(engine, tmp / "spool.jsonl")._write([Row("streams", row_of(9, late, True))])
    assert run_report(engine, query) == before
    refresh(engine, now, rebuild_since=(None, None))  # not even a rebuild recomputes them
    assert run_report(engine, query) == before


def assert_same_bill(engine: Engine, query: ReportQuery) -> dict[str, Any]:
    report = run_report(engine, query)
    assert report == run_report(engine, replace(query, rollups=False))
    with engine.connect() as connection:
        assert report_plan(snapshot(connection), query).rollup, "the rollups were read"
    return report


def test_a_crashed_stream_is_counted_once_interrupted_then_once_final(
    ledger: tuple[Engine, Path],
) -> None:
    engine, tmp = ledger
    clear(engine)
    drawn = [(30, "big", "acme", "i-1", "ws", "completed", (100, 40, 30))]
    later = BASE + timedelta(hours=5)
    query = ReportQuery(by=("outcome",), since=BASE, until=BASE + timedelta(hours=4))
    apply(engine, tmp, drawn, [("checkpoint", 0)])
    refresh(engine, later)  # hour 0 rolled up while the stream runs: read from its row
    assert [
        (r["outcome"], r["generated_tokens"]) for r in assert_same_bill(engine, query)["rows"]
    ] == [("running", 20)]
    close_interrupted(engine, "i-1", later)  # the replica restarts after a crash
    assert [r["outcome"] for r in assert_same_bill(engine, query)["rows"]] == ["interrupted"]
    refresh(engine, later)
    assert [r["outcome"] for r in assert_same_bill(engine, query)["rows"]] == ["interrupted"]
    apply(engine, tmp, drawn, [("final", 0), ("replay", 0)])  # its spool replays the real end
    refresh(engine, later)
    rows = assert_same_bill(engine, query)["rows"]
    assert [(r["outcome"], r["streams"], r["generated_tokens"]) for r in rows] == [
        ("completed", 1, 40)
    ]


def test_a_backfill_prices_an_hour_already_rolled_up(ledger: tuple[Engine, Path]) -> None:
    engine, tmp = ledger
    clear(engine)
    drawn = [(30, "mystery", "acme", "i-1", "ws", "completed", (1_000_000, 1_000_000, 1_000_000))]
    query = ReportQuery(by=("model",), since=BASE, until=BASE + timedelta(hours=4))
    apply(engine, tmp, drawn, [("final", 0), ("refresh", 300)])
    assert assert_same_bill(engine, query)["rows"][0]["cost_usd"] is None  # unknown, not zero
    apply(engine, tmp, drawn, [("backfill", 0)])
    assert assert_same_bill(engine, query)["rows"][0]["cost_usd"] == Decimal("1.2")
    refresh(engine, BASE + timedelta(hours=5))
    assert assert_same_bill(engine, query)["rows"][0]["cost_usd"] == Decimal("1.2")


def test_a_change_committed_during_a_refresh_keeps_its_mark(ledger: tuple[Engine, Path]) -> None:
    """The refresh deletes the marks it read, at the versions it read: a writer that marked the
    hour again after that read (here, between the read and the recompute) leaves it stale."""
    engine, tmp = ledger
    clear(engine)
    drawn = [(30, "big", "acme", "i-1", "ws", "completed", (1, 1, 1))]
    apply(engine, tmp, drawn, [("final", 0)])
    hour = [(BASE, BASE + HOUR)]
    with engine.begin() as connection:
        seen = _marks_within(connection, hour)
        mark_stale(connection, [(BASE, "i-1")])  # a writer's change to the hour, committed now
        _recompute(connection, hour, seen)
        left = connection.execute(select(RollupMark.hour, RollupMark.version)).all()
    assert [(floor_hour(h), v) for h, v in left] == [(BASE, 2)]
    with engine.begin() as connection:
        _recompute(connection, hour, _marks_within(connection, hour))
        assert connection.execute(select(RollupMark.hour)).all() == []


def test_serve_keeps_the_rollups_up_to_date_and_survives_a_failed_refresh(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`keep_rolled_up` (serve's task): refreshes on its interval; an unreachable ledger is a
    warning, and the next round tries again."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    db.upgrade(url)
    engine = db.make_engine(url)
    drawn = [(30, "big", "acme", "i-1", "ws", "completed", (1, 1, 1))]
    apply(engine, tmp_path, drawn, [("final", 0)])

    async def rounds() -> None:
        task = asyncio.create_task(keep_rolled_up(engine, interval=0.05))
        deadline = asyncio.get_running_loop().time() + scaled(10)
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
            with engine.connect() as connection:
                if connection.execute(select(RollupState.rolled_until)).scalar() is not None:
                    break
        with engine.begin() as connection:
            connection.execute(RollupState.__table__.delete())  # the next refresh fails
        await asyncio.sleep(0.3)
        assert not task.done()
        task.cancel()

    asyncio.run(rounds())
    engine.dispose()
    with engine_for(url) as again, again.connect() as connection:
        assert connection.execute(select(func.count()).select_from(StreamRollup)).scalar() == 1
    assert "no rollup_state row" in caplog.text

"""A fleet on one PostgreSQL through PgBouncer in transaction mode (docs/fleet.md): two
replicas' writers, the rollup refresh and `sidecar report --by instance` all go through the
pooler with the documented URL, and the bill equals the one read from the rows directly."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner

from sidecar.cli.report import command as report_command
from sidecar.ledger import db
from sidecar.ledger.query import ReportQuery
from sidecar.ledger.report import run_report
from sidecar.ledger.rollup import refresh
from sidecar.ledger.writer import LedgerWriter, Row
from tests.ledger.conftest import at, stream
from tests.support.pgbouncer import PgBouncerUnavailable, pgbouncer
from tests.support.postgres import PostgresCluster
from tests.support.unavailable import service_unavailable

STREAMS_PER_REPLICA = 120


def test_two_replicas_share_one_database_through_pgbouncer(
    postgres_cluster: PostgresCluster, tmp_path: Path
) -> None:
    direct = postgres_cluster.fresh_database("fleet")
    name = direct.rsplit("/", 1)[1]
    try:
        bouncer = pgbouncer(postgres_cluster, pool=2)
        port = bouncer.__enter__()
    except PgBouncerUnavailable as exc:
        service_unavailable(str(exc))
    try:
        pooled = f"postgresql+psycopg://postgres@127.0.0.1:{port}/{name}?prepare_threshold=none"
        db.upgrade(pooled)
        engines = [db.make_engine(pooled) for _ in range(2)]
        writers = [
            LedgerWriter(engine, tmp_path / f"spool-{n}.jsonl", flush_interval=0.01)
            for n, engine in enumerate(engines)
        ]
        for writer in writers:
            writer.start()
        for n in range(STREAMS_PER_REPLICA):  # both replicas at once, over several hours
            for r, writer in enumerate(writers):
                row = stream(
                    2 * n + r, ("big", "small")[n % 2], "acme", "completed", (10, 5 + n, 5),
                    at(20, 0) + timedelta(minutes=7 * n), instance=f"replica-{r}",
                )  # fmt: skip
                writer.submit(Row("streams", {**row, "outcome": None}, final=False))
                writer.submit(Row("streams", row))
        for writer in writers:
            writer.close()
            assert writer.stats.errors == 0 and writer.stats.spooled == 0
        done = refresh(engines[0], at(21, 0))
        assert done.rows > 0
        args = ["--db", pooled, "--since", "2026-11-19", "--by", "instance", "--format", "json"]
        result = CliRunner().invoke(report_command, args)
        assert result.exit_code == 0, result.output
        rows = json.loads(result.output)["rows"]
        assert [(r["instance"], r["streams"]) for r in rows] == [
            ("replica-0", STREAMS_PER_REPLICA),
            ("replica-1", STREAMS_PER_REPLICA),
        ]
        engine = db.make_engine(direct)
        query = ReportQuery(by=("instance", "model", "day"), since=at(19, 0), until=at(22, 0))
        raw = run_report(engine, replace(query, rollups=False))
        assert run_report(engines[1], query) == raw
        for each in (engine, *engines):
            each.dispose()
    finally:
        bouncer.__exit__(None, None, None)

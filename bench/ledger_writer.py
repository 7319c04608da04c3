"""Ledger writer throughput: how many stream rows per second reach the database?

    .venv/bin/python -m bench.ledger_writer                  # SQLite and a throwaway PostgreSQL
    .venv/bin/python -m bench.ledger_writer --rows 200000 --pg-url postgresql+psycopg://me@db/x

Submits final stream rows (the shape `serve` writes) to a real `LedgerWriter` as fast as the
caller can, and times until every row is committed. Target (issue 4): ≥ 10,000 rows/s into
PostgreSQL. The caller's side (`submit`) is also timed: it is what the relay pays per stream.

`--aged 300000` instead measures CPU per row (the whole process: caller and writer thread) for
20,000 rows into an empty SQLite ledger and again after that many rows, with random (UUIDv4)
stream ids and with the time-ordered ids the sidecar uses (sidecar/accounting/ids.py).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sidecar.accounting.ids import time_ordered_id
from sidecar.ledger import db
from sidecar.ledger.writer import LedgerWriter, Row


def row(n: int, now: datetime) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "session_id": uuid.uuid4().hex,
        "instance_id": "bench",
        "request_id": f"r{n}",
        "model": f"model-{n % 8}",
        "tenant": f"tenant-{n % 50}",
        "ingress": "ws",
        "path": "/v1/chat/completions",
        "started_at": now,
        "ended_at": now,
        "outcome": "completed",
        "finish_reason": "stop",
        "error_code": None,
        "count_source": "usage",
        "prompt_tokens": 900,
        "generated_tokens": 130,
        "delivered_tokens": 120,
        "wasted_tokens": 10,
        "ttft_s": 0.2,
        "duration_s": 3.1,
        "price_key": "model@2026-01-01T00:00:00+00:00",
        "input_nusd_per_mtok": 200_000_000,
        "output_nusd_per_mtok": 600_000_000,
        "prompt_cost_nusd": 180_000,
        "generated_cost_nusd": 78_000,
        "wasted_cost_nusd": 6_000,
        "trace_id": None,
    }


@contextmanager
def started_writer(url: str, spool_dir: str) -> Iterator[LedgerWriter]:
    """A migrated ledger at `url` and a running writer; closed (everything written) on exit."""
    db.upgrade(url)
    engine = db.make_engine(url)
    writer = LedgerWriter(engine, Path(spool_dir) / "spool.jsonl", batch_size=1000)
    writer.start()
    try:
        yield writer
    finally:
        writer.close(timeout=600)
        engine.dispose()


def measure(url: str, rows: int) -> tuple[float, float]:
    """(rows per second committed, microseconds per submit on the caller's side)."""
    with tempfile.TemporaryDirectory() as spool_dir, started_writer(url, spool_dir) as writer:
        now = datetime.now(UTC)
        prepared = [Row("streams", row(n, now)) for n in range(rows)]
        start = time.perf_counter()
        for item in prepared:
            writer.submit(item)
        submitted = time.perf_counter()
        writer.close(timeout=600)
        done = time.perf_counter()
        assert writer.stats.written == rows and not writer.stats.errors, writer.stats
    return rows / (done - start), (submitted - start) / rows * 1e6


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def aged(rows_before: int, ordered: bool, batch: int = 20_000) -> tuple[float, float]:
    """CPU µs per row for `batch` rows into an empty ledger, then after `rows_before` rows.
    Sessions as the sidecar makes them: 20 streams share a session id."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        started_writer(f"sqlite:///{tmp}/aged.db", tmp) as writer,
    ):
        now, written, session = datetime.now(UTC), 0, ""

        def write(count: int) -> float:
            nonlocal written, session
            rows = []
            for n in range(written, written + count):
                if n % 20 == 0:
                    session = time_ordered_id() if ordered else uuid.uuid4().hex
                values = row(n, now) | {"session_id": session}
                if ordered:
                    values["id"] = time_ordered_id()
                rows.append(Row("streams", values))
            written += count
            start = _cpu()
            for item in rows:
                writer.submit(item)
            while writer.stats.written < written:
                time.sleep(0.005)
            return (_cpu() - start) / count * 1e6

        empty = write(batch)
        for _ in range(rows_before // batch):
            write(batch)
        later = write(batch)
    return empty, later


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pg-url", default=None)
    parser.add_argument("--backend", choices=["both", "sqlite", "postgresql"], default="both")
    parser.add_argument("--aged", type=int, default=None, metavar="ROWS")
    args = parser.parse_args()
    if args.aged:
        print(f"| stream ids | CPU µs per row, empty ledger | after {args.aged:,} rows |")
        print("|---|---:|---:|")
        for ordered in (False, True):
            runs = [aged(args.aged, ordered) for _ in range(args.repeat)]
            empty = statistics.median(r[0] for r in runs)
            later = statistics.median(r[1] for r in runs)
            name = "time-ordered (UUIDv7 layout)" if ordered else "random (UUIDv4)"
            print(f"| {name} | {empty:.1f} | {later:.1f} |")
        return
    results: dict[str, list[tuple[float, float]]] = {}
    if args.backend in ("both", "sqlite"):
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                results.setdefault("sqlite", []).append(
                    measure(f"sqlite:///{tmp}/bench.db", args.rows)
                )
    if args.backend in ("both", "postgresql"):
        from bench.report_speed import postgres

        with postgres(args.pg_url) as (url, _dsn):
            for n in range(args.repeat):
                from sqlalchemy import create_engine, text

                engine = create_engine(url, isolation_level="AUTOCOMMIT")
                with engine.connect() as connection:
                    connection.execute(text(f"DROP DATABASE IF EXISTS writer{n}"))
                    connection.execute(text(f"CREATE DATABASE writer{n}"))
                engine.dispose()
                target = url.rsplit("/", 1)[0] + f"/writer{n}"
                results.setdefault("postgresql", []).append(measure(target, args.rows))
    for backend, runs in results.items():
        rates = [r for r, _ in runs]
        submit = [s for _, s in runs]
        print(
            f"{backend:10s} {args.rows} rows x {len(runs)}: median {statistics.median(rates):,.0f}"
            f" rows/s (min {min(rates):,.0f}, max {max(rates):,.0f}); submit "
            f"{statistics.median(submit):.2f} µs/row on the caller's side"
        )


if __name__ == "__main__":
    main()

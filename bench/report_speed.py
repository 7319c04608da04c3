"""How fast is `sidecar report --since 30d --by model,day` over a million ledger rows?

    .venv/bin/python -m bench.report_speed                 # SQLite and a throwaway PostgreSQL
    .venv/bin/python -m bench.report_speed --backend sqlite --rows 200000
    .venv/bin/python -m bench.report_speed --pg-url postgresql+psycopg://me@db/scratch

Fills the ledger with synthetic streams (30 days, 8 models, 200 tenants, 10 streams per session,
one model per session)
in bulk (one executemany on SQLite, COPY on PostgreSQL), then runs the real command in a fresh
process a few times and prints the wall times. Without --pg-url a private PostgreSQL cluster is
started from the Debian server binaries (tests/support/postgres.py) and removed afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from sidecar.ledger import db

COMMAND = ("report", "--since", "30d", "--by", "model,day")
MODELS = [f"model-{n}" for n in range(8)]
OUTCOMES = ["completed"] * 85 + ["client_gone"] * 8 + ["client_cancelled"] * 5 + ["timeout"] * 2
STREAM_COLUMNS = (
    "id", "session_id", "instance_id", "request_id", "model", "tenant", "ingress", "path",
    "started_at", "ended_at", "outcome", "finish_reason", "error_code", "count_source",
    "prompt_tokens", "generated_tokens", "delivered_tokens", "wasted_tokens", "ttft_s",
    "duration_s", "price_key", "input_nusd_per_mtok", "output_nusd_per_mtok",
    "prompt_cost_nusd", "generated_cost_nusd", "wasted_cost_nusd", "trace_id",
)  # fmt: skip
SESSION_COLUMNS = (
    "id", "instance_id", "tenant", "ingress", "client_addr", "started_at", "ended_at",
    "disconnect_reason", "streams", "heartbeat_rtt_p50_s", "heartbeat_rtt_max_s",
    "heartbeats_missed",
)  # fmt: skip
PER_SESSION = 10
# Proposed for the ledger migration (PostgreSQL only): the planner then knows how few days and
# hours there are and aggregates in parallel with a small hash table instead of sorting a
# million rows. The expressions are the ones `sidecar.ledger.report` groups by.
PG_STATISTICS = (
    "CREATE STATISTICS IF NOT EXISTS st_streams_utc_day "
    "ON ((timezone('UTC', started_at))::date) FROM streams",
    "CREATE STATISTICS IF NOT EXISTS st_streams_utc_hour "
    "ON (date_trunc('hour', timezone('UTC', started_at))) FROM streams",
)


def synthetic(rows: int, now: datetime, seed: int = 1) -> Iterator[tuple[str, tuple[object, ...]]]:
    """("sessions" | "streams", row) tuples, deterministic for a seed."""
    rng = random.Random(seed)
    span = timedelta(days=29, hours=23).total_seconds()
    for s in range(-(-rows // PER_SESSION)):
        tenant = f"tenant-{int(rng.paretovariate(1.2)) % 200}"
        model = MODELS[rng.randrange(len(MODELS))]  # a session talks to one model
        ingress = "ws" if rng.random() < 0.8 else "http"
        start = now - timedelta(seconds=rng.random() * span)
        rtt = round(rng.lognormvariate(-4, 0.5), 6)
        sid = f"sess{s:09d}"
        yield "sessions", (sid, "bench", tenant, ingress, None, start, start, "closed",
                           PER_SESSION, rtt, rtt * 3, 0)  # fmt: skip
        for k in range(min(PER_SESSION, rows - s * PER_SESSION)):
            n = s * PER_SESSION + k
            at = start + timedelta(seconds=k * 7)
            prompt, generated = rng.randint(20, 2000), rng.randint(1, 1000)
            outcome = rng.choice(OUTCOMES)
            delivered = generated if outcome == "completed" else rng.randint(0, generated)
            wasted = generated - delivered
            p_in, p_out = 200_000_000, 600_000_000  # $0.20 / $0.60 per million, in nano-USD
            yield "streams", (
                f"st{n:010d}", sid, "bench", f"r{n}", model, tenant, ingress,
                "/v1/chat/completions", at, at + timedelta(seconds=5), outcome, None, None,
                "usage", prompt, generated, delivered, wasted,
                round(rng.lognormvariate(-1.5, 0.6), 6), 5.0, f"{model}@2025-01-01", p_in, p_out,
                prompt * p_in // 1_000_000, generated * p_out // 1_000_000,
                wasted * p_out // 1_000_000, None,
            )  # fmt: skip


def _sqlite_time(value: object) -> object:
    # SQLAlchemy's SQLite DateTime storage format
    return value.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(value, datetime) else value


def _only(table: str, rows: int, now: datetime) -> Iterator[tuple[object, ...]]:
    """One table's rows; the generator runs once per table so memory stays flat."""
    return (row for name, row in synthetic(rows, now) if name == table)


def fill_sqlite(path: Path, rows: int, now: datetime) -> None:
    connection = sqlite3.connect(path)
    with connection:
        connection.executemany(
            f"INSERT INTO sessions ({','.join(SESSION_COLUMNS)}) "
            f"VALUES ({','.join('?' * len(SESSION_COLUMNS))})",
            (tuple(map(_sqlite_time, r)) for r in _only("sessions", rows, now)),
        )
        connection.executemany(
            f"INSERT INTO streams ({','.join(STREAM_COLUMNS)}) "
            f"VALUES ({','.join('?' * len(STREAM_COLUMNS))})",
            (tuple(map(_sqlite_time, r)) for r in _only("streams", rows, now)),
        )
        connection.execute("ANALYZE")
    connection.close()


def fill_postgres(dsn: str, rows: int, now: datetime) -> None:
    with psycopg.connect(dsn) as connection:
        for table, columns in (("sessions", SESSION_COLUMNS), ("streams", STREAM_COLUMNS)):
            with (
                connection.cursor() as cursor,
                cursor.copy(f"COPY {table} ({','.join(columns)}) FROM STDIN") as copy,
            ):
                for row in _only(table, rows, now):
                    copy.write_row(row)
        connection.commit()
        connection.execute("ANALYZE")
        connection.commit()


def time_command(url: str, repeat: int, extra: tuple[str, ...] = ()) -> list[float]:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "sidecar", *COMMAND, *extra, "--db", url],
            capture_output=True,
            text=True,
            check=False,
        )
        times.append(time.perf_counter() - began)
        if result.returncode != 0:
            raise SystemExit(f"report failed: {result.stderr.strip()}")
    return times


@contextlib.contextmanager
def postgres(url: str | None) -> Iterator[tuple[str, str]]:
    if url is not None:
        yield url, url.replace("postgresql+psycopg://", "postgresql://")
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.support.postgres import temporary_postgres_cluster

    with temporary_postgres_cluster() as cluster:
        name = "bench_report"
        cluster.create_database(name)
        yield cluster.url(name), cluster.dsn(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--pg-url", default=None, help="an empty PostgreSQL database to use")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    now = datetime.now(UTC) - timedelta(minutes=5)
    print(f"command: sidecar {' '.join(COMMAND)} --db URL  ({args.rows:,} streams)")
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/bench.db"
            db.upgrade(url)
            began = time.perf_counter()
            fill_sqlite(Path(tmp) / "bench.db", args.rows, now)
            print(f"sqlite: filled in {time.perf_counter() - began:.1f} s")
            _report("sqlite", time_command(url, args.repeat))
            _report("sqlite --latency", time_command(url, args.repeat, ("--latency",)))
    if args.backend in ("postgresql", "both"):
        with postgres(args.pg_url) as (url, dsn):
            db.upgrade(url)
            began = time.perf_counter()
            fill_postgres(dsn, args.rows, now)
            print(f"postgresql: filled in {time.perf_counter() - began:.1f} s")
            _report("postgresql", time_command(url, args.repeat))
            _report("postgresql --latency", time_command(url, args.repeat, ("--latency",)))
            with psycopg.connect(dsn, autocommit=True) as connection:
                for statement in PG_STATISTICS:
                    connection.execute(statement)
                connection.execute("ANALYZE streams")
            print("postgresql: with the proposed expression statistics")
            _report("postgresql", time_command(url, args.repeat))
            _report("postgresql --latency", time_command(url, args.repeat, ("--latency",)))


def _report(backend: str, times: list[float]) -> None:
    runs = ", ".join(f"{t:.2f}" for t in times)
    print(f"{backend}: median {statistics.median(times):.2f} s, best {min(times):.2f} s ({runs})")


if __name__ == "__main__":
    main()

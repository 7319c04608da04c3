"""Ledger fixtures: the same tests run on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert

from sidecar.accounting.pricing import Price, PriceBook, cost_of
from sidecar.ledger import db
from sidecar.ledger.models import NANO, Session, Stream
from tests.support.postgres import PostgresCluster

BACKENDS = ("sqlite", "postgresql")
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
PRICES = PriceBook(
    [
        Price("big", Decimal("1.00"), Decimal("2.00"), JAN_1),
        Price("small", Decimal("0.15"), Decimal("0.60"), JAN_1),
    ]
)


def at(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def stream(
    n: int,
    model: str,
    tenant: str,
    outcome: str | None,
    tokens: tuple[int, int, int],
    started_at: datetime,
    *,
    ttft: float | None = 0.1,
    session: str | None = "sA",
    instance: str = "i-1",
    book: PriceBook = PRICES,
    ingress: str = "ws",
    path: str = "/v1/chat/completions",
) -> dict[str, Any]:
    """A ledger row priced the way the recorder prices it."""
    prompt, generated, delivered = tokens
    wasted = generated - delivered
    price = book.price_at(model, started_at)
    row: dict[str, Any] = dict(
        id=f"s{n}", session_id=session, instance_id=instance, request_id=f"r{n}", model=model,
        tenant=tenant, ingress=ingress, path=path, started_at=started_at,
        ended_at=None, outcome=outcome, finish_reason=None, error_code=None,
        count_source="usage", prompt_tokens=prompt, generated_tokens=generated,
        delivered_tokens=delivered, wasted_tokens=wasted, ttft_s=ttft, duration_s=1.0,
        trace_id=None, price_key=None, input_nusd_per_mtok=None, output_nusd_per_mtok=None,
        prompt_cost_nusd=None, generated_cost_nusd=None, wasted_cost_nusd=None,
    )  # fmt: skip
    if price is not None:
        cost = cost_of(price, prompt, generated, delivered, wasted)
        row.update(
            price_key=price.key,
            input_nusd_per_mtok=int(price.input_per_mtok * NANO),
            output_nusd_per_mtok=int(price.output_per_mtok * NANO),
            prompt_cost_nusd=int(cost.prompt_usd * NANO),
            generated_cost_nusd=int(cost.generated_usd * NANO),
            wasted_cost_nusd=int(cost.wasted_usd * NANO),
        )
    return row


def session(sid: str, tenant: str, rtt: float | None, started_at: datetime) -> dict[str, Any]:
    return dict(
        id=sid, instance_id="i-1", tenant=tenant, ingress="ws", client_addr=None,
        started_at=started_at, ended_at=None, disconnect_reason=None, streams=0,
        heartbeat_rtt_p50_s=rtt, heartbeat_rtt_max_s=rtt, heartbeats_missed=0,
    )  # fmt: skip


SESSIONS = [
    session("sA", "acme", 0.020, at(21, 9)),
    session("sB", "acme", 0.040, at(22, 8)),
    session("sC", "globex", 0.010, at(22, 9)),
    session("sD", "globex", None, at(22, 9)),
]
STREAMS = [
    stream(1, "big", "acme", "completed", (100, 100, 100), at(21, 10), ttft=0.10),
    stream(2, "big", "acme", "client_gone", (200, 50, 20), at(21, 11, 30), ttft=0.30),
    stream(3, "big", "acme", "completed", (100, 80, 80), at(22, 9), ttft=0.20, session="sB"),
    stream(4, "small", "globex", "client_cancelled", (50, 40, 10), at(22, 9, 15), ttft=0.05,
           session="sC", ingress="http", path="/v1/responses"),
    stream(5, "small", "globex", "completed", (50, 10, 10), at(22, 10), ttft=None, session="sD"),
    stream(6, "mystery", "globex", "completed", (10, 10, 10), at(22, 10, 30), ttft=0.5,
           session=None, ingress="http", path="/v1/messages"),
    stream(7, "big", "acme", None, (100, 30, 30), at(22, 11), ttft=0.15, session="sB"),
    stream(8, "big", "acme", "completed", (1000, 1000, 1000), at(1, 0, month=1), ttft=2.0),
]  # fmt: skip


@contextlib.contextmanager
def engine_for(url: str) -> Iterator[Engine]:
    engine = db.make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def fill(engine: Engine, streams: list[dict[str, Any]], sessions: list[dict[str, Any]]) -> None:
    with engine.begin() as connection:
        if sessions:
            connection.execute(insert(Session), sessions)
        if streams:
            connection.execute(insert(Stream), streams)


def _new_url(backend: str, request: pytest.FixtureRequest, tmp: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp / 'ledger.db'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    if not cluster.is_running():
        cluster.start()
    return cluster.fresh_database("ledger")


@pytest.fixture(params=BACKENDS)
def empty_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty ledger (one per test)."""
    url = _new_url(request.param, request, tmp_path)
    db.upgrade(url)
    return url


@pytest.fixture(scope="module", params=BACKENDS)
def report_ledger(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated ledger holding SESSIONS and STREAMS; read-only, shared by a module."""
    url = _new_url(request.param, request, tmp_path_factory.mktemp("ledger"))
    db.upgrade(url)
    engine = db.make_engine(url)
    fill(engine, STREAMS, SESSIONS)
    engine.dispose()
    yield url

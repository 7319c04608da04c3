"""Start-up recovery: a killed sidecar's open streams become `interrupted`, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from sidecar.ledger.models import Stream
from sidecar.ledger.recovery import close_interrupted
from tests.ledger.conftest import at, engine_for, fill, stream

RESTART = datetime(2026, 11, 22, 12, 30, tzinfo=UTC)


def test_closes_only_this_instances_open_streams(empty_ledger: str) -> None:
    rows = [
        stream(1, "big", "acme", None, (100, 40, 30), at(22, 11), instance="a"),  # checkpointed
        stream(2, "big", "acme", None, (10, 0, 0), at(22, 11, 5), instance="a"),
        stream(3, "big", "acme", "completed", (10, 5, 5), at(22, 11), instance="a"),
        stream(4, "big", "acme", None, (10, 5, 5), at(22, 11), instance="b"),  # other replica
    ]
    rows[1]["ended_at"] = at(22, 11, 6)  # a checkpoint that knew its end keeps it
    with engine_for(empty_ledger) as engine:
        fill(engine, rows, [])
        assert close_interrupted(engine, "a", now=RESTART) == 2
        assert close_interrupted(engine, "a", now=RESTART) == 0  # idempotent
        assert close_interrupted(engine, "nobody") == 0
        with engine.connect() as connection:
            result = connection.execute(
                select(Stream.id, Stream.outcome, Stream.ended_at, Stream.generated_tokens,
                       Stream.delivered_tokens, Stream.wasted_tokens, Stream.generated_cost_nusd)
                .order_by(Stream.id)
            ).all()  # fmt: skip
    got = [(r[0], r[1], _utc(r[2]), *r[3:]) for r in result]
    assert got == [
        ("s1", "interrupted", RESTART, 40, 30, 10, 80_000),
        ("s2", "interrupted", at(22, 11, 6), 0, 0, 0, 0),
        ("s3", "completed", None, 5, 5, 0, 10_000),
        ("s4", None, None, 5, 5, 0, 10_000),
    ]


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

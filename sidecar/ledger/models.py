"""Ledger tables. Money is stored as integer nano-dollars (1e-9 USD): exact sums on SQLite and
PostgreSQL alike, converted to `Decimal` at the edges."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

NANO = 1_000_000_000


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Session(Base):
    """One client connection (a WebSocket session, or one HTTP request)."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    instance_id: Mapped[str] = mapped_column(String(64))
    tenant: Mapped[str] = mapped_column(String(128))
    ingress: Mapped[str] = mapped_column(String(16))
    client_addr: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disconnect_reason: Mapped[str | None] = mapped_column(String(32))
    streams: Mapped[int] = mapped_column(Integer, default=0)
    heartbeat_rtt_p50_s: Mapped[float | None] = mapped_column(Float)
    heartbeat_rtt_max_s: Mapped[float | None] = mapped_column(Float)
    heartbeats_missed: Mapped[int] = mapped_column(Integer, default=0)


class Stream(Base):
    """One request relayed to the upstream, with its counts, cost and outcome."""

    __tablename__ = "streams"
    __table_args__ = (
        Index(None, "started_at", "model"),
        Index(None, "tenant", "started_at"),
        Index(None, "session_id"),
        Index(None, "instance_id", "outcome"),
        # The few running rows, which `report` reads raw even where rollups cover the hour.
        Index(
            "ix_streams_running_started_at",
            "started_at",
            postgresql_where=text("outcome IS NULL"),
            sqlite_where=text("outcome IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    session_id: Mapped[str | None] = mapped_column(String(32))
    instance_id: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(String(128))
    model: Mapped[str] = mapped_column(String(128))
    tenant: Mapped[str] = mapped_column(String(128))
    ingress: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str | None] = mapped_column(String(32))  # NULL while running
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    error_code: Mapped[str | None] = mapped_column(String(64))
    count_source: Mapped[str] = mapped_column(String(16))
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    generated_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    delivered_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    wasted_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    ttft_s: Mapped[float | None] = mapped_column(Float)
    duration_s: Mapped[float | None] = mapped_column(Float)
    price_key: Mapped[str | None] = mapped_column(String(200))  # NULL: no price, cost unknown
    input_nusd_per_mtok: Mapped[int | None] = mapped_column(BigInteger)
    output_nusd_per_mtok: Mapped[int | None] = mapped_column(BigInteger)
    prompt_cost_nusd: Mapped[int | None] = mapped_column(BigInteger)
    generated_cost_nusd: Mapped[int | None] = mapped_column(BigInteger)
    wasted_cost_nusd: Mapped[int | None] = mapped_column(BigInteger)
    trace_id: Mapped[str | None] = mapped_column(String(32))
    # Set when `sidecar prices backfill` priced this row after it was recorded unpriced.
    backfill_id: Mapped[int | None] = mapped_column(Integer)


class RollupSums:
    """The sums both rollup tables keep for their group (`ledger/rollup.py`)."""

    streams: Mapped[int] = mapped_column(BigInteger)
    unpriced_streams: Mapped[int] = mapped_column(BigInteger)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    generated_tokens: Mapped[int] = mapped_column(BigInteger)
    delivered_tokens: Mapped[int] = mapped_column(BigInteger)
    wasted_tokens: Mapped[int] = mapped_column(BigInteger)
    cost_nusd: Mapped[int] = mapped_column(BigInteger)  # prompt + generated, priced streams
    wasted_cost_nusd: Mapped[int] = mapped_column(BigInteger)
    # The unpriced streams' tokens, which GPU-hour prices share out.
    unpriced_prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    unpriced_generated_tokens: Mapped[int] = mapped_column(BigInteger)
    unpriced_wasted_tokens: Mapped[int] = mapped_column(BigInteger)


class StreamRollup(RollupSums, Base):
    """The finished streams of one UTC hour and group, summed (`ledger/rollup.py`). Exact: the
    hour is recomputed from the streams whenever one of them changes (see `RollupMark`)."""

    __tablename__ = "stream_rollups"
    __table_args__ = (
        PrimaryKeyConstraint("hour", "model", "tenant", "outcome", "ingress", "instance_id"),
    )

    hour: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    model: Mapped[str] = mapped_column(String(128))
    tenant: Mapped[str] = mapped_column(String(128))
    outcome: Mapped[str] = mapped_column(String(32))
    ingress: Mapped[str] = mapped_column(String(16))
    instance_id: Mapped[str] = mapped_column(String(64))


class ModelRollup(RollupSums, Base):
    """`StreamRollup` summed over tenants and instances: one row per hour, model, outcome and
    ingress, however many tenants and replicas. Reports that group by neither read these."""

    __tablename__ = "model_rollups"
    __table_args__ = (PrimaryKeyConstraint("hour", "model", "outcome", "ingress"),)

    hour: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    model: Mapped[str] = mapped_column(String(128))
    outcome: Mapped[str] = mapped_column(String(32))
    ingress: Mapped[str] = mapped_column(String(16))


class RollupMark(Base):
    """An hour whose rollup is stale: a stream of it turned final or changed after it was
    rolled up. Written in the same transaction as the change, one row per writing instance
    (so replicas never wait on each other's mark); `version` grows with each change, so a
    refresh deletes only the marks it has seen."""

    __tablename__ = "rollup_marks"
    __table_args__ = (PrimaryKeyConstraint("hour", "instance_id"),)

    hour: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    instance_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(BigInteger)


class RollupState(Base):
    """One row: every hour before `rolled_until` is rolled up, except the marked ones. Before
    `pruned_before` the stream rows were deleted (`sidecar db prune`): the rollups are the
    record there, never recomputed, and marks there are ignored."""

    __tablename__ = "rollup_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    rolled_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    refreshed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    pruned_before: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Price(Base):
    __tablename__ = "prices"
    __table_args__ = (Index(None, "model", "effective_from", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(128))
    input_per_mtok: Mapped[str] = mapped_column(String(40))  # decimal text, exact
    output_per_mtok: Mapped[str] = mapped_column(String(40))
    cached_input_per_mtok: Mapped[str | None] = mapped_column(String(40))
    effective_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    source: Mapped[str | None] = mapped_column(String(200))


class HourlyPrice(Base):
    """A self-hosted server's cost per hour: of one replica (`scope` instance, `target` its
    sidecar's instance id) or of every replica serving a model (`scope` model)."""

    __tablename__ = "hourly_prices"
    __table_args__ = (Index(None, "scope", "target", "effective_from", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(128))
    usd_per_hour: Mapped[str] = mapped_column(String(40))  # decimal text, exact
    capacity_tokens_per_hour: Mapped[int | None] = mapped_column(BigInteger)
    prompt_weight: Mapped[str] = mapped_column(String(40))
    effective_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    source: Mapped[str | None] = mapped_column(String(200))


class PriceBackfill(Base):
    """One `sidecar prices backfill` run: who priced which unpriced rows, when, at what price."""

    __tablename__ = "price_backfills"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ran_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(128))
    since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    streams: Mapped[int] = mapped_column(Integer)
    price_keys: Mapped[str] = mapped_column(Text)  # the prices used, one key per line


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (Index(None, "fired_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    instance_id: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(128))
    signal: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(8))
    fired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    onset: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    baseline_p95_s: Mapped[float | None] = mapped_column(Float)
    current_p95_s: Mapped[float | None] = mapped_column(Float)
    details: Mapped[str | None] = mapped_column(Text)


class ApiKey(Base):
    """A client API key bound to one tenant; only its SHA-256 digest is stored."""

    __tablename__ = "api_keys"
    __table_args__ = (Index(None, "tenant"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # public, part of the key
    tenant: Mapped[str] = mapped_column(String(128))
    digest: Mapped[str] = mapped_column(String(64))  # hex SHA-256 of the whole key
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

"""hourly prices for self-hosted servers; price backfills and the rows they priced

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hourly_prices",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=128), nullable=False),
        sa.Column("usd_per_hour", sa.String(length=40), nullable=False),
        sa.Column("capacity_tokens_per_hour", sa.BigInteger(), nullable=True),
        sa.Column("prompt_weight", sa.String(length=40), nullable=False),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hourly_prices")),
    )
    with op.batch_alter_table("hourly_prices", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_hourly_prices_scope_target_effective_from"),
            ["scope", "target", "effective_from"],
            unique=True,
        )
    op.create_table(
        "price_backfills",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ran_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("streams", sa.Integer(), nullable=False),
        sa.Column("price_keys", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_price_backfills")),
    )
    with op.batch_alter_table("streams", schema=None) as batch_op:
        batch_op.add_column(sa.Column("backfill_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("streams", schema=None) as batch_op:
        batch_op.drop_column("backfill_id")
    op.drop_table("price_backfills")
    with op.batch_alter_table("hourly_prices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hourly_prices_scope_target_effective_from"))
    op.drop_table("hourly_prices")

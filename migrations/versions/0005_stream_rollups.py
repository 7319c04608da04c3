"""hourly stream rollups (by tenant and instance, and by model only), the marks of stale
hours, and an index on running streams

`sidecar report` sums these instead of every stream row (ledger/rollup.py). The state row
starts with `rolled_until` NULL: until the first refresh every report reads the streams, as
before, so an existing ledger stays exact through the upgrade.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEYS = ("hour", "model", "tenant", "outcome", "ingress", "instance_id")
SUMS = (
    "streams",
    "unpriced_streams",
    "prompt_tokens",
    "generated_tokens",
    "delivered_tokens",
    "wasted_tokens",
    "cost_nusd",
    "wasted_cost_nusd",
    "unpriced_prompt_tokens",
    "unpriced_generated_tokens",
    "unpriced_wasted_tokens",
)


def upgrade() -> None:
    op.create_table(
        "stream_rollups",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("ingress", sa.String(length=16), nullable=False),
        sa.Column("instance_id", sa.String(length=64), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in SUMS),
        sa.PrimaryKeyConstraint(*KEYS, name=op.f("pk_stream_rollups")),
    )
    op.create_table(
        "model_rollups",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("ingress", sa.String(length=16), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in SUMS),
        sa.PrimaryKeyConstraint(
            "hour", "model", "outcome", "ingress", name=op.f("pk_model_rollups")
        ),
    )
    op.create_table(
        "rollup_marks",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("instance_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("hour", "instance_id", name=op.f("pk_rollup_marks")),
    )
    state = op.create_table(
        "rollup_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("rolled_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pruned_before", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollup_state")),
    )
    op.bulk_insert(state, [{"id": 1, "rolled_until": None, "refreshed_at": None, "pruned_before": None}])
    with op.batch_alter_table("streams", schema=None) as batch_op:
        batch_op.create_index(
            "ix_streams_running_started_at",
            ["started_at"],
            unique=False,
            postgresql_where=sa.text("outcome IS NULL"),
            sqlite_where=sa.text("outcome IS NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("streams", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_streams_running_started_at",
            postgresql_where=sa.text("outcome IS NULL"),
            sqlite_where=sa.text("outcome IS NULL"),
        )
    op.drop_table("rollup_state")
    op.drop_table("rollup_marks")
    op.drop_table("model_rollups")
    op.drop_table("stream_rollups")

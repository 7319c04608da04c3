"""One rule for text that a client or an upstream chose (model, tenant, request id, finish reason,
error code, ...) before it reaches the ledger, a metric label or a span.

Keep the printable characters (`str.isprintable`: no NUL, no control, format or surrogate
characters, which PostgreSQL refuses or which forge log lines and dashboards), then cut to the
column's length with a visible marker. SQLite would store 10 KB in a VARCHAR(128) and PostgreSQL
would refuse the row: applying one rule before either sees the value makes both ledgers hold the
same thing, and the name on a metric label equal to the one in the ledger.
"""

from __future__ import annotations

from sqlalchemy import String, Table

MARKER = "…"  # ends a value that was cut


def bounded(value: str, limit: int) -> str:
    """`value` without unprintable characters, at most `limit` characters long."""
    if len(value) <= limit and value.isprintable():  # the common case, two C-speed checks
        return value
    if not value.isprintable():
        value = "".join(c for c in value if c.isprintable())
    if len(value) > limit:
        value = value[: max(0, limit - len(MARKER))] + MARKER[:limit]
    return value


def string_limits(table: Table) -> dict[str, int]:
    """Each bounded text column of `table` and its length."""
    return {
        column.name: int(column.type.length)
        for column in table.columns
        if isinstance(column.type, String) and column.type.length
    }

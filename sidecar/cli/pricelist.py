"""`sidecar prices list --hourly`: the stored GPU-hour prices, as a table, JSON, CSV or TOML."""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from sidecar.accounting.hourly import HourlyPrice

HOURLY_FIELDS: Final = (
    "scope",
    "target",
    "effective_from",
    "usd_per_hour",
    "capacity_tokens_per_hour",
    "prompt_weight",
    "source",
)


def hourly_fields(price: HourlyPrice, source: str | None) -> dict[str, str | None]:
    capacity = price.capacity_tokens_per_hour
    return {
        "scope": price.scope,
        "target": price.target,
        "effective_from": price.effective_from.isoformat(),
        "usd_per_hour": f"{price.usd_per_hour:f}",
        "capacity_tokens_per_hour": None if capacity is None else str(capacity),
        "prompt_weight": f"{price.prompt_weight:f}",
        "source": source,
    }


def render_hourly(rows: list[dict[str, str | None]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps({"hourly": rows}, indent=2) + "\n"
    if fmt == "toml":
        return "".join(hourly_toml(r) for r in rows)
    cells = [["" if r[f] is None else str(r[f]) for f in HOURLY_FIELDS] for r in rows]
    if fmt == "csv":
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows([list(HOURLY_FIELDS), *cells])
        return out.getvalue()
    if not rows:
        return "no hourly prices in this ledger\n"
    table = [list(HOURLY_FIELDS), *[[c or "-" for c in row] for row in cells]]
    widths = [max(len(row[i]) for row in table) for i in range(len(HOURLY_FIELDS))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def hourly_toml(row: dict[str, str | None]) -> str:
    lines = ["[[hourly]]", f"{row['scope']} = {json.dumps(row['target'])}"]
    lines.append(f"usd_per_hour = {json.dumps(row['usd_per_hour'])}")
    if row["capacity_tokens_per_hour"] is not None:
        lines.append(f"capacity_tokens_per_hour = {row['capacity_tokens_per_hour']}")
    lines.append(f"prompt_weight = {json.dumps(row['prompt_weight'])}")
    lines.append(f"effective_from = {row['effective_from']}")
    if row["source"] is not None:
        lines.append(f"# source: {row['source']}".replace("\n", " "))
    return "\n".join(lines) + "\n\n"

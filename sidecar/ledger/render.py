"""`sidecar report` as text: table, CSV and JSON (html.py draws the page).

Money is never shown as zero when it is unknown (DESIGN §8): JSON says `null`, CSV leaves the
cell empty, the table and the page say `unknown`. A row whose streams are partly priced shows
the priced part marked `≥` (table, page) or `cost_partial` (JSON, CSV), beside
`unpriced_streams`. Names chosen by clients (models, tenants) are shown with control
characters escaped in the table, and CSV cells that a spreadsheet would run as a formula are
prefixed with `'` (OWASP's advice for CSV injection).
"""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from typing import Any, Final

from sidecar.ledger.query import COUNT_KEYS, LATENCY_KEYS
from sidecar.ledger.report import money, waste_pct

COLUMNS: Final = (*COUNT_KEYS[:5], "waste_pct", "cost_usd", "wasted_cost_usd", "unpriced_streams")
CSV_EXTRA: Final = ("cost_partial", "idle")
UNKNOWN: Final = "unknown"
PARTIAL: Final = "≥"
FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def columns_of(report: dict[str, Any]) -> tuple[str, ...]:
    latency = LATENCY_KEYS if LATENCY_KEYS[0] in report["totals"] else ()
    return (*COLUMNS, *latency)


def money_text(row: dict[str, Any], key: str) -> str:
    """A money cell for people: `unknown`, `≥0.001000` (partly priced) or `0.001000`."""
    value: Decimal | None = row[key]
    if value is None:
        return UNKNOWN
    return (PARTIAL if row.get("cost_partial") else "") + money(value)


def display(text: str) -> str:
    """Client-chosen text made safe for a terminal: no escape sequences, no line breaks."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def csv_cell(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_START) else text


def render(report: dict[str, Any], by: tuple[str, ...], fmt: str, notes: tuple[str, ...]) -> str:
    if fmt == "json":
        return json.dumps(jsonable(report, notes), indent=2) + "\n"
    columns = columns_of(report)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([*by, *columns, *CSV_EXTRA])
        for row in report["rows"]:
            cells = [str(row[d]) for d in by] + _csv_values(row, columns)
            writer.writerow([csv_cell(c) for c in cells])
        return out.getvalue()
    rows = [_table_cells(r, by, columns) for r in report["rows"]]
    totals = _table_cells(report["totals"], by, columns, label="TOTAL")
    header = [*by, *columns]
    return _table(header, rows, totals, len(by)) + _footnotes(report, notes)


def _csv_values(row: dict[str, Any], columns: tuple[str, ...]) -> list[str]:
    values = [str(row[k]) for k in COUNT_KEYS[:5]]
    values.append(str(waste_pct(row)))  # a number: spreadsheets sum it
    values += ["" if row[k] is None else money(row[k]) for k in ("cost_usd", "wasted_cost_usd")]
    values.append(str(row["unpriced_streams"]))
    values += ["" if row[k] is None else f"{row[k]:.3f}" for k in columns[len(COLUMNS) :]]
    values += [str(bool(row.get("cost_partial"))).lower(), str(bool(row.get("idle"))).lower()]
    return values


def _table_cells(
    row: dict[str, Any], by: tuple[str, ...], columns: tuple[str, ...], label: str | None = None
) -> list[str]:
    keys = [label] + [""] * (len(by) - 1) if label and by else [display(str(row[d])) for d in by]
    values = [str(row[k]) for k in COUNT_KEYS[:5]]
    values += [f"{waste_pct(row)}%", money_text(row, "cost_usd")]
    values += [money_text(row, "wasted_cost_usd"), str(row["unpriced_streams"])]
    for key in columns[len(COLUMNS) :]:
        value = row[key]
        values.append("-" if value is None else f"{value:.3f}")
    return keys + values


def _table(header: list[str], rows: list[list[str]], totals: list[str], keys: int) -> str:
    if not rows:
        return "no streams in this period\n"
    widths = [max(len(r[i]) for r in [header, *rows, totals]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        parts = [
            c.ljust(w) if i < keys else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *map(line, rows), rule, line(totals)]) + "\n"


def _footnotes(report: dict[str, Any], notes: tuple[str, ...]) -> str:
    if not report["rows"]:
        return "".join(f"{n}\n" for n in notes)
    lines = list(notes)
    totals = report["totals"]
    if totals["unpriced_streams"]:
        lines.append(
            f"{UNKNOWN}: no price for any stream of the row; {PARTIAL}: the priced streams' cost, "
            f"without the {totals['unpriced_streams']} unpriced ones (unpriced_streams)."
        )
    if totals.get("idle_cost_usd") is not None:
        lines.append(
            f"(idle) rows: GPU hours paid for that no stream used, "
            f"${money(totals['idle_cost_usd'])} in all."
        )
    return "".join(f"{line}\n" for line in lines)


def jsonable(report: dict[str, Any], notes: tuple[str, ...] = ()) -> dict[str, Any]:
    def convert(row: dict[str, Any]) -> dict[str, Any]:
        out = dict(row)
        for key in ("cost_usd", "wasted_cost_usd", "idle_cost_usd"):
            if key in row:
                out[key] = None if row[key] is None else money(row[key])
        out["waste_pct"] = float(waste_pct(row))
        return out

    data: dict[str, Any] = {
        "rows": [convert(r) for r in report["rows"]],
        "totals": convert(report["totals"]),
    }
    if notes:
        data["notes"] = list(notes)
    return data

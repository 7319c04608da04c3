"""`sidecar report --format html`: one self-contained page (inline CSS and SVG, no script, no
network) that opens offline and can be mailed or archived.

Pure rendering: it takes report dictionaries (as `run_report` returns them) and returns text.
Three charts, each an `<svg data-chart=...>`:

* `cost-over-time`: cost per time bucket, one line per model;
* `tokens`: generated vs delivered vs wasted tokens for each row of the report;
* `tenant-waste`: the tenants whose waste cost the most.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from sidecar.ledger.query import MONEY_KEYS
from sidecar.ledger.render import money_text
from sidecar.ledger.report import money, waste_pct

PALETTE: Final = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
TOKEN_KINDS: Final = (
    ("generated_tokens", "generated", "#4e79a7"),
    ("delivered_tokens", "delivered", "#59a14f"),
    ("wasted_tokens", "wasted", "#e15759"),
)
WIDTH: Final = 880
HOUR: Final = timedelta(hours=1)
MAX_BUCKETS: Final = 2000
LEFT: Final = 190  # room for row labels
CSS: Final = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:2em}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{padding:.25em .6em;border-bottom:1px solid #ddd;text-align:right}
th.key,td.key{text-align:left}tfoot td{font-weight:600;border-top:2px solid #888}
svg{display:block;margin:.5em 0}svg text{font:11px system-ui,sans-serif;fill:#333}
.legend span{display:inline-block;margin-right:1.2em}
.legend i{display:inline-block;width:.9em;height:.9em;margin-right:.3em;vertical-align:-.1em}
.note{color:#666}
"""


@dataclass(frozen=True, slots=True)
class HtmlReport:
    title: str
    period: str  # human description of the period, e.g. "2026-11-21 12:00 to now (UTC)"
    by: tuple[str, ...]
    columns: tuple[str, ...]  # measure columns of the table, in order
    report: dict[str, Any]  # run_report(..., by) result, ordered and cut as shown
    timeline: dict[str, Any]  # run_report(..., by=(bucket, "model"))
    bucket: str  # "day" or "hour"
    tenants: dict[str, Any]  # run_report(..., by=("tenant",), order="wasted_cost_usd", top=N)
    notes: tuple[str, ...] = ()


def render_html(data: HtmlReport) -> str:
    e = html.escape
    notes = "".join(f'<p class="note">{e(n)}</p>' for n in data.notes)
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{e(data.title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{CSS}</style></head><body>\n"
        f"<h1>{e(data.title)}</h1><p>{e(data.period)}</p>{notes}\n"
        f"<h2>Cost over time by model (USD per {e(data.bucket)})</h2>\n"
        f"{cost_over_time(data.timeline['rows'], data.bucket)}\n"
        "<h2>Generated vs delivered vs wasted tokens</h2>\n"
        f"{tokens_chart(data.report['rows'], data.by)}\n"
        "<h2>Top tenants by waste (USD)</h2>\n"
        f"{tenant_waste(data.tenants['rows'])}\n"
        "<h2>Report</h2>\n"
        f"{table(data.report, data.by, data.columns)}\n"
        "</body></html>\n"
    )


def _label(row: dict[str, Any], by: Sequence[str]) -> str:
    return " · ".join(str(row[d]) for d in by) or "all streams"


def _num(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _legend(items: Sequence[tuple[str, str]]) -> str:
    spans = "".join(
        f'<span><i style="background:{color}"></i>{html.escape(name)}</span>'
        for name, color in items
    )
    return f'<div class="legend">{spans}</div>'


def _empty(chart: str, height: int = 60) -> str:
    return (
        f'<svg data-chart="{chart}" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
        f'height="{height}" role="img"><text x="10" y="30">no data in this period</text></svg>'
    )


def _ticks(maximum: float, count: int = 4) -> list[float]:
    top = maximum if maximum > 0 else 1.0
    return [top * i / count for i in range(count + 1)]


def _usd(value: float) -> str:
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text or "0"


def _continuous(buckets: list[str], bucket: str) -> list[str]:
    """Every day (or hour) from the first bucket to the last, so time runs evenly."""
    if len(buckets) < 2:
        return buckets
    fmt, step = ("%Y-%m-%d", timedelta(days=1)) if bucket == "day" else ("%Y-%m-%dT%H:00", HOUR)
    try:
        first, last = (datetime.strptime(b, fmt) for b in (buckets[0], buckets[-1]))
    except ValueError:
        return buckets
    count = int((last - first) / step) + 1
    if count > MAX_BUCKETS:
        return buckets
    return [(first + n * step).strftime(fmt) for n in range(count)]


def cost_over_time(rows: Sequence[dict[str, Any]], bucket: str) -> str:
    buckets = _continuous(sorted({str(r[bucket]) for r in rows}), bucket)
    models = sorted({str(r["model"]) for r in rows})
    if not buckets:
        return _empty("cost-over-time")
    # Unknown costs are left out of the line (not drawn as zero); the table says "unknown".
    cost = {
        (str(r[bucket]), str(r["model"])): float(r["cost_usd"])
        for r in rows
        if r["cost_usd"] is not None
    }
    height, top, bottom, left, right = 300, 15, 40, 80, 70
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    ticks = _ticks(max(cost.values(), default=0.0))

    def x(i: int) -> float:
        return left + (plot_w * i / (len(buckets) - 1) if len(buckets) > 1 else plot_w / 2)

    def y(value: float) -> float:
        return top + plot_h - plot_h * value / ticks[-1]

    parts = [
        f'<svg data-chart="cost-over-time" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
        f'height="{height}" role="img" aria-label="cost over time by model">'
    ]
    parts += [
        f'<line x1="{left}" x2="{WIDTH - right}" y1="{_num(y(tick))}" y2="{_num(y(tick))}" '
        f'stroke="#e5e5e5"/><text x="{left - 6}" y="{_num(y(tick) + 4)}" '
        f'text-anchor="end">{_usd(tick)}</text>'
        for tick in ticks
    ]
    label_width = 120 if bucket == "hour" else 80
    step = -(-len(buckets) // max(2, plot_w // label_width))  # ceil: labels never overlap
    for i, name in enumerate(buckets):
        if i % step == 0:
            parts.append(
                f'<text x="{_num(x(i))}" y="{height - bottom + 16}" text-anchor="middle">'
                f"{html.escape(name)}</text>"
            )
    legend = []
    for n, model in enumerate(models):
        color = PALETTE[n % len(PALETTE)]
        legend.append((model, color))
        points = [(i, cost.get((b, model), 0.0)) for i, b in enumerate(buckets)]
        path = " ".join(
            f"{'M' if k == 0 else 'L'}{_num(x(i))},{_num(y(v))}" for k, (i, v) in enumerate(points)
        )
        parts.append(
            f'<path data-model="{html.escape(model)}" d="{path}" fill="none" '
            f'stroke="{color}" stroke-width="2"/>'
        )
        for i, value in points:
            tip = f"{model} {buckets[i]}: ${value:.6f}"
            parts.append(
                f'<circle cx="{_num(x(i))}" cy="{_num(y(value))}" r="3" fill="{color}">'
                f"<title>{html.escape(tip)}</title></circle>"
            )
    parts.append("</svg>")
    return "".join(parts) + _legend(legend)


def _bars(
    chart: str,
    groups: Sequence[tuple[str, Sequence[tuple[float, str, str]]]],
    value_text: str,
) -> str:
    """Horizontal bars: per group a label and one bar per (value, color, tooltip)."""
    if not groups:
        return _empty(chart)
    bar, gap = 12, 10
    per_group = max(len(bars) for _, bars in groups) * bar + gap
    height = len(groups) * per_group + 30
    plot_w = WIDTH - LEFT - 90
    maximum = max((v for _, bars in groups for v, _, _ in bars), default=0.0) or 1.0
    parts = [
        f'<svg data-chart="{chart}" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
        f'height="{height}" role="img">'
    ]
    for g, (label, bars) in enumerate(groups):
        y0 = 10 + g * per_group
        middle = y0 + len(bars) * bar / 2 + 4
        short = label if len(label) <= 30 else label[:29] + "…"
        parts.append(
            f'<text x="{LEFT - 8}" y="{_num(middle)}" text-anchor="end">{html.escape(short)}'
            f"<title>{html.escape(label)}</title></text>"
        )
        for b, (value, color, tip) in enumerate(bars):
            width = plot_w * value / maximum
            y = y0 + b * bar
            parts.append(
                f'<rect x="{LEFT}" y="{y}" width="{_num(max(width, 0.5))}" height="{bar - 2}" '
                f'fill="{color}"><title>{html.escape(tip)}</title></rect>'
                f'<text x="{_num(LEFT + width + 4)}" y="{y + bar - 3}">'
                f"{html.escape(value_text.format(value))}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def tokens_chart(rows: Sequence[dict[str, Any]], by: Sequence[str], limit: int = 25) -> str:
    groups = []
    for row in rows[:limit]:
        label = _label(row, by)
        bars = [
            (float(row[key]), color, f"{label}: {row[key]} {name} tokens")
            for key, name, color in TOKEN_KINDS
        ]
        groups.append((label, bars))
    legend = _legend([(name, color) for _, name, color in TOKEN_KINDS])
    note = "" if len(rows) <= limit else f'<p class="note">first {limit} of {len(rows)} rows</p>'
    return _bars("tokens", groups, "{:.0f}") + legend + note


def tenant_waste(rows: Sequence[dict[str, Any]]) -> str:
    groups = [
        (
            str(row["tenant"]),
            [
                (
                    float(row["wasted_cost_usd"]),
                    PALETTE[3],
                    f"{row['tenant']}: ${money(row['wasted_cost_usd'])} wasted, "
                    f"{waste_pct(row)}% of generated tokens",
                )
            ],
        )
        for row in rows
        if row["wasted_cost_usd"] is not None
    ]
    return _bars("tenant-waste", groups, "${:.6f}")


def _cell(row: dict[str, Any], column: str) -> str:
    value = row.get(column)
    if column == "waste_pct":
        return f"{waste_pct(row)}%"
    if column in MONEY_KEYS:
        return money_text(row, column)
    if isinstance(value, Decimal):
        return money(value)
    if isinstance(value, float):
        return f"{value:.3f}"
    return "-" if value is None else str(value)


def table(report: dict[str, Any], by: Sequence[str], columns: Sequence[str]) -> str:
    e = html.escape
    if not report["rows"]:
        return "<p>no streams in this period</p>"
    head = "".join(f'<th class="key">{e(d)}</th>' for d in by)
    head += "".join(f"<th>{e(c)}</th>" for c in columns)
    body = []
    for row in report["rows"]:
        keys = "".join(f'<td class="key">{e(str(row[d]))}</td>' for d in by)
        values = "".join(f"<td>{e(_cell(row, c))}</td>" for c in columns)
        body.append(f"<tr>{keys}{values}</tr>")
    label = "".join(f'<td class="key">{"TOTAL" if i == 0 else ""}</td>' for i in range(len(by)))
    totals = "".join(f"<td>{e(_cell(report['totals'], c))}</td>" for c in columns)
    return (
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody>"
        f"<tfoot><tr>{label}{totals}</tr></tfoot></table>"
    )

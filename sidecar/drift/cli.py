"""`sidecar drift ...`: thin click commands over `sidecar.drift.backtest`."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from sidecar.cli.options import option
from sidecar.drift.backtest import BacktestInputError, BacktestResult, read_csv, replay
from sidecar.drift.config import DEFAULT_FLOORS, DEFAULT_NORMALIZATION, DetectorConfig
from sidecar.drift.events import Alert
from sidecar.telemetry.names import DRIFT_SIGNALS

command = click.Group(
    "drift",
    help="""Early-warning p95 drift detection.

    \b
    Example:
      sidecar drift backtest --csv ttft.csv --format json
    """,
)


@command.command("backtest")
@option(
    "--csv",
    "csv_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Latency series: a time column, a value column (seconds), optional prompt_tokens, "
    "inflight.",
)
@option("--time-column", default="timestamp", show_default=True, help="Epoch seconds or ISO 8601.")
@option("--value-column", default="value", show_default=True, help="Latency in seconds.")
@option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@option("--signal", type=click.Choice(DRIFT_SIGNALS), default="ttft", show_default=True)
@option(
    "--floor",
    type=click.FloatRange(min=0),
    default=None,
    help="Smallest p95 rise worth an alert, seconds [default: per signal, ttft 0.02].",
)
@option(
    "--threshold",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="CUSUM threshold h; +1 is ~2.7x fewer false alarms and ~48 samples more delay "
    "[default: 12, lowered for aggregated series].",
)
def backtest(
    csv_path: Path,
    time_column: str,
    value_column: str,
    fmt: str,
    signal: str,
    floor: float | None,
    threshold: float | None,
) -> None:
    """Replay a recorded latency series through the live detector; print when it would fire.

    Accepts per-request samples or a series exported from Prometheus or a dashboard at 15 s to
    5 min steps (windows and arming adapt to the step).

    \b
    Example:
      sidecar drift backtest --csv ttft.csv --time-column timestamp \\
          --value-column value --format json --floor 0.05 --threshold 12
    """
    try:
        rows = read_csv(csv_path, time_column, value_column)
    except BacktestInputError as exc:
        raise click.BadParameter(str(exc), param_hint="'--csv'") from None
    config = DetectorConfig(
        floor=DEFAULT_FLOORS[signal] if floor is None else floor,
        normalization=DEFAULT_NORMALIZATION[signal],
    )
    if threshold is not None:
        config = replace(config, threshold=threshold)
    result = replay(rows, config, signal, fixed_threshold=threshold is not None)
    if fmt == "json":
        click.echo(json.dumps({"alerts": [_json(a) for a in result.alerts]}, indent=2))
    else:
        click.echo(_table(result))
    if result.armed_at is None:
        cfg = result.config
        click.echo(
            f"note: the detector never armed: it needs {cfg.arm_samples} baseline samples "
            f"spanning {cfg.arm_span_seconds / 60:g} min, {cfg.baseline_gap_seconds / 60:g} min "
            f"before the evaluation time ({result.samples} samples in the file)",
            err=True,
        )


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()


def _current(alert: Alert) -> float | None:
    return alert.short_p95 if alert.short_p95 is not None else alert.medium_p95


def _json(alert: Alert) -> dict[str, Any]:
    current = _current(alert)
    return {
        "fired_at": _iso(alert.fired_at),
        "onset": _iso(alert.onset),
        "resolved_at": _iso(alert.resolved_at),
        "severity": alert.severity.value,
        "signal": alert.signal,
        "baseline_p95": round(alert.baseline_p95, 6),
        "current_p95": None if current is None else round(current, 6),
    }


def _table(result: BacktestResult) -> str:
    cfg = result.config
    lines = [
        f"{result.samples} samples, median step {result.step:g} s, threshold h={cfg.threshold:.2f},"
        f" floor {cfg.floor:g} s, slot {cfg.slot_seconds:g} s",
    ]
    if not result.alerts:
        lines.append("no alerts")
        return "\n".join(lines)
    header = ("fired_at", "onset", "resolved_at", "sev", "baseline_p95", "current_p95")
    rows = [header]
    for alert in result.alerts:
        current = _current(alert)
        rows.append(
            (
                _short(alert.fired_at),
                _short(alert.onset),
                "-" if alert.resolved_at is None else _short(alert.resolved_at),
                alert.severity.value,
                f"{alert.baseline_p95:.4f}",
                "-" if current is None else f"{current:.4f}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines.extend(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )
    lines.append(f"{len(result.alerts)} alert(s)")
    return "\n".join(lines)


def _short(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")

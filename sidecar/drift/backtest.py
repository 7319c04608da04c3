"""Replay a recorded latency series through the live detector, to tune it on history.

Input is a CSV of `timestamp,value[,prompt_tokens,inflight]` (timestamps as epoch seconds or ISO
8601, naive ones read as UTC; values in seconds). Two kinds of series arrive here:

* raw per-request samples (many per second): replayed with the production config as is;
* pre-aggregated series, one value per 15 s .. 5 min step (a Prometheus or vendor export): a
  10 s slot and a 2,000-sample arming rule would never arm on 60 samples an hour, so windows,
  arming and minimum counts are scaled to the step, the CUSUM threshold is lowered so the
  expected time between false alarms stays about eight weeks (each sample carries more time), and
  the persistence test and the tail CUSUM are off (each point already summarises a step).
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import assert_never

from sidecar.drift.config import DetectorConfig, Normalization
from sidecar.drift.detector import Detector
from sidecar.drift.events import Alert, AlertEscalated, AlertFired, AlertResolved, Severity

AGGREGATED_STEP = 5.0  # seconds between samples (median) from which a series counts as aggregated
_FALSE_ALARM_SAMPLES_AT_H10 = 1.75e6  # in-control run length of the default CUSUM (DRIFT.md)
# Eight weeks in theory: points above every baseline point score by their distance (a heavier
# tail than the bounded scores the theory assumes), and at four weeks the magnitude test paged
# 0.46 times a week at 1-min steps (11 in 24 quiet weeks of tune runs, 1/s); at eight, 0.38.
_TARGET_QUIET_SECONDS = 56 * 86400.0


class BacktestInputError(ValueError):
    """The CSV cannot be replayed; the message is one line naming the file, row or column."""


@dataclass(frozen=True, slots=True)
class Row:
    t: float
    value: float
    prompt_tokens: float | None = None
    inflight: float | None = None


@dataclass(frozen=True, slots=True)
class BacktestResult:
    alerts: list[Alert]
    config: DetectorConfig
    step: float  # median seconds between samples
    samples: int
    armed_at: float | None  # first time the CUSUM was armed; None if it never was


def parse_time(text: str) -> float:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BacktestInputError(
            f"timestamp {text!r} is neither epoch seconds nor ISO 8601"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def read_csv(path: Path, time_column: str, value_column: str) -> list[Row]:
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            for column in (time_column, value_column):
                if column not in columns:
                    raise BacktestInputError(
                        f"{path}: no column {column!r} (columns: {', '.join(columns) or 'none'})"
                    )
            has_p, has_n = "prompt_tokens" in columns, "inflight" in columns
            rows = [
                _row(line, record, time_column, value_column, has_p, has_n)
                for line, record in enumerate(reader, start=2)
            ]
    except OSError as exc:
        raise BacktestInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise BacktestInputError(f"{path} is not a UTF-8 text CSV") from None
    if not rows:
        raise BacktestInputError(f"{path} has no data rows")
    rows.sort(key=lambda r: r.t)
    return rows


def _row(line: int, record: dict[str, str], tcol: str, vcol: str, has_p: bool, has_n: bool) -> Row:
    try:
        t = parse_time(record[tcol] or "")
        value = float(record[vcol] or "")
        p = float(record["prompt_tokens"]) if has_p and record["prompt_tokens"] else None
        n = float(record["inflight"]) if has_n and record["inflight"] else None
    except (BacktestInputError, ValueError, TypeError) as exc:
        raise BacktestInputError(f"row {line}: {exc}") from None
    if not (math.isfinite(t) and math.isfinite(value)) or value < 0:
        raise BacktestInputError(f"row {line}: value {value!r} is not a finite number >= 0")
    return Row(t, value, p, n)


def median_step(rows: list[Row]) -> float:
    gaps = sorted(b.t - a.t for a, b in itertools.pairwise(rows) if b.t > a.t)
    return gaps[len(gaps) // 2] if gaps else 0.0


def config_for_step(step: float, base: DetectorConfig) -> DetectorConfig:
    """The base config for raw samples; for a series at `step` seconds, one scaled to it."""
    if step < AGGREGATED_STEP:
        return base
    slot = float(max(1, round(step)))

    def span(seconds: float) -> float:  # at least `seconds`, a whole number of slots
        return math.ceil(seconds / slot - 1e-9) * slot

    baseline = span(max(base.baseline_seconds, 100 * slot))
    per_baseline = baseline / slot
    samples_per_quiet_period = _TARGET_QUIET_SECONDS / slot
    threshold = 10 + math.log(samples_per_quiet_period / _FALSE_ALARM_SAMPLES_AT_H10)
    return replace(
        base,
        threshold=min(base.threshold, max(4.0, threshold)),
        # Each point already summarises a step; the per-sample persistence test would need
        # several steps of extra evidence, so an aggregated series pages on the crossing alone.
        persist_seconds=0.0,
        score_persist_seconds=0.0,
        # A p99 of the ~100-240 aggregated points in a baseline rests on 1-2 of them.
        tail_quantile=None,
        # Points are precise (each a p95 of a whole step): shifts worth a page are several of
        # their sigmas, so the magnitude test looks for bigger ones (k = 0.5) and lets a point
        # far above the baseline count for more, but never alone (at most 0.55 h per point).
        # Same eight-week budget as the exceedance CUSUM (measured at 1/s and 1-min steps: one
        # false page a week on its own with the key's weekly budget; 0.38 a week with this).
        score_k=0.5 if base.score_k is not None else None,
        score_confirm_k=max(base.score_confirm_k, 0.5),
        score_cap=0.55,
        score_far_pairs=step >= 4 * base.persist,
        score_arm_samples=min(base.score_arm_samples, int(0.8 * per_baseline)),
        false_pages_per_week=min(base.false_pages_per_week, 7 * 86400.0 / _TARGET_QUIET_SECONDS),
        slot_seconds=slot,
        short_seconds=span(max(base.short_seconds, 10 * slot)),
        medium_seconds=span(max(base.medium_seconds, 10 * slot)),
        refresh_seconds=span(max(base.refresh_seconds, slot)),
        baseline_seconds=baseline,
        baseline_gap_seconds=span(max(base.baseline_gap_seconds, 10 * slot)),
        arm_samples=min(base.arm_samples, int(0.8 * per_baseline)),
        arm_span_seconds=min(base.arm_span_seconds, 0.5 * baseline),
        fast_arm_samples=min(base.fast_arm_samples, int(0.3 * per_baseline)),
        fast_min_samples=min(base.fast_min_samples, 10),
        crit_min_samples=min(base.crit_min_samples, 10),
        clear_min_samples=min(base.clear_min_samples, 8),
    )


def replay(
    rows: Iterable[Row],
    config: DetectorConfig,
    signal: str = "ttft",
    *,
    fixed_threshold: bool = False,
) -> BacktestResult:
    """Replay `rows`; `fixed_threshold` keeps `config.threshold` for aggregated series too."""
    rows = list(rows)
    step = median_step(rows)
    has_cov = any(r.prompt_tokens is not None or r.inflight is not None for r in rows)
    adapted = config_for_step(step, config)
    config = replace(adapted, threshold=config.threshold) if fixed_threshold else adapted
    if not has_cov:
        config = replace(config, normalization=Normalization.NONE)
    detector = Detector(config, signal=signal)
    alerts: dict[int, Alert] = {}  # as first fired, with the latest severity and resolution
    armed_at: float | None = None
    next_eval = -math.inf
    # Per-request series are evaluated once a second of data time (as the live server does);
    # aggregated ones after every sample.
    every = 1.0 if step < AGGREGATED_STEP else 0.0
    for row in rows:
        detector.observe(row.t, row.value, row.prompt_tokens, row.inflight)
        if row.t < next_eval:
            continue
        next_eval = row.t + every
        for change in detector.evaluate(row.t):
            match change:
                case AlertFired(alert, reopened):
                    kept = alerts.get(alert.id) if reopened else None
                    alerts[alert.id] = alert if kept is None else _reopen(kept, alert)
                case AlertResolved(alert):
                    alerts[alert.id] = replace(alerts[alert.id], resolved_at=alert.resolved_at)
                case AlertEscalated(alert):
                    alerts[alert.id] = replace(alerts[alert.id], severity=Severity.CRIT)
                case _:
                    assert_never(change)
        if armed_at is None and detector.armed:
            armed_at = row.t
    return BacktestResult(list(alerts.values()), config, step, len(rows), armed_at)


def _reopen(kept: Alert, again: Alert) -> Alert:
    crit = Severity.CRIT in (kept.severity, again.severity)
    return replace(kept, resolved_at=None, severity=Severity.CRIT if crit else Severity.WARN)

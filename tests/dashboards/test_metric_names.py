"""Every metric a dashboard or rule queries is one the sidecar exposes (`names.py`)."""

from __future__ import annotations

import re

import pytest

from sidecar.dashboards import all_promql
from sidecar.telemetry import names

# The kind decides the exposed series names; DESIGN §6 and the lead's registry agree on these.
COUNTERS = {
    names.STREAMS,
    names.TOKENS,
    names.COST_USD,
    names.HEARTBEAT_MISSED,
    names.DISCONNECTS,
    names.LEDGER_WRITE_ERRORS,
    names.UNPRICED_STREAMS,
    names.INTERNAL_ERRORS,
    names.UPSTREAM_MALFORMED,
    names.LEDGER_DEAD_LETTER_ROWS,
    names.UNACCOUNTED_REQUESTS,
    names.PASSTHROUGH_REFUSED,
    names.ROUTE_STREAMS,
    names.ROUTE_TOKENS,
}
HISTOGRAMS = {
    names.TIME_TO_FIRST_TOKEN,
    names.INTER_TOKEN_LATENCY,
    names.STREAM_DURATION,
    names.HEARTBEAT_RTT,
    names.UPSTREAM_CANCEL,
}
GAUGES = {
    names.SESSIONS_ACTIVE,
    names.LEDGER_QUEUE_DEPTH,
    names.LEDGER_SPOOLED_ROWS,
    names.DRIFT_P95,
    names.DRIFT_ALERT_ACTIVE,
    names.BUILD_INFO,
    names.BREAKER_OPEN,
}
EXPOSED = (
    {f"{c}_total" for c in COUNTERS}
    | {f"{h}{s}" for h in HISTOGRAMS for s in ("_bucket", "_sum", "_count")}
    | GAUGES
    | {"up"}  # Prometheus' own series per scrape target (SidecarDown, SidecarNotScraped)
)

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"}
KEYWORDS |= {"and", "or", "unless", "inf", "nan"}
STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
MATCHERS = re.compile(r"\{[^}]*\}")
RANGES = re.compile(r"\[[^\]]*\]")
GROUPINGS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
FUNCTIONS = re.compile(r"\b[a-zA-Z_]\w*\s*\(")
IDENTIFIER = re.compile(r"\b[a-zA-Z_:][\w:]*\b")


def metric_names(expr: str) -> set[str]:
    """Identifiers in a PromQL expression that can only be metric names."""
    bare = STRINGS.sub('""', expr)
    bare = MATCHERS.sub(" ", bare)
    bare = RANGES.sub(" ", bare)
    bare = GROUPINGS.sub(" ", bare)
    bare = FUNCTIONS.sub("(", bare)
    return {n for n in IDENTIFIER.findall(bare) if n.lower() not in KEYWORDS}


def test_every_name_in_names_py_has_a_kind() -> None:
    declared = {
        value
        for key, value in vars(names).items()
        if key.isupper() and isinstance(value, str) and value.startswith("sidecar_")
    }
    assert declared == COUNTERS | HISTOGRAMS | GAUGES


def test_the_extractor_finds_names_and_skips_the_rest() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, model) (rate(a_bucket{model=~"x|y"}[5m] offset 1m)))'
        " > 2 and on (model) b_total or vector(0) * sum without (instance) (c)"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c"}


@pytest.mark.parametrize(("where", "expr"), all_promql(), ids=[w for w, _ in all_promql()])
def test_expression_uses_only_exposed_metrics(where: str, expr: str) -> None:
    used = metric_names(expr)
    assert used, f"{where}: no metric in {expr}"
    assert used <= EXPOSED, f"{where}: unknown metrics {sorted(used - EXPOSED)}"

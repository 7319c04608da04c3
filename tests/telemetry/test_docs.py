"""docs/metrics.md is generated from the code and names every DESIGN §6 metric."""

from __future__ import annotations

import re
from pathlib import Path

from sidecar.security.metrics import AUTH_FAILURES, LIMIT_HITS
from sidecar.telemetry import names
from sidecar.telemetry.docs import buckets_summary, render_metrics_doc

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"

# DESIGN §6, as exposed on /metrics: the public contract, spelled out so a rename fails here.
DESIGN_6 = (
    "sidecar_sessions_active",
    "sidecar_streams_total",
    "sidecar_tokens_total",
    "sidecar_cost_usd_total",
    "sidecar_time_to_first_token_seconds",
    "sidecar_inter_token_latency_seconds",
    "sidecar_stream_duration_seconds",
    "sidecar_heartbeat_rtt_seconds",
    "sidecar_heartbeat_missed_total",
    "sidecar_disconnects_total",
    "sidecar_upstream_cancel_seconds",
    "sidecar_ledger_queue_depth",
    "sidecar_ledger_spooled_rows",
    "sidecar_drift_p95_seconds",
    "sidecar_drift_alert_active",
)


def documented() -> dict[str, str]:
    """Metric name → its table row."""
    rows = re.findall(r"^\| `(sidecar_\w+)` \|(.*)$", render_metrics_doc(), re.MULTILINE)
    return dict(rows)


def test_committed_doc_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == render_metrics_doc(), (
        "docs/metrics.md is stale: python -m sidecar.telemetry.docs > docs/metrics.md"
    )


def test_every_design_metric_is_documented() -> None:
    rows = documented()
    assert set(DESIGN_6) <= set(rows)
    constants = {
        value
        for key, value in vars(names).items()
        if key.isupper() and isinstance(value, str) and value.startswith("sidecar_")
    }
    constants |= {AUTH_FAILURES.removesuffix("_total"), LIMIT_HITS.removesuffix("_total")}
    exposed = {name.removesuffix("_total") for name in rows}
    assert constants == exposed, "every names.py metric documented, and nothing else"


def test_edge_build_and_runtime_metrics_are_documented() -> None:
    """They were missing while the doc walked `Metrics`' attributes instead of the registry."""
    doc = render_metrics_doc()
    for name in (AUTH_FAILURES, LIMIT_HITS, "sidecar_build_info", "process_cpu_seconds_total"):
        assert f"| `{name}` |" in doc, name
    assert "| `python_gc_collections_total` | counter | `generation` |" in doc


def test_rows_carry_type_labels_help_and_buckets() -> None:
    rows = documented()
    assert rows["sidecar_tokens_total"].startswith(" counter | `model`, `tenant`, `kind` | Tokens")
    assert "×1.25 each" in rows["sidecar_time_to_first_token_seconds"]
    assert rows["sidecar_sessions_active"].startswith(" gauge | – |"), rows[
        "sidecar_sessions_active"
    ]
    for name in names.OUTCOMES:
        assert f"`{name}`" in render_metrics_doc()


def test_buckets_summary() -> None:
    assert buckets_summary(()) == "–"
    assert buckets_summary((0.5,)) == "0.5 s"
    assert buckets_summary((0.1, 0.2, 0.4)) == "3 from 0.1 s to 0.4 s, ×2 each"

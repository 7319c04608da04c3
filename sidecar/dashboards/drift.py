"""Drift: each latency signal's recent p95 against its baseline, and the detector's alert state.

The sidecar computes these p95s from its own sketches (DESIGN §7) and exports them as gauges, so
this dashboard plots what the detector saw rather than re-deriving quantiles from histograms.
"""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import Dashboard

from sidecar.dashboards import promql as q
from sidecar.dashboards.layout import Section, assemble, datasource_variable, label_variable
from sidecar.dashboards.panels import Bound, Query, graph, single, states
from sidecar.telemetry import names

UID = "sidecar-drift"

SIGNAL_TITLES = {
    "ttft": "Time to first token",
    "itl": "Inter-token latency",
    "heartbeat_rtt": "Heartbeat RTT",
    "upstream_cancel": "Upstream cancel time",
}
BASELINE = "baseline"


def _p95(signal: str, window: str) -> str:
    # One sidecar per model-server replica, each with its own detector: the fleet view takes the
    # worst replica (max); a sum of p95s means nothing.
    chosen = (q.MODEL, f'signal="{signal}"', f'window="{window}"')
    return q.max_by(("model",), q.sel(names.DRIFT_P95, *chosen))


def _signal(signal: str) -> Section:
    queries = [Query(_p95(signal, w), f"{{{{model}}}} {w}") for w in names.DRIFT_WINDOWS]
    recent = [w for w in names.DRIFT_WINDOWS if w != BASELINE]
    ratios = [
        Query(f"{_p95(signal, w)} / {_p95(signal, BASELINE)}", f"{{{{model}}}} {w}") for w in recent
    ]
    title = SIGNAL_TITLES.get(signal, signal)
    return Section(
        title,
        [
            graph(
                f"{title}: p95 by window",
                "Recent windows against the baseline (dashed) the detector compares them with.",
                "s",
                queries,
                dashed=f"/ {BASELINE}$/",
            ),
            graph(
                f"{title}: recent p95 / baseline p95",
                "100% = on baseline. The detector pages on sustained exceedance, not on this "
                "ratio alone (see docs on drift), so short spikes here are expected.",
                "percentunit",
                ratios,
                bounds=[Bound(1.2, "yellow"), Bound(1.5, "red")],
            ),
        ],
    )


def _alerts() -> Section:
    active = q.sel(names.DRIFT_ALERT_ACTIVE, q.MODEL)
    return Section(
        "Alerts",
        [
            single(
                "Drift alerts active",
                "Model × signal pairs whose detector is alerting now.",
                "short",
                Query(f"count({active} > 0) or vector(0)"),
                bounds=[Bound(1, "red")],
                width=6,
                height=8,
            ),
            states(
                "Drift alert state",
                "Per model and signal: the detector's alert state over time.",
                Query(q.max_by(("model", "signal"), active), "{{model}} {{signal}}"),
                {0: ("OK", "green"), 1: ("alert", "red")},
                width=18,
            ),
        ],
    )


def build() -> Dashboard:
    # No tenant variable: the drift gauges are per model and signal only.
    return assemble(
        uid=UID,
        title="AI stream sidecar / Drift",
        description="Early warning: recent p95 latency against baseline per signal and model.",
        variables=[
            datasource_variable(),
            label_variable("model", "Model", f"label_values({names.DRIFT_P95}, model)"),
        ],
        sections=[_alerts(), *(_signal(s) for s in names.DRIFT_SIGNALS)],
    )

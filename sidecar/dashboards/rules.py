"""Prometheus alerting rules for the whole fleet (DESIGN §7, last paragraph).

Each rule aggregates across sidecars (one per model-server replica) so it pages once per model or
per broken instance, not once per replica. Latency drift is not here: the sidecar pushes
`SidecarLatencyDrift` to Alertmanager itself (`sidecar.telemetry.alerts` says why), and a rule of
the same name paged a second time. Severities are `warning` or `critical`; every alert links its
section of docs/runbook.md. Rate-based rules carry a minimum-traffic guard: a
ratio or a p95 over a handful of requests is noise (DRIFT.md), and an idle model must not page.
The bounds are starting points; tune them with `Bounds` and regenerate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml  # type: ignore[import-untyped,unused-ignore]  # types-PyYAML is optional

from sidecar.dashboards import promql as q
from sidecar.telemetry import alerts, names

GROUP = "ai-stream-sidecar"


@dataclass(frozen=True, slots=True)
class Bounds:
    waste_percent: float = 25.0
    waste_min_generated_tokens_per_s: float = 1.0
    heartbeat_misses_per_s: float = 0.2
    heartbeat_spike_factor: float = 3.0
    ttft_p95_seconds: float = 2.0
    ttft_min_streams_per_s: float = 0.05
    ledger_queue_rows: int = 5000
    # Which `up` series are sidecars: a PodMonitor's job is "<namespace>/<name>" (deploy/).
    scrape_job: str = 'job=~".*sidecar.*"'


@dataclass(frozen=True, slots=True)
class Rule:
    alert: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str


def _waste(b: Bounds) -> Rule:
    window = "30m"
    tokens = q.total(names.TOKENS)
    generated = q.sum_by(("model",), q.rate(tokens, 'kind="generated"', window=window))
    return Rule(
        "SidecarTokenWasteHigh",
        f"{q.waste_percent(('model',), window=window)} > {b.waste_percent:g}"
        f" and {generated} > {b.waste_min_generated_tokens_per_s:g}",
        "15m",
        alerts.WARNING,
        'Model {{ $labels.model }} wastes {{ $value | printf "%.0f" }}% of generated tokens',
        f"Over 30 minutes, more than {b.waste_percent:g}% of the tokens generated for "
        "{{ $labels.model }} were never delivered. Clients are leaving mid-stream and upstream "
        "generation is not stopped quickly enough; check upstream cancel time and disconnect "
        "reasons on the Overview dashboard.",
    )


def _heartbeat(b: Bounds) -> Rule:
    missed = q.total(names.HEARTBEAT_MISSED)
    recent = q.sum_by((), q.rate(missed, window="5m"))
    # `or vector(0)`: a fleet with no misses in the previous hour has no series to compare with.
    previous_hour = q.sum_by((), q.rate(missed, window="1h", offset="5m"))
    before = f"({previous_hour} or vector(0))"
    return Rule(
        "SidecarHeartbeatMissesSpiking",
        f"{recent} > {b.heartbeat_misses_per_s:g}"
        f" and {recent} > {b.heartbeat_spike_factor:g} * {before}",
        "5m",
        alerts.WARNING,
        'Heartbeat misses at {{ $value | printf "%.2f" }}/s across the fleet',
        f"Missed heartbeats rose above {b.heartbeat_misses_per_s:g}/s and to more than "
        f"{b.heartbeat_spike_factor:g}x the previous hour's rate: clients or the network between "
        "them and the sidecars are dropping. Streams to lost clients become waste until they are "
        "detected.",
    )


def _ttft(b: Bounds) -> Rule:
    ttft = names.TIME_TO_FIRST_TOKEN
    p95 = q.quantile(0.95, ttft, by=("model",), window="5m")
    volume = q.sum_by(("model",), q.rate(f"{ttft}_count", window="5m"))
    return Rule(
        "SidecarTimeToFirstTokenHigh",
        f"{p95} > {b.ttft_p95_seconds:g} and {volume} > {b.ttft_min_streams_per_s:g}",
        "10m",
        alerts.WARNING,
        'Fleet p95 time to first token for {{ $labels.model }} is {{ $value | printf "%.2f" }}s',
        "Across all sidecars, the p95 time to first token of {{ $labels.model }} has been above "
        f"{b.ttft_p95_seconds:g}s for 10 minutes. The model servers are overloaded or degraded.",
    )


def _ledger(b: Bounds) -> list[Rule]:
    errors = q.sum_by(("instance",), q.rate(q.total(names.LEDGER_WRITE_ERRORS), window="5m"))
    spooled = q.max_by(("instance",), names.LEDGER_SPOOLED_ROWS)
    queued = q.max_by(("instance",), names.LEDGER_QUEUE_DEPTH)
    return [
        Rule(
            "SidecarLedgerWriteErrors",
            f"{errors} > 0",
            "5m",
            alerts.WARNING,
            "Ledger writes failing on {{ $labels.instance }}",
            "The sidecar cannot write cost rows to the database. Rows are spooled locally and "
            "replayed later, so nothing is lost yet; check the database and its credentials.",
        ),
        Rule(
            "SidecarLedgerSpooling",
            f"{spooled} > 0",
            "10m",
            alerts.WARNING,
            '{{ $value | printf "%.0f" }} ledger rows spooled on {{ $labels.instance }}',
            "Cost rows are piling up in the local spool because the database is unreachable: "
            "`sidecar report` is behind and the spool grows on local disk.",
        ),
        Rule(
            "SidecarLedgerBacklog",
            f"{queued} > {b.ledger_queue_rows}",
            "10m",
            alerts.WARNING,
            '{{ $value | printf "%.0f" }} ledger rows queued on {{ $labels.instance }}',
            "The batch writer is not keeping up with finished streams; the database is slow.",
        ),
    ]


def _unpriced() -> Rule:
    unpriced = q.sum_by(("model",), q.increase(q.total(names.UNPRICED_STREAMS), window="15m"))
    return Rule(
        "SidecarUnpricedStreams",
        f"{unpriced} > 0",
        "0s",
        alerts.WARNING,
        "Streams on {{ $labels.model }} have no price",
        "Streams ran on a model with no price in force, so their cost is missing from the "
        "ledger and the Cost dashboard. Add one with `sidecar prices`.",
    )


def _scrape(b: Bounds) -> list[Rule]:
    up = q.sel("up", b.scrape_job)
    return [
        Rule(
            "SidecarDown",
            f"{up} == 0",
            "5m",
            alerts.CRITICAL,
            "Sidecar {{ $labels.instance }} is down or its /metrics does not answer",
            "Prometheus has failed to scrape {{ $labels.instance }} for 5 minutes. Clients of that "
            "replica get no answers if the process is gone; if only the admin port is stuck, "
            "metrics, probes and drift gauges are blind there.",
        ),
        Rule(
            "SidecarNotScraped",
            f"absent({up})",
            "15m",
            alerts.WARNING,
            "No sidecar is being scraped",
            "Prometheus has no scrape target for any sidecar: the PodMonitor or scrape job is "
            "missing or selects nothing, so every sidecar alert here is silent.",
        ),
    ]


def rules(bounds: Bounds | None = None) -> list[Rule]:
    b = bounds or Bounds()
    return [_waste(b), _heartbeat(b), _ttft(b), *_ledger(b), _unpriced(), *_scrape(b)]


def document(bounds: Bounds | None = None) -> dict[str, Any]:
    """The rule file as Prometheus reads it (`rule_files:`)."""
    entries = [
        {
            "alert": r.alert,
            "expr": r.expr,
            "for": r.for_,
            "labels": {"severity": r.severity},
            "annotations": {
                "summary": r.summary,
                "description": r.description,
                "runbook_url": alerts.runbook_url(r.alert),
            },
        }
        for r in rules(bounds)
    ]
    return {"groups": [{"name": GROUP, "rules": entries}]}


def prometheus_rule(bounds: Bounds | None = None) -> dict[str, Any]:
    """The same rules as a Prometheus Operator `PrometheusRule` (deploy/kubernetes/)."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": GROUP, "labels": {"app.kubernetes.io/name": GROUP}},
        "spec": document(bounds),
    }


def render_prometheus_rule(bounds: Bounds | None = None) -> str:
    header = "# Generated by `sidecar dashboards build`; edit sidecar/dashboards/rules.py.\n"
    body: str = yaml.safe_dump(prometheus_rule(bounds), sort_keys=True, width=4096)
    return header + body


def render(bounds: Bounds | None = None) -> str:
    header = "# Generated by `sidecar dashboards build`; edit sidecar/dashboards/rules.py.\n"
    # A wide line keeps each expression on one line, as people grep and paste them.
    body: str = yaml.safe_dump(document(bounds), sort_keys=True, width=4096, allow_unicode=True)
    return header + body

"""Overview: who is connected, how streams end, and how fast tokens arrive."""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import Dashboard

from sidecar.dashboards import promql as q
from sidecar.dashboards.layout import Section, assemble, datasource_variable, label_variable
from sidecar.dashboards.panels import Bound, Query, graph, single
from sidecar.telemetry import names

UID = "sidecar-overview"

PERCENTILES = (0.5, 0.95, 0.99)


def _percentiles(histogram: str, *matchers: str, by: tuple[str, ...]) -> list[Query]:
    suffix = " {{model}}" if "model" in by else ""
    return [
        Query(q.quantile(p, histogram, *matchers, by=by), f"p{round(p * 100)}{suffix}")
        for p in PERCENTILES
    ]


def _traffic() -> Section:
    streams = q.total(names.STREAMS)
    started = q.sum_by((), q.rate(streams, *q.BY_MODEL_TENANT))
    completed = q.sum_by((), q.rate(streams, 'outcome="completed"', *q.BY_MODEL_TENANT))
    return Section(
        "Traffic",
        [
            single(
                "Active sessions",
                "WebSocket sessions open right now, across all sidecars.",
                "short",
                Query(q.sum_by((), names.SESSIONS_ACTIVE)),
            ),
            single(
                "Streams / s",
                "Requests finishing per second (any outcome) for the selected models and tenants.",
                "reqps",
                Query(started),
            ),
            single(
                "Completed",
                "Share of streams that ended `completed`; the rest were cancelled, lost or failed.",
                "percent",
                Query(f"100 * {completed} / {started}"),
                bounds=[Bound(0, "red"), Bound(90, "yellow"), Bound(99, "green")],
            ),
            single(
                "Heartbeat misses / s",
                "Pings not answered in time; a rise means clients or the network are dropping.",
                "cps",
                Query(q.sum_by((), q.rate(q.total(names.HEARTBEAT_MISSED)))),
                bounds=[Bound(0.1, "yellow"), Bound(1, "red")],
            ),
            graph(
                "Active sessions by sidecar",
                "Open WebSocket sessions per sidecar instance.",
                "short",
                [Query(q.sum_by(("instance",), names.SESSIONS_ACTIVE), "{{instance}}")],
            ),
            graph(
                "Streams by outcome",
                "Streams ending per second, by outcome (DESIGN §4).",
                "reqps",
                [
                    Query(
                        q.sum_by(("outcome",), q.rate(streams, *q.BY_MODEL_TENANT)),
                        "{{outcome}}",
                    )
                ],
                stacked=True,
            ),
        ],
    )


def _latency() -> Section:
    return Section(
        "Latency",
        [
            graph(
                "Time to first token",
                "From request forwarded upstream to first delta relayed; p50/p95/p99 by model.",
                "s",
                _percentiles(names.TIME_TO_FIRST_TOKEN, q.MODEL, by=("model",)),
            ),
            graph(
                "Inter-token latency",
                "Gap between consecutive deltas; p50/p95/p99 by model.",
                "s",
                _percentiles(names.INTER_TOKEN_LATENCY, q.MODEL, by=("model",)),
            ),
            graph(
                "Stream duration p95",
                "p95 wall time of a stream by model and outcome.",
                "s",
                [
                    Query(
                        q.quantile(0.95, names.STREAM_DURATION, q.MODEL, by=("model", "outcome")),
                        "{{model}} {{outcome}}",
                    )
                ],
                width=24,
            ),
        ],
    )


def _connections() -> Section:
    disconnects = q.rate(q.total(names.DISCONNECTS))
    return Section(
        "Connections",
        [
            graph(
                "Heartbeat RTT",
                "WebSocket ping to pong round trip; p50/p95/p99 over all sessions.",
                "s",
                _percentiles(names.HEARTBEAT_RTT, by=()),
            ),
            graph(
                "Heartbeat misses",
                "Pings whose pong missed the deadline, per second.",
                "cps",
                [Query(q.sum_by((), q.rate(q.total(names.HEARTBEAT_MISSED))), "misses")],
            ),
            graph(
                "Disconnects by reason",
                "Why connections closed, per second.",
                "cps",
                [Query(q.sum_by(("reason",), disconnects), "{{reason}}")],
                stacked=True,
            ),
            graph(
                "Upstream cancel time",
                "From 'client gone' to upstream response closed: how long tokens kept being "
                "billed after nobody was reading. p50/p95/p99.",
                "s",
                _percentiles(names.UPSTREAM_CANCEL, by=()),
            ),
        ],
    )


def _ledger() -> Section:
    return Section(
        "Ledger",
        [
            graph(
                "Ledger queue depth",
                "Rows waiting for the batch writer, per sidecar.",
                "short",
                [Query(q.sum_by(("instance",), names.LEDGER_QUEUE_DEPTH), "{{instance}}")],
                width=8,
            ),
            graph(
                "Spooled rows",
                "Rows kept in the local spool because the database is unreachable; replayed "
                "when it is back. Above zero means the bill in SQL is behind.",
                "short",
                [Query(q.sum_by(("instance",), names.LEDGER_SPOOLED_ROWS), "{{instance}}")],
                width=8,
                bounds=[Bound(1, "orange")],
            ),
            graph(
                "Ledger write errors",
                "Failed database writes per second, per sidecar.",
                "cps",
                [
                    Query(
                        q.sum_by(("instance",), q.rate(q.total(names.LEDGER_WRITE_ERRORS))),
                        "{{instance}}",
                    )
                ],
                width=8,
            ),
        ],
    )


def build() -> Dashboard:
    streams = q.total(names.STREAMS)
    return assemble(
        uid=UID,
        title="AI stream sidecar / Overview",
        description="Sessions, stream outcomes, token latency and connection health.",
        variables=[
            datasource_variable(),
            label_variable("model", "Model", f"label_values({streams}, model)"),
            label_variable("tenant", "Tenant", f"label_values({q.sel(streams, q.MODEL)}, tenant)"),
        ],
        sections=[_traffic(), _latency(), _connections(), _ledger()],
    )

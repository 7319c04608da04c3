"""A stand-in for a sidecar's `/metrics`: every DESIGN §6 family with sample data.

Each scrape first records one more burst of traffic, so counters and histogram buckets move
between scrapes and `rate()` / `histogram_quantile()` have something to compute. The traffic is
deliberately unhealthy (60% waste, one model with slow first tokens, a database outage, one drift
alert) so that every alert rule's expression returns series as well as every panel's. Bursts are
large because the rules' `rate(x[30m])` divides by the whole window even when Prometheus has only
seen a few seconds of it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from sidecar.telemetry import names

MODELS = ("fast-model", "slow-model")
TENANTS = ("acme", names.OTHER_TENANT)
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Per tick and per (model, tenant): generated = delivered + wasted.
TOKENS = {"prompt": 5_000, "generated": 10_000, "delivered": 4_000, "wasted": 6_000}
USD_PER_TOKEN = 0.000002
EVENTS = 100  # observations, misses, errors per tick
DRIFT_P95 = {"short": 0.8, "medium": 0.6, "baseline": 0.5}


class FakeSidecarMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sessions = Gauge(names.SESSIONS_ACTIVE, "sessions", registry=r)
        self.streams = Counter(names.STREAMS, "streams", ["model", "tenant", "outcome"], registry=r)
        self.tokens = Counter(names.TOKENS, "tokens", ["model", "tenant", "kind"], registry=r)
        self.cost = Counter(names.COST_USD, "cost", ["model", "tenant", "kind"], registry=r)
        self.ttft = self._histogram(names.TIME_TO_FIRST_TOKEN, ["model"])
        self.itl = self._histogram(names.INTER_TOKEN_LATENCY, ["model"])
        self.duration = self._histogram(names.STREAM_DURATION, ["model", "outcome"])
        self.rtt = self._histogram(names.HEARTBEAT_RTT, [])
        self.cancel = self._histogram(names.UPSTREAM_CANCEL, [])
        self.missed = Counter(names.HEARTBEAT_MISSED, "missed", registry=r)
        self.disconnects = Counter(names.DISCONNECTS, "disconnects", ["reason"], registry=r)
        self.queue = Gauge(names.LEDGER_QUEUE_DEPTH, "queue", registry=r)
        self.spooled = Gauge(names.LEDGER_SPOOLED_ROWS, "spooled", registry=r)
        self.write_errors = Counter(names.LEDGER_WRITE_ERRORS, "write errors", registry=r)
        self.drift_p95 = Gauge(names.DRIFT_P95, "p95", ["model", "signal", "window"], registry=r)
        self.drift_alert = Gauge(names.DRIFT_ALERT_ACTIVE, "alert", ["model", "signal"], registry=r)
        self.unpriced = Counter(names.UNPRICED_STREAMS, "unpriced", ["model"], registry=r)
        self.route_tokens = Counter(
            names.ROUTE_TOKENS, "route tokens", ["route", "ingress", "kind"], registry=r
        )
        self.unaccounted = Counter(names.UNACCOUNTED_REQUESTS, "bypass", ["route"], registry=r)
        self.tick()

    def _histogram(self, name: str, labels: list[str]) -> Histogram:
        return Histogram(name, name, labels, buckets=BUCKETS, registry=self.registry)

    def tick(self) -> None:
        """Record one more second of traffic."""
        self.sessions.set(12)
        for model in MODELS:
            for tenant in TENANTS:
                self.streams.labels(model, tenant, "completed").inc(3)
                self.streams.labels(model, tenant, "client_gone").inc(1)
                for kind, count in TOKENS.items():
                    self.tokens.labels(model, tenant, kind).inc(count)
                    self.cost.labels(model, tenant, kind).inc(count * USD_PER_TOKEN)
            for _ in range(EVENTS):
                self.ttft.labels(model).observe(3.0 if model == "slow-model" else 0.2)
                self.itl.labels(model).observe(0.03)
                self.duration.labels(model, "completed").observe(4.0)
            for signal in names.DRIFT_SIGNALS:
                for window in names.DRIFT_WINDOWS:
                    self.drift_p95.labels(model, signal, window).set(DRIFT_P95[window])
                alerting = model == "slow-model" and signal == "ttft"
                self.drift_alert.labels(model, signal).set(1 if alerting else 0)
        for _ in range(EVENTS):
            self.rtt.observe(0.02)
            self.cancel.observe(0.15)
        self.missed.inc(EVENTS)
        for reason in names.DISCONNECT_REASONS:
            self.disconnects.labels(reason).inc(EVENTS)
        self.queue.set(6000)
        self.spooled.set(42)
        self.write_errors.inc(EVENTS)
        self.unpriced.labels("slow-model").inc(EVENTS)
        for route in ("chat", "responses", "messages"):
            for kind, count in TOKENS.items():
                self.route_tokens.labels(route, "http", kind).inc(count)
        self.unaccounted.labels("/v1/models").inc(EVENTS)

    def exposition(self) -> bytes:
        self.tick()
        return generate_latest(self.registry)


@contextlib.contextmanager
def serving(metrics: FakeSidecarMetrics) -> Iterator[str]:
    """Serve `metrics` at http://127.0.0.1:PORT/metrics; yields "127.0.0.1:PORT"."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = metrics.exposition()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep pytest output clean

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

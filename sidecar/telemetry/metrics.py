"""Prometheus metrics of DESIGN §6, registered on an injected registry (never the global one).

Histogram buckets are geometric and dense around each signal's latency targets, so that a p95
read back with `histogram_quantile` stays within a few percent.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client import Histogram as _Histogram
from prometheus_client.values import MutexValue

from sidecar.telemetry import names


class Histogram(_Histogram):
    """`prometheus_client.Histogram` whose `observe` finds the bucket by bisection.

    The library scans the bounds in order: with the 40-odd buckets these signals need, an
    inter-token gap of 60 ms took some twenty comparisons in Python, once per relayed token
    (1.06 → 0.64 µs per observation here). Exposition and every other method are the
    library's own; tests/telemetry/test_histogram.py compares the two expositions.
    """

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        if exemplar or amount != amount:  # exemplars and NaN: exactly as the library does it
            super().observe(amount, exemplar)
            return
        self._raise_if_not_observable()  # type: ignore[no-untyped-call]
        self._sum.inc(amount)
        # The first bound >= amount, as the library's `amount <= bound`; the last is +Inf.
        self._buckets[bisect_left(self._upper_bounds, amount)].inc(1)


class LoopHistogram(Histogram):
    """A `Histogram` observed from the event loop's thread only (time to first token and
    inter-token gaps, once per relayed read): its children add to their values directly.

    The library takes a lock per value and checks the child twice per observation; with only
    one writer thread the lock guards nothing (readers still take it, and see either the old
    or the new float). In multiprocess mode (other value classes) the library's path runs.
    """

    def _metric_init(self) -> None:
        super()._metric_init()
        self._plain = type(self._sum) is MutexValue

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        # A parent (no label values) has no values: the library raises, as it should.
        if not self._labelvalues or exemplar or amount != amount or not self._plain:
            super().observe(amount, exemplar)
            return
        self._sum._value += amount
        self._buckets[bisect_left(self._upper_bounds, amount)]._value += 1


class LoopCounter(Counter):
    """A `Counter` incremented from the event loop's thread only (a stream's end adds to about
    ten of them): its children add to their values directly, as `LoopHistogram` does."""

    def _metric_init(self) -> None:
        super()._metric_init()
        self._plain = type(self._value) is MutexValue

    def inc(self, amount: float = 1, exemplar: dict[str, str] | None = None) -> None:
        if not self._labelvalues or exemplar or not amount >= 0 or not self._plain:
            super().inc(amount, exemplar)  # parents, exemplars, NaN and errors: the library's
            return
        self._value._value += amount


def geometric(start: float, stop: float, factor: float) -> tuple[float, ...]:
    buckets = []
    value = start
    while value < stop * (1 - 1e-9):
        buckets.append(float(f"{value:.6g}"))
        value *= factor
    buckets.append(float(stop))  # the top bucket is exactly the intended bound
    return tuple(buckets)


TTFT_BUCKETS = geometric(0.005, 60.0, 1.25)
ITL_BUCKETS = geometric(0.0005, 5.0, 1.25)
DURATION_BUCKETS = geometric(0.05, 1800.0, 1.5)
RTT_BUCKETS = geometric(0.0001, 30.0, 1.3)
# Closing a response takes microseconds; a slow event loop or SGLang's abort takes longer.
CANCEL_BUCKETS = geometric(0.00001, 30.0, 1.4)


class TenantLabels:
    """Bounds tenant label cardinality to the busiest tenants (by streams); the rest are
    `other`. The ledger always keeps the real tenant.

    The first `top_n` tenants get a label at once. After that, a tenant whose stream count
    overtakes the quietest labelled tenant is promoted, up to `2 * top_n` labels in all, so a
    big customer that arrives late still gets its own series. Labels are never taken back (a
    live counter cannot move): totals summed over tenants stay exact, and a promoted tenant's
    earlier traffic stays under `other`. Counts of unlabelled tenants are kept for the busiest
    `8 * top_n` only (a bounded heavy-hitters table), so memory stays bounded too.
    """

    def __init__(self, top_n: int) -> None:
        self.top_n = top_n
        self._labelled: dict[str, int] = {}  # tenant -> streams seen
        self._candidates: dict[str, int] = {}

    def __call__(self, tenant: str) -> str:
        labelled = self._labelled
        if tenant in labelled:
            labelled[tenant] += 1
            return tenant
        if len(labelled) < self.top_n:
            labelled[tenant] = 1
            return tenant
        count = self._candidates.pop(tenant, 0) + 1
        if len(labelled) < 2 * self.top_n and count > min(labelled.values()):
            labelled[tenant] = count
            return tenant
        self._candidates[tenant] = count
        if len(self._candidates) > 8 * self.top_n:
            # Drop the quietest candidate: a tenant busy enough to matter comes back quickly.
            del self._candidates[min(self._candidates, key=self._candidates.__getitem__)]
        return names.OTHER_TENANT


class ModelLabels:
    """Bounds model label cardinality, and keeps the labels for real models: clients may send
    any string as `model`, and a flood of made-up names must not take every label first.

    A model gets its own label when an operator pinned it (`--model-label`), or when the
    upstream's `GET /v1/models` lists it (`listed()`, refreshed periodically; up to
    `max_models` of those); anything else is `other`. Until the upstream has answered that
    list once (some servers do not serve it), a model gets a label once the upstream has
    streamed tokens for it, first come first served, up to `max_models`. Labels are never
    taken back (a live counter cannot move). The drift monitor keys on the same labels.
    """

    def __init__(
        self, max_models: int = names.MAX_MODEL_LABELS, pinned: Iterable[str] = ()
    ) -> None:
        self.max_models = max_models
        self.pinned = frozenset(pinned)
        self._known: set[str] = set(self.pinned)
        self._admitted = 0  # labels given beyond the pinned ones
        self._listed: frozenset[str] | None = None  # None: the upstream never listed its models

    def listed(self, models: Iterable[str]) -> None:
        """The upstream's current `GET /v1/models` ids."""
        self._listed = frozenset(models)

    def __call__(self, model: str, answered: bool) -> str:
        if model in self._known:
            return model
        listed = self._listed
        admissible = model in listed if listed is not None else answered
        if admissible and self._admitted < self.max_models:
            self._known.add(model)
            self._admitted += 1
            return model
        return names.OTHER_MODEL


class Metrics:
    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        tenant_top_n: int = 20,
        model_labels: Iterable[str] = (),
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.tenant = TenantLabels(tenant_top_n)
        self.model = ModelLabels(pinned=model_labels)
        r = self.registry
        self.sessions_active = Gauge(
            names.SESSIONS_ACTIVE, "WebSocket sessions currently open.", registry=r
        )
        self.streams = LoopCounter(
            names.STREAMS, "Streams ended, by outcome.", ["model", "tenant", "outcome"], registry=r
        )
        self.tokens = LoopCounter(
            names.TOKENS,
            "Tokens by kind: prompt, generated (by the upstream), delivered (to the client), "
            "wasted (generated - delivered).",
            ["model", "tenant", "kind"],
            registry=r,
        )
        self.cost = LoopCounter(
            names.COST_USD,
            "Cost in USD by kind (prompt, generated, delivered, wasted); "
            "total = prompt + generated.",
            ["model", "tenant", "kind"],
            registry=r,
        )
        self.ttft = LoopHistogram(
            names.TIME_TO_FIRST_TOKEN,
            "Time from forwarding a request upstream to relaying its first content delta.",
            ["model"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.itl = LoopHistogram(
            names.INTER_TOKEN_LATENCY,
            "Gap between consecutive content deltas of a stream.",
            ["model"],
            buckets=ITL_BUCKETS,
            registry=r,
        )
        self.duration = LoopHistogram(
            names.STREAM_DURATION,
            "Stream duration from request to end, by outcome.",
            ["model", "outcome"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.heartbeat_rtt = Histogram(
            names.HEARTBEAT_RTT,
            "Round-trip time of WebSocket protocol pings.",
            buckets=RTT_BUCKETS,
            registry=r,
        )
        self.heartbeat_missed = Counter(
            names.HEARTBEAT_MISSED, "Pings whose pong missed its deadline.", registry=r
        )
        self.disconnects = Counter(
            names.DISCONNECTS, "Client connections ended, by reason.", ["reason"], registry=r
        )
        self.upstream_cancel = Histogram(
            names.UPSTREAM_CANCEL,
            "Time from detecting that nobody listens to closing the upstream response.",
            buckets=CANCEL_BUCKETS,
            registry=r,
        )
        self.ledger_queue_depth = Gauge(
            names.LEDGER_QUEUE_DEPTH, "Ledger rows waiting to be written.", registry=r
        )
        self.ledger_spooled_rows = Gauge(
            names.LEDGER_SPOOLED_ROWS,
            "Ledger rows held in the local spool file while the database is unreachable.",
            registry=r,
        )
        self.ledger_write_errors = Counter(
            names.LEDGER_WRITE_ERRORS, "Failed ledger write attempts.", registry=r
        )
        self.ledger_dead_letter_rows = Counter(
            names.LEDGER_DEAD_LETTER_ROWS,
            "Ledger rows the database refused (a value it cannot store, not an outage); set "
            "aside in the dead-letter file beside the spool, while every other row is written.",
            registry=r,
        )
        self.unpriced = LoopCounter(
            names.UNPRICED_STREAMS,
            "Streams whose model has no price in force; their cost is unknown, not zero.",
            ["model"],
            registry=r,
        )
        self.internal_errors = Counter(
            names.INTERNAL_ERRORS,
            "Streams ended as internal_error: an unexpected fault of the sidecar (see its log).",
            registry=r,
        )
        self.breaker_open = Gauge(
            names.BREAKER_OPEN,
            "1 while the upstream circuit breaker is open: repeated connection failures, new "
            "streams refused at once with upstream_unavailable and a retry hint.",
            registry=r,
        )
        self.upstream_malformed = Counter(
            names.UPSTREAM_MALFORMED,
            "Upstream stream events that could not be parsed; skipped, the stream goes on.",
            ["model"],
            registry=r,
        )
        self.route_streams = LoopCounter(
            names.ROUTE_STREAMS,
            "Streams ended, by route (chat, completions, responses, messages, embeddings, "
            "realtime) and ingress (ws, http, realtime).",
            ["route", "ingress"],
            registry=r,
        )
        self.route_tokens = LoopCounter(
            names.ROUTE_TOKENS,
            "Tokens by route, ingress and kind (prompt, generated, delivered, wasted): what "
            "each API surface costs and wastes.",
            ["route", "ingress", "kind"],
            registry=r,
        )
        self.unaccounted = Counter(
            names.UNACCOUNTED_REQUESTS,
            "Requests passed to the model server without accounting (GET /v1/models and other "
            "/v1/* routes), by API family (route: /v1/models, /v1/files, ..., or other).",
            ["route"],
            registry=r,
        )
        self.passthrough_refused = Counter(
            names.PASSTHROUGH_REFUSED,
            "Unaccounted /v1/* requests refused with 403 because --passthrough-routes does not "
            "allow their API family (route: /v1/files, ..., or other).",
            ["route"],
            registry=r,
        )
        self.drift_p95 = Gauge(
            names.DRIFT_P95,
            "p95 of a drift signal per window (short, medium, baseline).",
            ["model", "signal", "window"],
            registry=r,
        )
        self.drift_alert_active = Gauge(
            names.DRIFT_ALERT_ACTIVE,
            "1 while a drift alert is active (warn or crit), else 0.",
            ["model", "signal"],
            registry=r,
        )

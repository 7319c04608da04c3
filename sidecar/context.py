"""What every connection shares inside one `sidecar serve` process."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sidecar.accounting.recorder import Recorder
from sidecar.accounting.stream import StreamAccount
from sidecar.drift.monitor import DriftMonitor
from sidecar.ingress.replay import ReplayBudget
from sidecar.live.query import ENDED_KEPT
from sidecar.resume.store import LocalStore, ResumeStore
from sidecar.telemetry.metrics import Metrics
from sidecar.telemetry.spans import Tracing
from sidecar.upstream.breaker import Breaker
from sidecar.upstream.client import UpstreamClient
from sidecar.upstream.flavour import Flavour

if TYPE_CHECKING:
    from prometheus_client.metrics import Histogram

    from sidecar.security.edge import Edge


@dataclass(slots=True)
class Limits:
    max_streams_per_connection: int = 16
    max_buffered_bytes: int = 1024 * 1024  # per connection; beyond it the client is too slow
    send_timeout: float = 10.0  # a send buffer that does not drain for this long: peer is dead


@dataclass(slots=True)
class LatencyObserver:
    """Feeds per-delta latency samples to Prometheus and to the drift detector."""

    metrics: Metrics
    drift: DriftMonitor | None = None
    inflight: Callable[[], int] = lambda: 0
    itl_drift_every: int = 8  # one ITL sample in N feeds drift (see `gap`)
    _itl_seen: int = 0
    _ttft: dict[str, Histogram] = field(default_factory=dict)
    _itl: dict[str, Histogram] = field(default_factory=dict)
    _itl_labelled: dict[str, Histogram] = field(default_factory=dict)  # model -> its own child

    def first_token(self, account: StreamAccount, ttft: float) -> None:
        label = self.metrics.model(account.model, answered=True)
        self._child(self._ttft, self.metrics.ttft, label).observe(ttft)
        if self.drift is not None:
            self.drift.observe(
                "ttft", label, ttft, account.t_last or 0.0, account.prompt_tokens, self.inflight()
            )

    def gap(self, account: StreamAccount, seconds: float) -> None:
        # Once per relayed token: a model that has its own label (the usual case, and a
        # label is never taken back) finds its child by its name, in one lookup.
        child = self._itl_labelled.get(account.model)
        if child is None:
            child = self._labelled_child(self._itl, self._itl_labelled, self.metrics.itl, account)
        child.observe(seconds)
        # The detector costs a few µs per sample, the largest share of the relay's CPU per
        # token when fed every gap; a systematic 1-in-N sample keeps the p95 and the CUSUM's
        # exceedance rate (both are proportions) while cutting that cost N-fold.
        self._itl_seen += 1
        if self.drift is not None and self._itl_seen % self.itl_drift_every == 0:
            label = self.metrics.model(account.model, answered=True)
            self.drift.observe("itl", label, seconds, account.t_last or 0.0, None, self.inflight())

    def _labelled_child(
        self,
        by_label: dict[str, Histogram],
        labelled: dict[str, Histogram],
        histogram: Histogram,
        account: StreamAccount,
    ) -> Histogram:
        label = self.metrics.model(account.model, answered=True)
        child = self._child(by_label, histogram, label)
        if label == account.model:
            labelled[label] = child
        return child

    @staticmethod
    def _child(cache: dict[str, Histogram], histogram: Histogram, label: str) -> Histogram:
        """The histogram child for a model's label (only asked once tokens flowed, so the
        model was answered). Cached: `labels()` costs several µs per call."""
        child = cache.get(label)
        if child is None:
            child = cache[label] = histogram.labels(label)
        return child

    def failed_before_first_token(self, account: StreamAccount, now: float) -> None:
        """Failures are the extreme tail: an error before any token counts as an exceedance."""
        if self.drift is not None and account.t_first is None:
            label = self.metrics.model(account.model, answered=False)
            self.drift.observe("ttft", label, now - account.t_start, now, failed=True)

    def sample(self, signal: str, model: str, value: float, now: float) -> None:
        """`model` is a request's model (drift keys on its label, as the metrics do) or, for
        per-connection signals, `HEARTBEAT_MODEL`."""
        if self.drift is not None:
            label = model if signal == "heartbeat_rtt" else self.metrics.model(model, False)
            self.drift.observe(signal, label, value, now)


@dataclass(slots=True)
class ServerContext:
    upstream: UpstreamClient
    recorder: Recorder
    metrics: Metrics
    instance_id: str
    flavour: Flavour = Flavour.OPENAI
    default_model: str = "unknown"
    heartbeat_interval: float = 20.0
    heartbeat_timeout: float = 20.0
    realtime_upstream: str | None = None  # ws(s)://host:port of realtime sessions; None: refused
    # API families of unaccounted /v1/* routes passed to the model server; None: all of them.
    passthrough_routes: frozenset[str] | None = None
    app_ping_interval: float = 0.0  # > 0: also send protocol-v1 {"type":"ping"} frames
    limits: Limits = field(default_factory=Limits)
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    observer: LatencyObserver | None = None
    tracing: Tracing = field(default_factory=lambda: Tracing(None))
    drift: DriftMonitor | None = None
    edge: Edge | None = None  # authentication and limits, when configured
    resume_grace: float = 0.0  # seconds a lost client's streams keep running for a resume
    resume_buffer: int = 4096  # deltas kept per stream for replay
    resume_buffer_bytes: int = 1024 * 1024  # bytes of kept deltas per connection
    replay_memory: ReplayBudget = field(default_factory=lambda: ReplayBudget(0))  # per process
    sessions: set[Any] = field(default_factory=set)
    parked: dict[str, Any] = field(default_factory=dict)  # resume token -> session
    # Parked sessions shared with other replicas (`--resume-store`); by default none are.
    resume_store: ResumeStore = field(default_factory=LocalStore)
    # HTTP answers in flight that an API key admitted (so that revoking it can end them).
    keyed_http: set[Any] = field(default_factory=set)
    # Every stream not yet ended, on every ingress (sidecar.relay.lifecycle.Stream): the drain
    # waits for these.
    streams: set[Any] = field(default_factory=set)
    # The latest streams to end (one append per ending), for the live view's "just ended".
    ended: deque[StreamAccount] = field(default_factory=lambda: deque(maxlen=ENDED_KEPT))
    draining: bool = False
    # Opens after repeated connection failures: new streams are refused at once, not queued.
    breaker: Breaker = field(default_factory=Breaker)
    # Why the ledger is degraded (rows spooled or dead-lettered), or None: shown by /readyz.
    ledger_health: Callable[[], str | None] = lambda: None

    def __post_init__(self) -> None:
        if self.observer is None:
            running = self.recorder.running
            self.observer = LatencyObserver(self.metrics, self.drift, lambda: len(running))

"""`sidecar serve`: wires ingress, relay, upstream, accounting, ledger and telemetry together
and runs them in one event loop (uvicorn for both listeners, uvloop when available)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import signal
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from sqlalchemy import Engine

from sidecar import logs
from sidecar.accounting.pricefile import parse_price_file
from sidecar.accounting.pricing import PriceBook
from sidecar.accounting.recorder import Recorder
from sidecar.context import Limits, ServerContext
from sidecar.drift.live import DriftSettings, LiveDrift, build_monitor
from sidecar.errors import ConfigError, LedgerError
from sidecar.ingress.admin import AdminAccess, AdminApp
from sidecar.ingress.app import ClientApp
from sidecar.ingress.replay import ReplayBudget
from sidecar.ingress.transport import SidecarWebSocketProtocol
from sidecar.ledger import db, journal
from sidecar.ledger.prices import import_price_file, load_price_book
from sidecar.ledger.recovery import close_interrupted
from sidecar.ledger.rollup import keep_rolled_up
from sidecar.ledger.writer import LedgerGauges, LedgerWriter
from sidecar.netaddr import bind, parse_listen
from sidecar.resume.store import LocalStore, ResumeStore
from sidecar.security import redact
from sidecar.security.edge import Edge, EdgeSettings
from sidecar.telemetry import names
from sidecar.telemetry.metrics import Metrics
from sidecar.telemetry.runtime import register_runtime
from sidecar.telemetry.tracing import (
    Tracing,
    build_tracer_provider,
    capture_content_from_env,
    instrument_http,
)
from sidecar.upstream.client import UpstreamClient
from sidecar.upstream.flavour import Flavour
from sidecar.upstream.realtime import upstream_urls

log = logging.getLogger("sidecar")
# Allocations between young-generation collections (the default is 700; see `main`).
GC_YOUNG_THRESHOLD = 20_000


@dataclass(slots=True)
class ServeSettings:
    listen: str = "127.0.0.1:8080"
    admin_listen: str = "127.0.0.1:9464"
    upstream: str = "http://127.0.0.1:8000"
    realtime_upstream: str | None = None  # default: --upstream's host as ws(s)://
    passthrough_routes: frozenset[str] | None = None  # None: every /v1/* family passes
    db: str = db.DEFAULT_DB
    flavour: Flavour = Flavour.OPENAI
    prices: Path | None = None
    instance_id: str | None = None
    spool_dir: Path = Path(".")
    heartbeat_interval: float = 20.0
    heartbeat_timeout: float = 20.0
    app_ping_interval: float = 0.0
    tcp_user_timeout: float = 30.0
    drain_timeout: float = 30.0
    upstream_first_byte_timeout: float = 300.0
    upstream_idle_timeout: float = 60.0
    default_model: str = "unknown"
    tenant_top_n: int = 20
    model_labels: tuple[str, ...] = ()  # models that always get their own metric label
    max_streams_per_connection: int = 16
    max_buffered_bytes: int = 1024 * 1024
    send_buffer_bytes: int = 0
    send_timeout: float = 10.0
    resume_grace: float = 0.0  # > 0: --on-disconnect grace
    resume_buffer: int = 4096
    resume_buffer_bytes: int = 1024 * 1024  # per connection
    resume_memory: int = 128 * 1024 * 1024  # per process
    resume_store: str | None = None  # redis://HOST:PORT/DB: parked sessions shared by replicas
    upstream_api_key: str | None = None
    trace_console: bool = False
    capture_content: bool = False
    drift: DriftSettings = field(default_factory=DriftSettings)
    edge: EdgeSettings = field(default_factory=EdgeSettings)  # auth, TLS, limits (security)
    # deployment (deploy/): logs, migrations at start
    log_format: str = "text"
    log_level: str = "info"
    access_log: bool = True
    migrate: bool = False
    # the admin listener (sidecar.ingress.admin)
    admin_token: str | None = None
    admin_metrics_open: bool = False
    trace_link: str | None = None


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: `serve` drains on SIGTERM itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def load_prices(engine: Engine, path: Path | None) -> PriceBook:
    """Prices live in the ledger (`sidecar prices`); a `--prices` file is imported first."""
    if path is not None:
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"--prices {path}: cannot read ({exc.strerror})") from None
        import_price_file(engine, parse_price_file(text, str(path)), source=str(path))
    return load_price_book(engine)


async def run(
    settings: ServeSettings,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    parse_listen(settings.listen, "--listen")
    parse_listen(settings.admin_listen, "--admin-listen")
    if settings.migrate:
        await asyncio.to_thread(db.upgrade, settings.db)
        log.info(
            "ledger %s migrated to %s",
            db.redact(settings.db),
            db.head_revision(),
            extra={"event": "ledger_migrated"},
        )
    engine = db.make_engine(settings.db)
    db.require_migrated(engine, settings.db)
    prices = load_prices(engine, settings.prices)
    # Stable across restarts, so the next run can close this one's unfinished streams.
    instance_id = settings.instance_id or f"{socket.gethostname()}-{settings.listen}"
    resume_store = await open_resume_store(settings, instance_id)
    client_sock = bind(settings.listen, "--listen", settings.tcp_user_timeout)
    admin_sock = bind(settings.admin_listen, "--admin-listen")
    metrics = Metrics(tenant_top_n=settings.tenant_top_n, model_labels=settings.model_labels)
    register_runtime(metrics.registry)
    provider = build_tracer_provider(console=settings.trace_console)
    http_upstream, realtime_upstream = upstream_urls(settings.upstream, settings.realtime_upstream)
    tracing = Tracing(
        provider,
        provider_name=settings.flavour.value,
        upstream_url=http_upstream,
        capture_content=settings.capture_content or capture_content_from_env(),
    )
    # One detector per signal for each model label (listed, pinned, `other`, heartbeats' `all`).
    labels = names.MAX_MODEL_LABELS + len(metrics.model.pinned) + 2
    monitor = build_monitor(settings.drift, max_keys=len(names.DRIFT_SIGNALS) * labels)

    spool = settings.spool_dir / f"sidecar-spool-{_safe(instance_id)}.jsonl"
    try:
        settings.spool_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"--spool-dir {settings.spool_dir}: cannot create ({exc.strerror})"
        ) from None
    # A killed run's crash journal joins the spool, so that its final rows are replayed below.
    stem = f"sidecar-{_safe(instance_id)}"
    journal.absorb(settings.spool_dir, stem, spool)
    writer = LedgerWriter(engine, spool, on_change=LedgerGauges(metrics))
    # A previous run's spool holds final rows: replay it before closing what that run left
    # open, so that streams which did finish are not marked interrupted.
    writer.replay_now()
    interrupted = close_interrupted(engine, instance_id)
    if interrupted:
        log.warning(
            "closed %d streams of the previous run as interrupted",
            interrupted,
            extra={"event": "interrupted_streams_closed", "streams": interrupted},
        )
    writer.start()
    crash_journal = journal.Journal(settings.spool_dir, stem, writer.submit)
    upstream = UpstreamClient(
        http_upstream,
        settings.flavour,
        settings.upstream_api_key,
        first_byte_timeout=settings.upstream_first_byte_timeout,
        idle_timeout=settings.upstream_idle_timeout,
    )
    await upstream.start()
    await _list_models(upstream, metrics)  # before the first request: labels go to real models
    access_log = logs.AccessLog(settings.log_format) if settings.access_log else None
    recorder = Recorder(
        metrics,
        crash_journal.submit,
        prices,
        instance_id,
        time.time,
        access_log=access_log,
        journal_only=crash_journal.note,
    )
    crash_journal.on_rotate = recorder.submit_journaled
    drift = LiveDrift(monitor, settings.drift, metrics, crash_journal.submit, instance_id)
    await drift.start()
    edge = Edge(settings.edge, engine, metrics.registry)
    await edge.start()
    ctx = ServerContext(
        ledger_health=writer.health,
        edge=edge,
        upstream=upstream,
        recorder=recorder,
        metrics=metrics,
        instance_id=instance_id,
        flavour=settings.flavour,
        default_model=settings.default_model,
        heartbeat_interval=settings.heartbeat_interval,
        heartbeat_timeout=settings.heartbeat_timeout,
        realtime_upstream=realtime_upstream,
        passthrough_routes=settings.passthrough_routes,
        app_ping_interval=settings.app_ping_interval,
        tracing=tracing,
        resume_grace=settings.resume_grace,
        resume_buffer=settings.resume_buffer,
        resume_buffer_bytes=settings.resume_buffer_bytes,
        resume_store=resume_store,
        replay_memory=ReplayBudget(settings.resume_memory),
        drift=monitor,
        limits=Limits(
            settings.max_streams_per_connection, settings.max_buffered_bytes, settings.send_timeout
        ),
    )
    edge.on_revoked = functools.partial(_close_revoked, ctx)
    client_app = edge.gate(instrument_http(ClientApp(ctx), provider))
    client = _Server(_config(client_app, settings, **edge.uvicorn_options()))
    if settings.send_buffer_bytes:
        client.config.ws = type(
            "BoundedSendBufferProtocol",
            (SidecarWebSocketProtocol,),
            {"send_buffer_bytes": settings.send_buffer_bytes},
        )
    access = AdminAccess(settings.admin_token, settings.admin_metrics_open, settings.trace_link)
    admin = _Server(_config(AdminApp(ctx, access), settings))
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    servers = [
        loop.create_task(client.serve(sockets=[client_sock])),
        loop.create_task(admin.serve(sockets=[admin_sock])),
        loop.create_task(_checkpoints(recorder, engine)),
        loop.create_task(_tick_sessions(ctx)),
        loop.create_task(_refresh_models(upstream, metrics)),
        loop.create_task(keep_rolled_up(engine)),
    ]
    log.warning(
        "sidecar serving %s://%s/v1/stream and %s://%s/v1/chat/completions (and the other "
        "/v1 routes) → %s, realtime → %s (admin http://%s/metrics, ledger %s, auth %s)",
        edge.scheme,
        settings.listen,
        "https" if edge.scheme == "wss" else "http",
        settings.listen,
        http_upstream,
        realtime_upstream,
        settings.admin_listen,
        db.redact(settings.db),
        "on" if edge.auth_enabled else "off",
        extra={"event": "serving", "instance_id": instance_id},
    )
    # Everything allocated so far lives as long as the process: move it out of the collector's
    # view, so full collections (which pause the event loop) only walk per-stream objects.
    gc.collect()
    gc.freeze()
    # A young-generation collection every 700 allocations (the default) walks what a few
    # requests in flight still hold, over and over: about 2 % of the relay's CPU per request
    # (perf, docs/benchmarks.md). Most per-request objects die by reference count first.
    gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)
    # The ledger writer thread runs SQLAlchemy in Python; with the default 5 ms GIL switch
    # interval the event loop can wait that long behind a batch. Switch more often.
    sys.setswitchinterval(0.001)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
        await drain(ctx, client, settings.drain_timeout)
    finally:
        # The admin listener goes last: /metrics keeps the final counts for a last scrape and
        # /readyz says 503 (draining) until the process exits.
        client.should_exit = True
        for task in servers[2:]:
            task.cancel()
        await asyncio.gather(servers[0], *servers[2:], return_exceptions=True)
        await drift.aclose()
        await resume_store.close()
        await edge.aclose()
        await upstream.close()
        await asyncio.to_thread(writer.close)
        crash_journal.close()
        if access_log is not None:
            access_log.close()
        if provider is not None:
            await asyncio.to_thread(provider.shutdown)
        admin.should_exit = True
        await asyncio.gather(servers[1], return_exceptions=True)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def drain(ctx: ServerContext, client: uvicorn.Server, timeout: float) -> None:
    """Stop accepting, let running streams on every ingress finish up to `timeout`, then end
    them as `shutdown` with their true counts and tell their clients (DESIGN §8)."""
    ctx.draining = True
    for server in getattr(client, "servers", []):
        server.close()
    deadline = ctx.clock() + timeout
    while any(s.relaying for s in ctx.streams) and ctx.clock() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    for session in list(ctx.sessions):
        session.shutdown()
    for parked in list(ctx.parked.values()):
        parked.expire("server_drain")
    stopped = [s.task for s in ctx.streams if s.task is not None]
    for stream in list(ctx.streams):  # HTTP answers, and anything a session did not own
        stream.shutdown()
    if stopped:  # their relays tell the clients why (an error event) before the server closes
        await asyncio.wait(stopped, timeout=2.0)
    await asyncio.sleep(0)


PRICE_REFRESH_S = 2  # seconds between price reloads
TICK_SLICES = 10  # the once-a-second session tick runs a tenth of the sessions every 100 ms


def _close_revoked(ctx: ServerContext, key_ids: frozenset[str]) -> None:
    """Connections and HTTP answers admitted by a key that has since been revoked: end them."""
    for session in [*ctx.sessions, *ctx.parked.values()]:
        if session.key_id in key_ids:
            session.revoke()
    for answer in list(ctx.keyed_http):
        if answer.key_id in key_ids:
            answer.revoke()


async def _tick_sessions(ctx: ServerContext) -> None:
    """One task ticks every open session once a second (see WebSocketSession.tick), in slices
    of a tenth every 100 ms: with 10,000 sessions one pass is tens of milliseconds of work, and
    streams on the same event loop must not wait that long."""
    cycle: list[Any] = []
    position = per_slice = 0
    while True:
        await asyncio.sleep(1.0 / TICK_SLICES)
        if position >= len(cycle):
            cycle, position = list(ctx.sessions), 0
            per_slice = -(-len(cycle) // TICK_SLICES)  # ceiling division
        now = ctx.clock()
        for session in cycle[position : position + per_slice]:
            session.tick(now)
        position += per_slice
        if position >= len(cycle):
            cycle = []  # let closed sessions go before the next cycle starts


MODEL_LIST_REFRESH = 60.0  # seconds between reads of the upstream's GET /v1/models


async def _list_models(upstream: UpstreamClient, metrics: Metrics) -> None:
    try:
        ids = await asyncio.wait_for(upstream.model_ids(), 5.0)
    except TimeoutError:
        return
    if ids is not None:
        metrics.model.listed(ids)


async def _refresh_models(upstream: UpstreamClient, metrics: Metrics) -> None:
    """Models the upstream serves now get their own metric label and drift detectors (a
    model loaded later included); see `ModelLabels`."""
    while True:
        await asyncio.sleep(MODEL_LIST_REFRESH)
        await _list_models(upstream, metrics)


async def _checkpoints(recorder: Recorder, engine: Engine) -> None:
    """Counts of running streams every second (crash safety), a tenth of them every 100 ms so
    that a thousand streams' rows are not built in one go. Prices are reloaded every
    PRICE_REFRESH_S (one small query), so `sidecar prices set` reaches a running sidecar within
    seconds; rows recorded unpriced before then are priced by `sidecar prices backfill`."""
    tick = 0
    while True:
        await asyncio.sleep(1.0 / TICK_SLICES)
        recorder.checkpoint_all(time.monotonic(), part=tick % TICK_SLICES, parts=TICK_SLICES)
        tick += 1
        if tick % (PRICE_REFRESH_S * TICK_SLICES) == 0:
            with contextlib.suppress(LedgerError):
                recorder.prices = await asyncio.to_thread(load_price_book, engine)


def _config(app: Any, settings: ServeSettings, **edge: Any) -> uvicorn.Config:
    """`edge`: the client listener's TLS, frame size and HTTP protocol (`Edge.uvicorn_options`)."""
    options: dict[str, Any] = {"http": "httptools", "ws_max_size": 1024 * 1024, **edge}
    return uvicorn.Config(
        app,
        ws=SidecarWebSocketProtocol,
        loop="none",
        lifespan="off",
        ws_ping_interval=settings.heartbeat_interval,
        ws_ping_timeout=settings.heartbeat_timeout,
        ws_per_message_deflate=False,
        log_level="warning",
        log_config=None,  # uvicorn's loggers reach the root handler: one format (sidecar.logs)
        access_log=False,
        timeout_graceful_shutdown=5,
        server_header=False,
        **options,
    )


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


async def open_resume_store(settings: ServeSettings, instance_id: str) -> ResumeStore:
    """The in-process store, or with `--resume-store` Redis (reachable, or a one-line error)."""
    url = settings.resume_store
    if not url:
        return LocalStore()
    from sidecar.resume import redis_store  # only with a store: nothing extra otherwise

    if settings.resume_grace <= 0:
        raise ConfigError("--resume-store needs --on-disconnect grace (nothing is resumable)")
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            f"--resume-store {redis_store.redact(url)}: expected redis://HOST:PORT/DB"
        )
    store = redis_store.RedisStore(
        url, instance_id, settings.resume_grace, max_entries=settings.resume_buffer
    )
    await store.start()
    return store


def main(settings: ServeSettings) -> None:
    logs.configure(settings.log_format, settings.log_level)
    redact.install([settings.upstream_api_key, settings.edge.jwt.secret, settings.admin_token])
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(run(settings))


def loop_factory() -> type[asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return None
    return uvloop.Loop

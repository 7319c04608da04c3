"""Everything `sidecar serve` needs at its edge, built from `EdgeSettings`.

`Edge` owns the refusal counters, the API-key cache and its refresh, the connection limits, the
per-tenant daily budget, and the per-request limits the session applies (`max_tokens`, idle
timeout). `serve` wraps the client app with `edge.gate(app)` and passes `edge.uvicorn_options()`
to the client listener's `uvicorn.Config`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from sidecar.accounting.stream import CHARS_PER_TOKEN
from sidecar.errors import ConfigError
from sidecar.ledger.models import Stream
from sidecar.security.apikeys import ApiKeyStore, KeyCache
from sidecar.security.auth import Authenticator
from sidecar.security.gate import ASGIApp, Gate, GatePolicy
from sidecar.security.handshake import with_handshake_timeout
from sidecar.security.jwt import JwtSettings, JwtVerifier
from sidecar.security.limits import (
    BUDGET_SPENT,
    ConnectionLimits,
    DailyBudget,
    IdleTimer,
    Refusal,
    utc_day,
)
from sidecar.security.metrics import SecurityMetrics
from sidecar.security.output import cap_output, prompt_estimate

log = logging.getLogger("sidecar.security")

AUTH_METHODS = ("none", "apikey", "jwt")


@dataclass(slots=True)
class EdgeSettings:
    auth: tuple[str, ...] = ("none",)
    jwt: JwtSettings = field(default_factory=JwtSettings)
    key_refresh: float = 5.0  # seconds between API-key cache refreshes (revocation delay)
    allowed_origins: tuple[str, ...] = ()
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_connections: int = 10_000
    max_connections_per_tenant: int = 0  # 0: no per-tenant cap
    max_messages_per_second: float = 50.0
    max_frame_bytes: int = 1024 * 1024
    handshake_timeout: float = 10.0
    body_timeout: float = 30.0  # a request body must arrive whole within this; 0: no limit
    body_idle_timeout: float = 10.0  # ...with no gap between its bytes longer than this
    idle_timeout: float = 0.0  # 0: never
    max_tokens_limit: int = 0  # 0: no cap
    tenant_daily_token_budget: int = 0  # 0: unlimited

    def methods(self) -> frozenset[str]:
        chosen = {m for m in self.auth if m != "none"}
        unknown = chosen - set(AUTH_METHODS)
        if unknown:
            raise ConfigError(f"--auth: unknown method(s) {sorted(unknown)}; use {AUTH_METHODS}")
        return frozenset(chosen)


class Edge:
    def __init__(
        self, settings: EdgeSettings, engine: Engine | None, registry: CollectorRegistry
    ) -> None:
        methods = settings.methods()
        if (settings.tls_cert is None) != (settings.tls_key is None):
            raise ConfigError("--tls-cert and --tls-key go together")
        for path in (settings.tls_cert, settings.tls_key):
            if path is not None and not path.is_file():
                raise ConfigError(f"TLS file {path} does not exist")
        self.settings = settings
        self.metrics = SecurityMetrics(registry)
        self.keys: KeyCache | None = None
        self.store: ApiKeyStore | None = None
        if "apikey" in methods:
            if engine is None:
                raise ConfigError("--auth apikey needs the ledger database (--db)")
            self.store = ApiKeyStore(engine)
            self.keys = KeyCache(self.store.snapshot())
        verifier = JwtVerifier(settings.jwt) if "jwt" in methods else None
        self.auth = Authenticator(self.keys, verifier) if methods else None
        self.connections = ConnectionLimits(
            settings.max_connections, settings.max_connections_per_tenant
        )
        self.budget = DailyBudget(settings.tenant_daily_token_budget)
        if settings.tenant_daily_token_budget and not settings.max_tokens_limit:
            log.warning(
                "--tenant-daily-token-budget without --max-tokens-limit: a request that sets "
                "no max_tokens cannot reserve its output, so concurrent streams may overspend"
            )
        if engine is not None and settings.tenant_daily_token_budget:
            self.budget.seed(spent_today(engine, time.time()), time.time())
        self._last_refresh = time.monotonic()  # when the last snapshot read started
        self._fresh_from = self._last_refresh  # the newest snapshot read started then
        self._refresh_lock = asyncio.Lock()
        self._next_refresh: asyncio.Task[None] | None = None
        # Called with the ids of keys revoked (or deleted) since the last refresh, so that
        # connections they admitted are closed, not only new ones refused.
        self.on_revoked: Callable[[frozenset[str]], None] = lambda _ids: None
        self._task: asyncio.Task[None] | None = None

    @property
    def auth_enabled(self) -> bool:
        return self.auth is not None

    def gate(self, app: ASGIApp) -> Gate:
        s = self.settings
        return Gate(
            app,
            self.metrics,
            GatePolicy(
                allowed_origins=frozenset(o.rstrip("/") for o in s.allowed_origins),
                max_messages_per_second=s.max_messages_per_second,
            ),
            self.auth,
            self.connections,
            on_unknown_key=self.refresh_soon if self.store is not None else None,
        )

    def uvicorn_options(self) -> dict[str, Any]:
        """Keyword arguments for the client listener's `uvicorn.Config`."""
        s = self.settings
        options: dict[str, Any] = {
            "ws_max_size": s.max_frame_bytes,
            "http": with_handshake_timeout(
                s.handshake_timeout,
                lambda: self.metrics.limited("handshake_timeout"),
                s.body_timeout,
                s.body_idle_timeout,
                lambda: self.metrics.limited("body_timeout"),
            ),
        }
        if s.tls_cert is not None:
            options["ssl_certfile"] = str(s.tls_cert)
            options["ssl_keyfile"] = str(s.tls_key)
        return options

    @property
    def scheme(self) -> str:
        return "wss" if self.settings.tls_cert is not None else "ws"

    # Per-request hooks for the session and the HTTP relay -----------------------------------

    def admit(
        self,
        body: dict[str, Any],
        tenant: str,
        wall: float,
        *,
        stream: str | None = None,
        generates: bool = True,
    ) -> dict[str, Any] | Refusal:
        """The request body to send upstream (its output bounded by `--max-tokens-limit`), or
        why it is refused (counted). A refused request ends as outcome `rejected` with the
        refusal's code. With `stream`, an admitted request reserves its worst case against
        the tenant's daily budget until `charge(..., stream=stream)` settles it. A request
        that `generates` nothing (embeddings) has no output to bound: only its prompt."""
        if not (generates and self.settings.max_tokens_limit) and not self.budget.tokens_per_day:
            return body  # nothing to bound, nothing to reserve: no walk through the body
        capped = cap_output(body, self.settings.max_tokens_limit) if generates else (body, 0)
        if isinstance(capped, Refusal):
            self.metrics.limited("max_tokens")
            return capped
        if not self.budget.allows(tenant, wall):
            self.metrics.limited("daily_budget")
            return BUDGET_SPENT
        admitted, output = capped
        if stream is not None:
            # Unbounded output (no limit, none asked) reserves only the prompt: see
            # docs/security.md on why a budget wants --max-tokens-limit.
            prompt = prompt_estimate(admitted, CHARS_PER_TOKEN)
            self.budget.reserve(stream, tenant, prompt + (output or 0))
        return admitted

    def charge(
        self,
        tenant: str,
        prompt_tokens: int,
        generated_tokens: int,
        wall: float,
        *,
        stream: str | None = None,
    ) -> None:
        """A stream ended: its reservation (if `admit` made one for `stream`) is released and
        its true tokens count against the tenant's budget for today."""
        self.budget.settle(stream, tenant, prompt_tokens + generated_tokens, wall)

    def idle_timer(self, now: float) -> IdleTimer | None:
        return IdleTimer(self.settings.idle_timeout, now) if self.settings.idle_timeout else None

    # API-key cache -------------------------------------------------------------------------

    async def start(self) -> None:
        if self.store is not None:
            self._task = asyncio.get_running_loop().create_task(self._refresh_loop())

    async def aclose(self) -> None:
        for task in (self._task, self._next_refresh):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.key_refresh)
            await self.refresh()

    async def refresh(self) -> None:
        assert self.store is not None and self.keys is not None
        async with self._refresh_lock:
            started = self._last_refresh = time.monotonic()
            try:
                rows = await asyncio.to_thread(self.store.snapshot)
            except SQLAlchemyError as exc:  # keep the last good snapshot
                log.warning("API keys not refreshed: %s", type(exc).__name__)
                return
            usable = self.keys.usable_ids()
            self.keys.replace(rows)
            self._fresh_from = started
            revoked = usable - self.keys.usable_ids()
            if revoked:
                log.warning("API keys revoked: %s; closing their connections", sorted(revoked))
                self.on_revoked(revoked)

    async def refresh_soon(self) -> None:
        """On an unknown key: wait for a snapshot read that started after now, so that a key
        created before this request is known when it returns. Every request waiting shares
        one read, and reads start at most once a second (this bounds what clients sending
        made-up keys cost the database); a new key's first users wait, they are not refused."""
        asked = time.monotonic()
        for _ in range(2):  # the read under way may have started before `asked`: then one more
            if self._fresh_from >= asked:
                return
            task = self._next_refresh
            if task is None or task.done():
                task = self._next_refresh = asyncio.get_running_loop().create_task(
                    self._refresh_after_pause()
                )
            await asyncio.shield(task)

    async def _refresh_after_pause(self) -> None:
        await asyncio.sleep(max(0.0, self._last_refresh + 1.0 - time.monotonic()))
        await self.refresh()


def spent_today(engine: Engine, wall: float) -> dict[str, int]:
    """Tokens (prompt + generated) per tenant in the ledger since the start of today (UTC);
    refused requests cost nothing (their rows carry a prompt estimate, never charged)."""
    start = datetime.fromtimestamp(utc_day(wall) * 86400, UTC)
    query = (
        select(Stream.tenant, func.sum(Stream.prompt_tokens + Stream.generated_tokens))
        .where(Stream.started_at >= start, Stream.outcome.is_distinct_from("rejected"))
        .group_by(Stream.tenant)
    )
    try:
        with engine.connect() as conn:
            return {tenant: int(total or 0) for tenant, total in conn.execute(query)}
    except SQLAlchemyError as exc:
        log.warning("daily budgets start empty: ledger unreadable (%s)", type(exc).__name__)
        return {}

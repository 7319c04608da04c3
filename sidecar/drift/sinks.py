"""Where alert changes go: a JSON log line, Alertmanager, a JSON webhook, an async callable.

The caller (the evaluate timer) only ever calls `AlertDispatcher.publish`, which puts each change
on one bounded queue per sink and returns; a full queue drops the change and counts it. Each sink
has its own worker task, so a receiver that is down, slow or retrying delays nobody but itself.

Alert timestamps are on the detector's clock (monotonic in the live sidecar); `epoch_offset` is
added to turn them into wall-clock seconds for receivers (`time.time() - time.monotonic()`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol, Self, assert_never

import aiohttp

from sidecar.drift.events import (
    Alert,
    AlertChange,
    AlertEscalated,
    AlertFired,
    AlertResolved,
    Severity,
)
from sidecar.telemetry import alerts

ALERT_NAME = alerts.LATENCY_DRIFT
# Alert labels use the rules' vocabulary; the detector's own (warn/crit) stays in the log,
# the webhook payload, the ledger and `drift backtest`, which are contracts of their own.
SEVERITY_LABEL = {Severity.WARN: alerts.WARNING, Severity.CRIT: alerts.CRITICAL}
log = logging.getLogger("sidecar.drift")


def change_kind(change: AlertChange) -> str:
    match change:
        case AlertFired(_, reopened):
            return "reopened" if reopened else "fired"
        case AlertEscalated():
            return "escalated"
        case AlertResolved():
            return "resolved"
        case _:
            assert_never(change)


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()


def payload(change: AlertChange, epoch_offset: float = 0.0) -> dict[str, Any]:
    """The JSON body for logs and webhooks: the change kind and every field of the alert."""
    a = change.alert
    return {
        "event": change_kind(change),
        "alert": ALERT_NAME,
        "id": a.id,
        "model": a.model,
        "signal": a.signal,
        "severity": a.severity.value,
        "onset": _iso(a.onset + epoch_offset),
        "fired_at": _iso(a.fired_at + epoch_offset),
        "resolved_at": _iso(None if a.resolved_at is None else a.resolved_at + epoch_offset),
        "baseline_p95": a.baseline_p95,
        "short_p95": a.short_p95,
        "medium_p95": a.medium_p95,
        "ratio": round(a.ratio, 4),
        "exceed_fraction": round(a.exceed_fraction, 4),
        "n": a.n,
        "flaps": a.flaps,
    }


class Sink(Protocol):
    name: str
    resend_seconds: float | None  # if set, `resend()` is called this often while idle

    async def send(self, change: AlertChange) -> None: ...
    async def resend(self) -> None: ...


class LogSink:
    name = "log"
    resend_seconds: float | None = None

    def __init__(self, logger: logging.Logger = log, epoch_offset: float = 0.0) -> None:
        self._logger, self._offset = logger, epoch_offset

    async def send(self, change: AlertChange) -> None:
        """One line per change: the payload's fields as log fields (`event: drift_fired`,
        `drift_escalated`, `drift_reopened`, `drift_resolved`), a sentence for people."""
        level = logging.INFO if isinstance(change, AlertResolved) else logging.WARNING
        fields = payload(change, self._offset)
        a = change.alert
        fields["event"] = "drift_" + fields["event"]
        fields["alert_id"] = fields.pop("id")
        self._logger.log(
            level,
            "drift alert %s: %s p95 on %s %.4fs vs baseline %.4fs (%s)",
            change_kind(change),
            a.signal,
            a.model,
            a.medium_p95 or a.short_p95 or 0.0,
            a.baseline_p95,
            a.severity.value,
            extra=fields,
        )

    async def resend(self) -> None:
        return None


class CallableSink:
    """Hands each change to an async callable, e.g. the ledger's writer for the `alerts` table."""

    name = "callable"
    resend_seconds: float | None = None

    def __init__(self, fn: Callable[[AlertChange], Awaitable[None]]) -> None:
        self._fn = fn

    async def send(self, change: AlertChange) -> None:
        await self._fn(change)

    async def resend(self) -> None:
        return None


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    body: Any,
    *,
    attempts: int = 4,
    backoff: float = 0.5,
    request_seconds: float = 5.0,
) -> bool:
    """POST with retries on errors and 5xx/429, backoff doubling from `backoff` (max 30 s)."""
    delay = backoff
    for attempt in range(1, attempts + 1):
        try:
            async with session.post(
                url, json=body, timeout=aiohttp.ClientTimeout(total=request_seconds)
            ) as response:
                if response.status < 300:
                    return True
                if response.status < 500 and response.status != 429:
                    log.warning("drift sink: %s answered %d, not retrying", url, response.status)
                    return False
                reason = f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = type(exc).__name__
        if attempt < attempts:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
    log.warning("drift sink: %s failed after %d attempts (%s)", url, attempts, reason)
    return False


class WebhookSink:
    """POSTs `payload()` as JSON to any URL; retries with exponential backoff."""

    name = "webhook"
    resend_seconds: float | None = None

    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession,
        *,
        attempts: int = 4,
        backoff: float = 0.5,
        epoch_offset: float = 0.0,
    ) -> None:
        self.url, self._session = url, session
        self._attempts, self._backoff, self._offset = attempts, backoff, epoch_offset

    async def send(self, change: AlertChange) -> None:
        body = payload(change, self._offset)
        await post_json(
            self._session, self.url, body, attempts=self._attempts, backoff=self._backoff
        )

    async def resend(self) -> None:
        return None


class AlertmanagerSink:
    """Alertmanager API v2: firing alerts are re-sent every `resend_seconds` (Alertmanager
    expires an alert not heard from within its resolve_timeout); a resolution sends `endsAt`."""

    name = "alertmanager"

    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession,
        *,
        resend_seconds: float = 60.0,
        epoch_offset: float = 0.0,
        attempts: int = 3,
        backoff: float = 0.5,
        generator_url: str = "",
        instance: str = "",
        window_seconds: float = 300.0,
        runbook: str = alerts.RUNBOOK,
    ) -> None:
        self.url = url.rstrip("/") + "/api/v2/alerts"
        self.resend_seconds: float | None = resend_seconds
        self._session, self._offset = session, epoch_offset
        self._attempts, self._backoff, self._generator = attempts, backoff, generator_url
        self._instance, self._window = instance, window_seconds
        self._runbook = alerts.runbook_url(ALERT_NAME, runbook)
        self._firing: dict[tuple[str, str], Alert] = {}

    def _body(self, alert: Alert, ends_at: float | None) -> dict[str, Any]:
        labels = {
            "alertname": ALERT_NAME,
            "model": alert.model,
            "signal": alert.signal,
            "severity": SEVERITY_LABEL[alert.severity],
        }
        if self._instance:
            labels["instance"] = self._instance
        body: dict[str, Any] = {
            "labels": labels,
            "annotations": {
                "summary": f"{alert.signal} p95 drifting on {alert.model or 'upstream'}",
                "description": (
                    f"p95 {alert.medium_p95 or 0:.4f}s over the last {_duration(self._window)} "
                    f"vs baseline {alert.baseline_p95:.4f}s (x{alert.ratio:.2f} load-adjusted), "
                    f"{alert.exceed_fraction:.1%} of {alert.n} samples above reference"
                ),
                "runbook_url": self._runbook,
                "onset": _iso(alert.onset + self._offset) or "",
                "baseline_p95": f"{alert.baseline_p95:.6f}",
                "current_p95": f"{alert.short_p95 or 0:.6f}",
            },
            "startsAt": _iso(alert.fired_at + self._offset),
        }
        if ends_at is not None:
            body["endsAt"] = _iso(ends_at + self._offset)
        if self._generator:
            body["generatorURL"] = self._generator
        return body

    async def _post(self, bodies: list[dict[str, Any]]) -> None:
        if bodies:
            await post_json(
                self._session, self.url, bodies, attempts=self._attempts, backoff=self._backoff
            )

    async def send(self, change: AlertChange) -> None:
        alert = change.alert
        key = (alert.model, alert.signal)
        match change:
            case AlertFired():
                self._firing[key] = alert
                await self._post([self._body(alert, None)])
            case AlertEscalated():
                # severity is a label: the WARN alert ends where the CRIT one begins
                ended = self._body(_with_severity(alert, Severity.WARN), alert.fired_at)
                ended["endsAt"] = datetime.now(UTC).isoformat()
                self._firing[key] = alert
                await self._post([ended, self._body(alert, None)])
            case AlertResolved():
                self._firing.pop(key, None)
                await self._post([self._body(alert, alert.resolved_at)])
            case _:
                assert_never(change)

    async def resend(self) -> None:
        await self._post([self._body(a, None) for a in self._firing.values()])


def _with_severity(alert: Alert, severity: Severity) -> Alert:
    return replace(alert, severity=severity)


def _duration(seconds: float) -> str:
    """`300` -> `5 min`, `30` -> `30 s`: the window an alert's p95 was measured over."""
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


class AlertDispatcher:
    """Fans alert changes out to sinks without ever blocking the caller.

    Use as `async with AlertDispatcher(sinks) as d: d.publish(monitor.evaluate(now))`, or call
    `start()` and `aclose()`. `aclose()` gives queued changes `drain_seconds` to go out.
    """

    def __init__(
        self, sinks: Sequence[Sink], *, queue_size: int = 256, drain_seconds: float = 2.0
    ) -> None:
        self._sinks = list(sinks)
        self._queues = [asyncio.Queue[AlertChange](queue_size) for _ in self._sinks]
        self._tasks: list[asyncio.Task[None]] = []
        self._drain = drain_seconds
        self.dropped: dict[str, int] = {s.name: 0 for s in self._sinks}
        self.failed: dict[str, int] = {s.name: 0 for s in self._sinks}

    def publish(self, changes: Iterable[AlertChange]) -> None:
        for change in changes:
            for sink, queue in zip(self._sinks, self._queues, strict=True):
                try:
                    queue.put_nowait(change)
                except asyncio.QueueFull:
                    self.dropped[sink.name] += 1

    async def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._run(s, q), name=f"drift-sink-{s.name}")
                for s, q in zip(self._sinks, self._queues, strict=True)
            ]

    async def _run(self, sink: Sink, queue: asyncio.Queue[AlertChange]) -> None:
        while True:
            try:
                change = await asyncio.wait_for(queue.get(), sink.resend_seconds)
            except TimeoutError:
                change = None
            try:
                await (sink.resend() if change is None else sink.send(change))
            except Exception:  # a sink's bug must not kill its worker; log it and go on
                self.failed[sink.name] += 1
                log.exception("drift sink %s failed", sink.name)
            finally:
                if change is not None:
                    queue.task_done()

    async def aclose(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._drain):
                for queue in self._queues:
                    await queue.join()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

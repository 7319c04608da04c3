from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sidecar.drift.events import Alert, AlertEscalated, AlertFired, AlertResolved, Severity
from sidecar.drift.sinks import (
    AlertDispatcher,
    AlertmanagerSink,
    CallableSink,
    LogSink,
    WebhookSink,
    payload,
)
from tests.support.ports import free_port

ALERT = Alert(
    1,
    "ttft",
    "llama",
    Severity.WARN,
    1_700_000_000.0,
    1_700_000_030.0,
    None,
    0.8,
    1.3,
    1.2,
    1.4,
    0.12,
    1500,
)


class Receiver:
    """An aiohttp.web server on 127.0.0.1 recording JSON bodies; can fail or stall on demand."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        self.fail_first = 0
        self.delay = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.Response(status=503)
        self.bodies.append(await request.json())
        return web.Response(status=200)


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[tuple[Receiver, str]]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    yield rec, f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def _until(predicate: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_payload_has_every_field() -> None:
    body = payload(AlertFired(ALERT), epoch_offset=0.0)
    assert body["event"] == "fired" and body["severity"] == "warn"
    assert body["fired_at"] == "2023-11-14T22:13:50+00:00"
    assert body["onset"] == "2023-11-14T22:13:20+00:00" and body["resolved_at"] is None
    assert {"baseline_p95", "short_p95", "medium_p95", "ratio", "exceed_fraction", "n"} <= set(body)


def test_webhook_retries_with_backoff() -> None:
    asyncio.run(_webhook_retries())


async def _webhook_retries() -> None:
    async with serving() as (rec, url):
        rec.fail_first = 2
        async with aiohttp.ClientSession() as session:
            sink = WebhookSink(url + "/hook", session, attempts=3, backoff=0.01)
            async with AlertDispatcher([sink]) as dispatcher:
                dispatcher.publish([AlertFired(ALERT)])
                await _until(lambda: rec.bodies)
        assert rec.bodies[0]["event"] == "fired" and rec.fail_first == 0


def test_alertmanager_body_resend_escalate_resolve() -> None:
    asyncio.run(_alertmanager_body())


async def _alertmanager_body() -> None:
    async with serving() as (rec, url):
        async with aiohttp.ClientSession() as session:
            sink = AlertmanagerSink(url, session, resend_seconds=0.05)
            async with AlertDispatcher([sink]) as dispatcher:
                dispatcher.publish([AlertFired(ALERT)])
                await _until(lambda: len(rec.bodies) >= 3)  # the first post and resends
                crit = Alert(**{**_fields(ALERT), "severity": Severity.CRIT})
                dispatcher.publish([AlertEscalated(crit)])
                resolved = Alert(**{**_fields(crit), "resolved_at": 1_700_000_300.0})
                dispatcher.publish([AlertResolved(resolved)])
                await _until(
                    lambda: any(
                        "endsAt" in b[0] and b[0]["labels"]["severity"] == "critical"
                        for b in rec.bodies
                    )
                )
        first = rec.bodies[0][0]
        labels = {"alertname": "SidecarLatencyDrift", "model": "llama", "signal": "ttft"}
        assert first["labels"] == {**labels, "severity": "warning"}
        assert "endsAt" not in first and first["startsAt"] == "2023-11-14T22:13:50+00:00"
        escalation = next(b for b in rec.bodies if len(b) == 2)
        assert escalation[0]["labels"]["severity"] == "warning" and "endsAt" in escalation[0]
        assert escalation[1]["labels"]["severity"] == "critical" and "endsAt" not in escalation[1]
        assert rec.bodies[-1][0]["endsAt"] == "2023-11-14T22:18:20+00:00"


def _fields(alert: Alert) -> dict[str, Any]:
    return {name: getattr(alert, name) for name in Alert.__dataclass_fields__}


def test_down_or_slow_receivers_never_block_publish() -> None:
    asyncio.run(_down_or_slow())


async def _down_or_slow() -> None:
    async with serving() as (rec, url):
        rec.delay = 5.0  # slow
        dead = f"http://127.0.0.1:{free_port()}"  # nothing listens
        async with aiohttp.ClientSession() as session:
            dispatcher = AlertDispatcher(
                [
                    WebhookSink(dead, session, attempts=5, backoff=1.0),
                    AlertmanagerSink(url, session),
                ],
                queue_size=4,
                drain_seconds=0.1,
            )
            await dispatcher.start()
            t0 = time.perf_counter()
            dispatcher.publish([AlertFired(ALERT)] * 100)
            elapsed = time.perf_counter() - t0
            await dispatcher.aclose()
        assert elapsed < 0.05
        assert dispatcher.dropped["webhook"] >= 95 and dispatcher.dropped["alertmanager"] >= 95


def test_callable_and_log_sinks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING", logger="sidecar.drift")
    seen, dispatcher = asyncio.run(_callable_and_log())
    assert seen == [AlertFired(ALERT)]
    assert dispatcher.failed["callable"] == 1
    fired = [r for r in caplog.records if getattr(r, "event", None) == "drift_fired"]
    assert len(fired) == 1 and fired[0].levelname == "WARNING"
    assert fired[0].model == "llama" and fired[0].severity == "warn"  # type: ignore[attr-defined]
    assert fired[0].getMessage().startswith("drift alert fired: ttft p95 on llama")


async def _callable_and_log() -> tuple[list[object], AlertDispatcher]:
    seen: list[object] = []

    async def record(change: object) -> None:
        seen.append(change)

    async def broken(change: object) -> None:
        raise RuntimeError("ledger down")

    sinks = [CallableSink(record), CallableSink(broken), LogSink()]
    async with AlertDispatcher(sinks) as dispatcher:
        dispatcher.publish([AlertFired(ALERT)])
    return seen, dispatcher


def test_real_alertmanager_round_trip(alertmanager_url: str) -> None:
    asyncio.run(_alertmanager_round_trip(alertmanager_url))


async def _alertmanager_round_trip(alertmanager_url: str) -> None:
    now = time.time()
    alert = Alert(**{**_fields(ALERT), "fired_at": now - 5, "onset": now - 60})
    async with aiohttp.ClientSession() as session:
        sink = AlertmanagerSink(alertmanager_url, session)
        await sink.send(AlertFired(alert))
        async with session.get(alertmanager_url + "/api/v2/alerts") as response:
            listed = await response.json()
        mine = [a for a in listed if a["labels"].get("alertname") == "SidecarLatencyDrift"]
        assert len(mine) == 1 and mine[0]["status"]["state"] == "active"
        assert mine[0]["labels"]["model"] == "llama" and mine[0]["labels"]["severity"] == "warning"
        await sink.send(AlertResolved(Alert(**{**_fields(alert), "resolved_at": time.time()})))
        async with session.get(alertmanager_url + "/api/v2/alerts?active=true") as response:
            active = await response.json()
        assert [a for a in active if a["labels"].get("alertname") == "SidecarLatencyDrift"] == []


def test_pushed_alert_names_instance_runbook_source_and_its_window() -> None:
    sink = AlertmanagerSink(
        "http://am:9093",
        None,  # type: ignore[arg-type]  # _body sends nothing
        instance="pod-a",
        generator_url="http://pod-a:9464/metrics",
        window_seconds=30.0,
    )
    body = sink._body(ALERT, None)
    assert body["labels"] == {
        "alertname": "SidecarLatencyDrift",
        "instance": "pod-a",
        "model": "llama",
        "signal": "ttft",
        "severity": "warning",
    }
    assert body["generatorURL"] == "http://pod-a:9464/metrics"
    assert body["annotations"]["runbook_url"].endswith("docs/runbook.md#sidecarlatencydrift")
    assert "over the last 30 s vs baseline" in body["annotations"]["description"]
    five_minutes = AlertmanagerSink("http://am:9093", None)._body(ALERT, None)  # type: ignore[arg-type]
    assert "over the last 5 min vs baseline" in five_minutes["annotations"]["description"]
    assert "instance" not in five_minutes["labels"] and "generatorURL" not in five_minutes


def test_log_sink_resolution_is_info_with_fields(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="sidecar.drift")
    resolved = Alert(**{**_fields(ALERT), "resolved_at": 1_700_000_300.0})
    asyncio.run(LogSink().send(AlertResolved(resolved)))
    (record,) = caplog.records
    assert record.levelname == "INFO" and record.event == "drift_resolved"  # type: ignore[attr-defined]
    assert record.alert_id == 1 and record.resolved_at == "2023-11-14T22:18:20+00:00"  # type: ignore[attr-defined]

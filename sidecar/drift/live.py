"""The drift detector inside `sidecar serve`: sinks, the once-a-second evaluation, the gauges
and the ledger's `alerts` table. The hot path only calls `DriftMonitor.observe`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson

from sidecar.drift.config import DetectorConfig
from sidecar.drift.events import AlertChange, AlertResolved
from sidecar.drift.monitor import DriftMonitor, DriftSnapshot, default_configs
from sidecar.drift.sinks import (
    AlertDispatcher,
    AlertmanagerSink,
    CallableSink,
    LogSink,
    Sink,
    WebhookSink,
)
from sidecar.ledger.writer import Row
from sidecar.telemetry.metrics import Metrics
from sidecar.telemetry.names import DRIFT_WINDOWS

# Short windows for demos and live tests: arms after ~20 s instead of 30 min. Not for paging.
FAST_PROFILE = DetectorConfig(
    slot_seconds=1,
    short_seconds=6,
    medium_seconds=30,
    baseline_seconds=20,
    baseline_gap_seconds=5,
    refresh_seconds=5,
    refit_seconds=30,
    arm_samples=100,
    arm_span_seconds=10,
    fast_arm_samples=50,
    fast_min_samples=20,
    clear_min_samples=40,
    clear_evaluations=2,
    flap_seconds=30,
    onset_lookback=0.5,
)
PROFILES = {"production": DetectorConfig(), "fast": FAST_PROFILE}


@dataclass(slots=True)
class DriftSettings:
    profile: str = "production"
    threshold: float | None = None
    alertmanager_url: str | None = None
    webhook_url: str | None = None
    generator_url: str = ""  # `generatorURL` of pushed alerts: where people see this sidecar


def build_monitor(settings: DriftSettings, max_keys: int = 256) -> DriftMonitor:
    base = PROFILES[settings.profile]
    configs = default_configs(threshold=settings.threshold, base=replace(base))
    return DriftMonitor(configs, max_keys=max_keys)


PER_CONNECTION_SIGNALS = frozenset({"heartbeat_rtt"})


def fold_models(
    snapshot: DriftSnapshot, label: Callable[[str, str], str]
) -> tuple[dict[tuple[str, str, str], float], set[tuple[str, str]]]:
    """The snapshot under metric labels: models that share a label (the `other` fold) show the
    worst p95 among them, and an alert is active on the label while any of them has one."""
    p95: dict[tuple[str, str, str], float] = {}
    for (model, signal, window), value in snapshot.p95.items():
        if window in DRIFT_WINDOWS:
            key = (label(model, signal), signal, window)
            p95[key] = max(value, p95.get(key, value))
    active = {(label(model, signal), signal) for model, signal in snapshot.active}
    return p95, active


class LiveDrift:
    """Owns the monitor's periodic work and the sinks; started and stopped by `serve`."""

    def __init__(
        self,
        monitor: DriftMonitor,
        settings: DriftSettings,
        metrics: Metrics,
        submit: Callable[[Row], None],
        instance_id: str,
    ) -> None:
        self.monitor = monitor
        self.settings = settings
        self.metrics = metrics
        self.submit = submit
        self.instance_id = instance_id
        self.offset = time.time() - time.monotonic()
        self._session: aiohttp.ClientSession | None = None
        self._dispatcher: AlertDispatcher | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        sinks: list[Sink] = [LogSink(epoch_offset=self.offset), CallableSink(self._to_ledger)]
        if self.settings.alertmanager_url or self.settings.webhook_url:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        if self.settings.alertmanager_url and self._session is not None:
            sinks.append(
                AlertmanagerSink(
                    self.settings.alertmanager_url,
                    self._session,
                    epoch_offset=self.offset,
                    instance=self.instance_id,
                    generator_url=self.settings.generator_url,
                    window_seconds=PROFILES[self.settings.profile].medium_seconds,
                )
            )
        if self.settings.webhook_url and self._session is not None:
            sinks.append(
                WebhookSink(self.settings.webhook_url, self._session, epoch_offset=self.offset)
            )
        self._dispatcher = AlertDispatcher(sinks)
        await self._dispatcher.start()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        assert self._dispatcher is not None
        while True:
            await asyncio.sleep(1.0)
            self._dispatcher.publish(self.monitor.evaluate(time.monotonic()))
            self._update_gauges()

    def _update_gauges(self) -> None:
        p95, active = fold_models(self.monitor.snapshot(), self._model_label)
        for (model, signal, window), value in p95.items():
            self.metrics.drift_p95.labels(model, signal, window).set(value)
        for model, signal in {(m, s) for m, s, _ in p95} | active:
            self.metrics.drift_alert_active.labels(model, signal).set((model, signal) in active)

    def _model_label(self, model: str, signal: str) -> str:
        """The stream metrics' model label (the same cap: a model the accounting has not
        labelled is `other`); heartbeats are per connection and keep their pseudo-model."""
        if signal in PER_CONNECTION_SIGNALS:
            return model
        return self.metrics.model(model, answered=False)

    async def _to_ledger(self, change: AlertChange) -> None:
        alert = change.alert
        self.submit(
            Row(
                "alerts",
                {
                    "id": f"{self.instance_id}:{alert.model}:{alert.signal}:{alert.id}",
                    "instance_id": self.instance_id,
                    "model": alert.model,
                    "signal": alert.signal,
                    "severity": alert.severity.value,
                    "fired_at": self._utc(alert.fired_at),
                    "onset": self._utc(alert.onset),
                    "resolved_at": self._utc(alert.resolved_at)
                    if isinstance(change, AlertResolved)
                    else None,
                    "baseline_p95_s": alert.baseline_p95,
                    "current_p95_s": alert.medium_p95 or alert.short_p95,
                    "details": orjson.dumps(_details(alert)).decode(),
                },
            )
        )

    def _utc(self, monotonic: float | None) -> datetime | None:
        if monotonic is None:
            return None
        return datetime.fromtimestamp(monotonic + self.offset, UTC)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._dispatcher is not None:
            await self._dispatcher.aclose()
        if self._session is not None:
            await self._session.close()


def _details(alert: Any) -> dict[str, Any]:
    return {
        "ratio": alert.ratio,
        "exceed_fraction": alert.exceed_fraction,
        "n": alert.n,
        "flaps": alert.flaps,
        "short_p95": alert.short_p95,
        "medium_p95": alert.medium_p95,
    }

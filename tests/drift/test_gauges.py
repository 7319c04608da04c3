"""Drift gauges are under the same model-label cap as the stream metrics (sidecar.drift.live)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sidecar.drift.live import DriftSettings, LiveDrift, fold_models
from sidecar.drift.monitor import DriftSnapshot
from sidecar.telemetry import names
from sidecar.telemetry.metrics import Metrics


@dataclass
class FakeMonitor:
    snapshot_value: DriftSnapshot = field(default_factory=lambda: DriftSnapshot({}, {}, 0))

    def snapshot(self) -> DriftSnapshot:
        return self.snapshot_value


def _series(metrics: Metrics, name: str) -> list[dict[str, str]]:
    return [s.labels for m in metrics.registry.collect() if m.name == name for s in m.samples]


def test_150_model_names_make_at_most_the_capped_labels() -> None:
    metrics = Metrics()
    answered = [f"real-{i}" for i in range(100)]
    for model in answered:  # the accounting labels the first 64 answered models
        metrics.model(model, answered=True)
    models = [*answered, *(f"junk-{i}" for i in range(50))]
    p95 = {(m, "ttft", "short"): 0.1 + i / 1000 for i, m in enumerate(models)}
    p95[("all", "heartbeat_rtt", "short")] = 0.002
    active: dict[Any, Any] = {("junk-7", "ttft"): object()}
    monitor = FakeMonitor(DriftSnapshot(p95, active, 0))
    drift = LiveDrift(monitor, DriftSettings(), metrics, lambda row: None, "i")  # type: ignore[arg-type]
    drift._update_gauges()
    ttft = [s for s in _series(metrics, names.DRIFT_P95) if s["signal"] == "ttft"]
    labels = {s["model"] for s in ttft}
    assert len(labels) == names.MAX_MODEL_LABELS + 1 and names.OTHER_MODEL in labels
    assert {"model": "all", "signal": "heartbeat_rtt", "window": "short"} in _series(
        metrics, names.DRIFT_P95
    ), "heartbeats are per connection and keep their pseudo-model"
    value = metrics.registry.get_sample_value(
        names.DRIFT_P95, {"model": names.OTHER_MODEL, "signal": "ttft", "window": "short"}
    )
    assert value == max(p95[(m, "ttft", "short")] for m in models[names.MAX_MODEL_LABELS :])
    active_other = {"model": names.OTHER_MODEL, "signal": "ttft"}
    assert metrics.registry.get_sample_value(names.DRIFT_ALERT_ACTIVE, active_other) == 1
    quiet = {"model": "real-0", "signal": "ttft"}
    assert metrics.registry.get_sample_value(names.DRIFT_ALERT_ACTIVE, quiet) == 0


def test_fold_keeps_windows_it_exports_only() -> None:
    snapshot = DriftSnapshot({("m", "itl", "short"): 1.0, ("m", "itl", "tail"): 9.0}, {}, 0)
    p95, active = fold_models(snapshot, lambda model, signal: model)
    assert p95 == {("m", "itl", "short"): 1.0} and active == set()

"""A `Metrics()` registry with a few samples in every metric, for exposition checks."""

from __future__ import annotations

from prometheus_client.metrics import MetricWrapperBase

from sidecar.telemetry import names
from sidecar.telemetry.metrics import Metrics

VALUES = {
    "model": ("sim-small", "llama-3.1-8b-instruct"),
    "tenant": ("acme", names.OTHER_TENANT),
    "outcome": names.OUTCOMES,
    "kind": names.TOKEN_KINDS,
    "reason": names.DISCONNECT_REASONS,
    "signal": names.DRIFT_SIGNALS,
    "window": names.DRIFT_WINDOWS,
    "route": (*names.ROUTE_LABELS.values(), "/v1/models", names.OTHER_ROUTE),
    "ingress": names.INGRESSES,
}


def filled_metrics() -> Metrics:
    """Every metric with samples under several label values (cycled, so rows differ)."""
    metrics = Metrics()
    for metric in vars(metrics).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        labelnames = metric._labelnames
        for row in range(3 if labelnames else 1):
            values = [VALUES[n][(row + i) % len(VALUES[n])] for i, n in enumerate(labelnames)]
            child = metric.labels(*values) if values else metric
            match metric._type:
                case "counter":
                    child.inc(row + 1.5)  # type: ignore[attr-defined]
                case "gauge":
                    child.set(row * 0.25)  # type: ignore[attr-defined]
                case "histogram":
                    for value in (0.0004, 0.03, 0.8, 12.0, 5000.0):
                        child.observe(value)  # type: ignore[attr-defined]
    return metrics

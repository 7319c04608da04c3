"""What every scrape carries besides the stream metrics: `sidecar_build_info` and the process,
Python platform and garbage-collector collectors of `prometheus_client`, registered on the
server's injected registry (`serve` and the generated docs/metrics.md call the same function)."""

from __future__ import annotations

import platform
from importlib import metadata

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from sidecar.telemetry import names


def version() -> str:
    try:
        return metadata.version("ai-stream-sidecar")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def register_runtime(registry: CollectorRegistry) -> Gauge:
    """Adds build info and the runtime collectors to `registry`; returns the build-info gauge."""
    build_info = Gauge(
        names.BUILD_INFO,
        "Always 1; the labels say which build of the sidecar runs, on which Python.",
        ["version", "python_version", "python_implementation"],
        registry=registry,
    )
    build_info.labels(version(), platform.python_version(), platform.python_implementation()).set(1)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return build_info

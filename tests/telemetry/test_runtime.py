"""`sidecar_build_info` and the process/Python collectors on the injected registry."""

from importlib import metadata

from prometheus_client import CollectorRegistry, generate_latest

from sidecar.telemetry.runtime import register_runtime


def test_build_info_names_the_installed_version() -> None:
    registry = CollectorRegistry()
    register_runtime(registry)
    labels = {"version": metadata.version("ai-stream-sidecar")}
    families = {m.name: m for m in registry.collect()}
    (sample,) = families["sidecar_build_info"].samples
    assert sample.value == 1 and sample.labels["version"] == labels["version"]
    assert sample.labels["python_implementation"] == "CPython"


def test_process_and_python_collectors_are_registered_not_global() -> None:
    registry = CollectorRegistry()
    register_runtime(registry)
    text = generate_latest(registry).decode()
    for name in ("process_resident_memory_bytes", "process_cpu_seconds_total", "python_info"):
        assert f"\n{name}" in text, name
    assert "python_gc_collections_total{generation=" in text
    assert "process_cpu_seconds_total" not in generate_latest(CollectorRegistry()).decode()

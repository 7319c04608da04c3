"""`sidecar_cost_usd_total` has samples only for priced streams: an unknown cost is never 0."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sidecar.accounting.pricing import Price, PriceBook
from sidecar.accounting.recorder import Recorder
from sidecar.accounting.stream import Outcome
from sidecar.telemetry.metrics import Metrics
from tests.unit.test_accounting import account, feed


def test_unpriced_streams_expose_no_cost_sample() -> None:
    metrics = Metrics()
    book = PriceBook([Price("priced", Decimal(1), Decimal(2), datetime(1970, 1, 1, tzinfo=UTC))])
    recorder = Recorder(metrics, lambda _row: None, book, "i", lambda: 0.0)
    for n, model in enumerate(("mystery", "priced", "mystery")):
        acc = account(stream_id=f"s{n}", model=model)
        recorder.started(acc)
        feed(acc, 4)
        acc.finish(Outcome.COMPLETED, 2.0)
        recorder.finished(acc, 2.0)
    text = "\n".join(
        f"{s.name}{s.labels}"
        for family in metrics.registry.collect()
        for s in family.samples
        if s.name == "sidecar_cost_usd_total"
    )
    assert "'model': 'priced'" in text
    assert "'model': 'mystery'" not in text
    unpriced = metrics.registry.get_sample_value(
        "sidecar_unpriced_streams_total", {"model": "mystery"}
    )
    assert unpriced == 2


def test_route_metrics_split_by_route_and_ingress_with_bounded_labels() -> None:
    metrics = Metrics()
    recorder = Recorder(metrics, lambda _row: None, PriceBook([]), "i", lambda: 0.0)
    streams = [
        ("/v1/responses", "http", 3, 3),
        ("/v1/responses", "http", 5, 2),
        ("/v1/messages", "ws", 4, 4),
        ("/v1/not-a-route", "carrier-pigeon", 1, 1),
    ]
    for n, (path, ingress, generated, written) in enumerate(streams):
        acc = account(stream_id=f"s{n}", path=path, ingress=ingress)
        feed(acc, generated)
        acc.on_written(written)
        acc.finish(Outcome.CLIENT_GONE, 2.0)
        recorder.finished(acc, 2.0)

    def value(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    http = {"route": "responses", "ingress": "http"}
    assert value("sidecar_route_streams_total", **http) == 2
    assert value("sidecar_route_tokens_total", **http, kind="generated") == 8
    assert value("sidecar_route_tokens_total", **http, kind="wasted") == 3
    assert value("sidecar_route_streams_total", route="messages", ingress="ws") == 1
    assert value("sidecar_route_streams_total", route="other", ingress="other") == 1

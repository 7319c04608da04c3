"""F7: made-up model names cannot take the metric labels and drift detectors of real models.

Before: the first 64 names the upstream answered got labels and the first 256 (model, signal)
keys got detectors, first come first served; 5,000 made-up names left a real model that came
later with no series and no drift detection until a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from sidecar.accounting.stream import StreamAccount
from sidecar.context import LatencyObserver
from sidecar.drift.monitor import DriftMonitor
from sidecar.telemetry.metrics import Metrics, ModelLabels
from sidecar.upstream.client import parse_model_ids
from tests.e2e.wsclient import chat
from tests.security.helpers import sample
from tests.support.stack import Stack, running_stack
from tests.support.timeouts import scaled

FLOOD = 100  # more than the 64 labels


def account(model: str) -> StreamAccount:
    return StreamAccount("s", "r", None, model, "t", "ws", "/v1/chat/completions", 0.0, 0.0)


def test_listed_and_pinned_models_get_labels_a_flood_does_not() -> None:
    labels = ModelLabels(max_models=2, pinned=["pinned"])
    labels.listed(["llama", "qwen", "mistral"])
    assert [labels(f"junk-{n}", answered=True) for n in range(1000)] == ["other"] * 1000
    assert labels("pinned", answered=False) == "pinned"
    assert labels("llama", answered=False) == "llama"  # listed: it exists, answered or not
    assert labels("qwen", answered=True) == "qwen"
    assert labels("mistral", answered=True) == "other"  # past the bound of listed models
    labels.listed(["mistral"])  # a refresh: labels already given stay
    assert labels("llama", answered=True) == "llama"


def test_without_a_list_the_first_answered_models_get_labels() -> None:
    labels = ModelLabels(max_models=1)
    assert labels("junk", answered=False) == "other"
    assert labels("llama", answered=True) == "llama"
    assert labels("qwen", answered=True) == "other"


def test_model_ids_are_parsed_and_cleaned_like_request_models() -> None:
    body = b'{"data": [{"id": "a"}, {"id": "b\\u0000c"}, {"id": 5}, "x", {"id": ""}]}'
    assert parse_model_ids(body) == ["a", "bc"]
    assert parse_model_ids(b'{"data": [{"id": "' + b"m" * 300 + b'"}]}') == ["m" * 127 + "…"]
    assert parse_model_ids(b"not json") is None and parse_model_ids(b"[1]") is None


def test_drift_detectors_follow_the_labels() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.model.listed(["real"])
    monitor = DriftMonitor(max_keys=16)
    observer = LatencyObserver(metrics, monitor)
    for n in range(5000):
        observer.first_token(account(f"junk-{n}"), 0.1)
    observer.first_token(account("real"), 0.1)
    assert monitor.detector("real", "ttft") is not None
    assert monitor.detector("other", "ttft") is not None
    assert monitor.detector("junk-0", "ttft") is None and monitor.dropped_samples == 0


def test_inter_token_gaps_follow_the_model_labels_also_when_one_is_admitted_later() -> None:
    """The observer finds a labelled model's gap histogram by its name (once per token); an
    unlisted model's gaps go to `other` until the upstream lists it, then to its own label."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.model.listed(["real"])
    observer = LatencyObserver(metrics)

    def gaps(model: str) -> float:
        value = registry.get_sample_value(
            "sidecar_inter_token_latency_seconds_count", {"model": model}
        )
        return value or 0.0

    for _ in range(3):
        observer.gap(account("real"), 0.01)
        observer.gap(account("late"), 0.01)
    assert (gaps("real"), gaps("other"), gaps("late")) == (3, 3, 0)
    metrics.model.listed(["real", "late"])  # the next /v1/models refresh lists it
    observer.gap(account("late"), 0.01)
    observer.gap(account("real"), 0.01)
    assert (gaps("real"), gaps("other"), gaps("late")) == (4, 3, 1)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("labels")
    with running_stack(tmp) as stack:
        stack.start_sim("--ttft", "0", "--tokens-per-second", "1000")
        stack.start_serve("--model-label", "pinned-model")
        yield stack


async def requests(stack: Stack, models: list[str]) -> list[int]:
    async def one(session: aiohttp.ClientSession, model: str) -> int:
        body = {**chat(1, model=model), "stream": True}
        async with session.post(stack.http_url + "/v1/chat/completions", json=body) as response:
            await response.read()
            return response.status

    timeout = aiohttp.ClientTimeout(total=scaled(60))
    connector = aiohttp.TCPConnector(limit=20)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        return list(await asyncio.gather(*(one(session, m) for m in models)))


@pytest.mark.e2e
def test_a_real_model_after_a_flood_gets_its_series(stack: Stack) -> None:
    flood = [f"made-up-{n}" for n in range(FLOOD)]
    assert asyncio.run(requests(stack, flood)) == [200] * FLOOD
    assert asyncio.run(requests(stack, ["sim-small", "pinned-model"])) == [200, 200]
    text = stack.metrics_text()
    streams = "sidecar_streams_total"
    assert sample(text, streams, model="sim-small", outcome="completed") == 1  # listed upstream
    assert sample(text, streams, model="pinned-model", outcome="completed") == 1  # pinned
    assert sample(text, streams, model="other", outcome="completed") == FLOOD
    assert "made-up-" not in text

"""Our faster histograms and counters expose exactly what `prometheus_client`'s do."""

from __future__ import annotations

import math
import random

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import Counter as LibraryCounter
from prometheus_client import Histogram as LibraryHistogram

from sidecar.telemetry.metrics import ITL_BUCKETS, Histogram, LoopCounter, LoopHistogram


def _exposition(cls: type[LibraryHistogram], values: list[float]) -> list[str]:
    registry = CollectorRegistry()
    histogram = cls("gap_seconds", "Gaps.", ["model"], buckets=ITL_BUCKETS, registry=registry)
    child = histogram.labels("m")
    for value in values:
        child.observe(value)
    lines = generate_latest(registry).decode().splitlines()
    return [line for line in lines if "_created" not in line]  # creation times differ


@pytest.mark.parametrize("ours_class", [Histogram, LoopHistogram])
def test_same_buckets_as_the_library_on_bounds_between_and_beyond_them(
    ours_class: type[LibraryHistogram],
) -> None:
    rng = random.Random(7)
    values = [0.0, -1.0, math.inf, math.nan, 1e-9, 5.0, 5.000001, 1e6]
    values += list(ITL_BUCKETS)  # exactly on a bound: that bucket, not the next
    values += [b * (1 + 1e-12) for b in ITL_BUCKETS]  # just above: the next one
    values += [rng.lognormvariate(math.log(0.05), 1.5) for _ in range(5_000)]
    ours = _exposition(ours_class, values)
    assert ours == _exposition(LibraryHistogram, values)
    assert any(line.startswith('gap_seconds_count{model="m"} 5') for line in ours)


def _counter_exposition(cls: type[LibraryCounter], amounts: list[float]) -> list[str]:
    registry = CollectorRegistry()
    counter = cls("things", "Things.", ["kind"], registry=registry)
    for index, amount in enumerate(amounts):
        counter.labels("a" if index % 3 else "b").inc(amount)
    lines = generate_latest(registry).decode().splitlines()
    return [line for line in lines if "_created" not in line]


def test_loop_counter_exposes_what_the_library_counter_does() -> None:
    amounts = [1, 0, 2.5, 1e-9, 7, 0.125] * 50
    ours = _counter_exposition(LoopCounter, amounts)
    assert ours == _counter_exposition(LibraryCounter, amounts)
    assert 'things_total{kind="a"} 481.25' in ours


def test_loop_counter_refuses_what_the_library_refuses() -> None:
    counter = LoopCounter("refused", "Refused.", ["kind"], registry=CollectorRegistry())
    with pytest.raises(ValueError):
        counter.inc()  # a parent with labels has no value of its own
    with pytest.raises(ValueError):
        counter.labels("a").inc(-1)
    histogram = LoopHistogram("gaps", "Gaps.", ["model"], registry=CollectorRegistry())
    with pytest.raises(ValueError):
        histogram.observe(1.0)

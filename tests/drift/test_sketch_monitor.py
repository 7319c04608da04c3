from __future__ import annotations

import pytest

from sidecar.drift.monitor import DriftMonitor, default_configs
from sidecar.drift.normalize import fit
from sidecar.drift.sketch import Windows
from tests.drift.streams import FAST


def test_recent_window_edges_are_whole_slots() -> None:
    w = Windows(10.0, 60.0, 60.0, 3600.0)
    for t in (69.999, 70.0, 119.0, 120.0, 125.0):
        w.current(t).n += 1
    # at t = 125 the 60 s window is slots 70..120: 69.999 (slot 60) is out, 70.0 is in
    assert [s.start for s in w.recent(125.0, 60.0)] == [70.0, 110.0, 120.0]
    assert w.counts(125.0, 60.0).n == 4
    assert w.counts(130.0, 60.0).n == 3  # slot 70 has left; 110 and 120 remain
    assert w.counts(179.9, 60.0).n == 2  # only slot 120 (120.0 and 125.0)
    assert w.counts(180.0, 60.0).n == 0
    assert w.counts(130.0, 10.0).n == 0


def test_buckets_hold_whole_minutes_only() -> None:
    w = Windows(10.0, 60.0, 60.0, 3600.0)
    for t in (0.0, 59.9, 60.0, 119.9, 120.0):
        w.current(t).n += 1
    w.flush(125.0)
    assert [(b.start, b.n) for b in w.buckets(0.0, 120.0)] == [(0.0, 2), (60.0, 2)]
    assert [b.start for b in w.buckets(0.0, 119.0)] == [0.0]  # [60, 120) is not inside
    # a bucket appears once its first slot has closed (the baseline never reads that recent)
    assert [b.start for b in w.buckets(60.0, 180.0)] == [60.0]
    w.flush(130.0)
    assert [(b.start, b.n) for b in w.buckets(60.0, 180.0)] == [(60.0, 2), (120.0, 1)]


def test_bucket_width_must_be_a_multiple_of_the_slot() -> None:
    with pytest.raises(ValueError, match="multiple"):
        Windows(10.0, 25.0, 60.0, 3600.0)


def test_fit_recovers_prompt_and_load_coefficients() -> None:
    import random

    rng = random.Random(2)
    points = []
    for _ in range(2000):
        p, n = rng.randrange(100, 4000), rng.randrange(0, 30)
        points.append(((0.1 + 0.0002 * p + 0.01 * n) * rng.lognormvariate(0, 0.2), p, n))
    model = fit(points, use_prompt=True)
    assert model is not None
    assert model.a == pytest.approx(0.1, rel=0.25)
    assert model.b == pytest.approx(0.0002, rel=0.1) and model.c == pytest.approx(0.01, rel=0.1)
    # a long prompt under load is brought back to the reference conditions
    assert model.normalize(0.1 + 0.0002 * 3000 + 0.01 * 20, 3000, 20) == pytest.approx(
        model.reference, rel=0.05
    )
    assert fit(points[:100], use_prompt=True) is None  # too few points


def test_monitor_snapshot_and_bounded_keys() -> None:
    monitor = DriftMonitor({"ttft": FAST}, max_keys=2)
    for i in range(100):
        monitor.observe("ttft", "a", 0.1 + i / 1000, i / 10)
        monitor.observe("ttft", "b", 0.2, i / 10)
    monitor.observe("ttft", "c", 0.3, 5.0)  # a third model: dropped, counted
    monitor.observe("nope", "a", 0.3, 5.0)  # unknown signal: dropped, counted
    assert monitor.evaluate(10.0) == []
    snap = monitor.snapshot()
    assert snap.dropped_samples == 2 and snap.active == {}
    assert snap.p95[("b", "ttft", "short")] == pytest.approx(0.2, rel=0.02)
    assert ("a", "ttft", "baseline") not in snap.p95  # no baseline yet
    assert {k[2] for k in snap.p95} == {"short", "medium"}


def test_default_configs_cover_every_signal() -> None:
    configs = default_configs(threshold=12.0, floors={"heartbeat_rtt": 0.005})
    assert set(configs) == {"ttft", "itl", "heartbeat_rtt", "upstream_cancel"}
    assert configs["heartbeat_rtt"].floor == 0.005 and configs["ttft"].floor == 0.020
    assert all(c.threshold == 12.0 for c in configs.values())

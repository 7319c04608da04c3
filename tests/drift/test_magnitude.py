"""The magnitude test inside the detector: one sample a second, production windows."""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable
from dataclasses import replace

import pytest

from sidecar.drift.backtest import Row, config_for_step, replay
from sidecar.drift.config import DetectorConfig, Normalization
from sidecar.drift.detector import Detector, _Cusum
from sidecar.drift.events import AlertFired
from tests.drift.streams import FAST

PRODUCTION = DetectorConfig(floor=0.020)
WITHOUT = replace(PRODUCTION, score_k=None)  # the exceedance CUSUMs alone
ONSET = 2 * 3600.0


def _pages(
    config: DetectorConfig,
    factor: Callable[[float], float],
    seed: int,
    rate: float = 1.0,
    seconds: float = ONSET + 900.0,
) -> tuple[Detector, list[float]]:
    """Poisson arrivals at `rate`, lognormal latencies (median 0.5 s, sigma 0.5)."""
    rng = random.Random(seed)
    det = Detector(config, signal="ttft", model="m")
    pages: list[float] = []
    t, next_eval = 0.0, 0.0
    while t < seconds:
        t += rng.expovariate(rate)
        det.observe(t, 0.5 * math.exp(rng.gauss(0.0, 0.5)) * factor(t))
        if t >= next_eval:
            next_eval = t + 1.0
            pages += [c.alert.fired_at for c in det.evaluate(t) if isinstance(c, AlertFired)]
    return det, pages


def _step(x: float) -> Callable[[float], float]:
    return lambda t: x if t >= ONSET else 1.0


def test_quiet_key_at_one_sample_a_second_is_armed_and_silent() -> None:
    det, pages = _pages(PRODUCTION, lambda t: 1.0, seed=1, seconds=3 * 3600.0)
    assert pages == []
    h = det.score_threshold
    assert det.armed and h is not None and 20 < h < 27  # from the budget at ~1 sample/s
    assert det.score_statistic is not None and det.score_statistic < h


def test_a_busier_key_gets_a_higher_score_threshold() -> None:
    slow, _ = _pages(PRODUCTION, lambda t: 1.0, seed=2, rate=1.0, seconds=4000.0)
    busy, _ = _pages(PRODUCTION, lambda t: 1.0, seed=2, rate=10.0, seconds=4000.0)
    assert slow.score_threshold is not None and busy.score_threshold is not None
    assert busy.score_threshold > slow.score_threshold + 3  # same false pages per week


def test_a_plus_50_percent_step_at_one_sample_a_second_pages_in_about_a_minute() -> None:
    with_score, without = [], []
    for seed in range(5):
        pages = _pages(PRODUCTION, _step(1.5), seed)[1]
        # the persistence clock starts at the estimated change point, a few samples off at 1/s
        assert pages and pages[0] >= ONSET + PRODUCTION.persist - 10
        with_score.append(pages[0] - ONSET)
        base = [p - ONSET for p in _pages(WITHOUT, _step(1.5), seed)[1]]
        without.append(base[0] if base else math.inf)
    assert statistics.median(with_score) <= 80
    assert statistics.median(without) > statistics.median(with_score) + 30


@pytest.mark.parametrize("seed", range(4))
def test_a_short_burst_at_one_sample_a_second_is_not_paged(seed: int) -> None:
    def burst(t: float) -> float:
        return 2.0 if ONSET <= t < ONSET + 30 else 1.0

    det, pages = _pages(PRODUCTION, burst, seed)
    assert pages == []
    assert det.score_statistic is not None


def test_failed_requests_score_as_the_slowest() -> None:
    det, _ = _pages(PRODUCTION, lambda t: 1.0, seed=3, seconds=4000.0)
    before = det.score_statistic
    for i in range(30):
        det.observe(4000.0 + i, 0.001, failed=True)
    h = det.score_threshold
    assert det.score_statistic is not None and before is not None and h is not None
    # each adds the top score less k, up to the statistic's bound (2h)
    assert det.score_statistic >= min(before + 30 * 2.2, 2 * h) - 1e-9


def test_clock_starts_where_the_climb_began_not_where_noise_lifted_s() -> None:
    config = replace(PRODUCTION, persist_seconds=50.0)
    cusum = _Cusum(config, 30.0, onset_level=2.0, confirm=8.0, strong=5.0, persist_from=10.0,
                   argmin=True)  # fmt: skip
    cusum.reset(0.0)
    t = 0.0
    for _ in range(10):  # noise lifts S to 3 and it drifts down again, slowly (S stays > 2)
        t += 1.0
        cusum.add(t, 0.3, 0.15)
    for _ in range(8):  # ... while the strong sum (k + 0.15) falls below where it started
        t += 1.0
        cusum.add(t, -0.1, -0.25)
    burst = t
    while cusum.episode is None:  # a burst: big scores from `burst` on
        t += 1.0
        cusum.add(t, 1.9, 1.75)
    assert cusum.episode == burst  # the strong sum's lowest point: just before the burst
    # the same noise, then S back to the onset level: the episode ends, a new climb restarts it
    for _ in range(40):
        t += 1.0
        cusum.add(t, -0.5, -0.65)
    assert cusum.episode is None and cusum.late == 0.0


def test_aggregated_points_page_on_two_far_points_not_one() -> None:
    rng = random.Random(5)
    t0 = 1_700_000_000.0

    def series(high: set[int]) -> list[Row]:
        return [
            Row(t0 + 60 * i, 0.8 * math.exp(rng.gauss(0, 0.1)) * (3.0 if i in high else 1.0))
            for i in range(600)
        ]

    config = config_for_step(60.0, PRODUCTION)
    assert config.score_cap is not None and config.score_k == 0.5
    one = replay(series({500}), PRODUCTION)
    assert one.alerts == []
    two = replay(series({500, 501}), PRODUCTION)
    assert len(two.alerts) == 1 and two.alerts[0].fired_at == t0 + 60 * 501


def test_at_five_minute_steps_a_far_point_and_a_high_one_page_together() -> None:
    rng = random.Random(8)
    t0 = 1_700_000_000.0

    quiet = [math.exp(rng.gauss(0, 0.06)) for _ in range(330)]  # median point ~1, top ~1.14

    def series(second: float) -> list[Row]:
        high = {300: 1.45, 301: second}
        return [Row(t0 + 300 * i, high.get(i, v)) for i, v in enumerate(quiet)]

    assert config_for_step(300.0, PRODUCTION).score_far_pairs
    assert not config_for_step(60.0, PRODUCTION).score_far_pairs  # a burst spans two points
    # 1.45x then 1.26x the median point: the second is below the far rule (1.1x the top edge and
    # as far above it as it is above the median: ~1.28x) but clears the pair's bar (~1.25x)
    assert [a.fired_at for a in replay(series(1.26), PRODUCTION).alerts] == [t0 + 300 * 301]
    # off below 4x the persistence (a 1000 s burst would span two 5-min points)
    off = replace(PRODUCTION, persist_seconds=1000.0)
    assert not config_for_step(300.0, off).score_far_pairs
    assert replay(series(1.26), off).alerts == []
    assert replay(series(1.2), PRODUCTION).alerts == []  # below the pair's bar


def test_normalised_quiet_series_does_not_page_across_refits() -> None:
    # TTFT grows with the prompt; the model is refitted every 60 s here (10 min in production)
    config = replace(FAST, normalization=Normalization.PROMPT_AND_LOAD, floor=0.0)
    rng = random.Random(6)
    det = Detector(config, signal="ttft", model="m")
    t, next_eval, changes = 0.0, 0.0, []
    while t < 1500.0:
        t += rng.expovariate(40.0)
        prompt, inflight = rng.randrange(100, 4000), rng.randrange(1, 20)
        expected = 0.1 + 0.0002 * prompt + 0.01 * inflight
        det.observe(t, expected * rng.lognormvariate(0.0, 0.3), prompt, inflight)
        if t >= next_eval:
            next_eval += 1.0
            changes += det.evaluate(t)
    assert det.load_model is not None and det.score_threshold is not None
    assert det._grid_model is det.load_model  # bins normalised by the model scoring samples
    assert changes == []


def test_aggregated_points_far_below_the_baseline_do_not_cancel_far_high_ones() -> None:
    # an outage whose 1-min p95 swings between far above and far below every baseline point
    # (fast failures): high, low, high pages like two high points in a row would
    rng = random.Random(7)
    t0 = 1_700_000_000.0
    swing = {500: 3.0, 501: 0.3, 502: 3.0}
    rows = [
        Row(t0 + 60 * i, 0.8 * math.exp(rng.gauss(0, 0.1)) * swing.get(i, 1.0)) for i in range(600)
    ]
    result = replay(rows, PRODUCTION)
    assert [a.fired_at for a in result.alerts] == [t0 + 60 * 502]
    # a low point within the baseline's own spread still counts against the rise
    rows[501] = Row(t0 + 60 * 501, 0.8 * 0.85)
    assert replay(rows, PRODUCTION).alerts == []


def _late_crossing(scores: list[float], *, ended_bar: float, big_from: float) -> float | None:
    """When a magnitude CUSUM (clock 10 s, k 0.25/0.4, h 8) records its crossing, 1 sample/s."""
    config = replace(PRODUCTION, persist_seconds=10.0, score_persist_seconds=10.0)
    cusum = _Cusum(config, 8.0, onset_level=0.5, confirm=6.0, strong=3.75, persist_from=2.0,
                   persist=10.0, argmin=True, k_strong=0.4, least_late=12, ended_bar=ended_bar,
                   small=(4.0, 2.5, 6), big_from=big_from)  # fmt: skip
    cusum.reset(0.0)
    for t, z in enumerate(scores, start=1):
        cusum.add(float(t), z - 0.25, z - 0.4)
        if cusum.crossed is not None:
            return cusum.crossed[0]
    return None


def test_a_burst_that_ended_is_not_confirmed_by_its_own_late_samples() -> None:
    # a big burst (score 2) for 15 s, then normal: its last 6 samples fall after the 10 s clock,
    # and with them the late evidence stays above the bar for 12 late samples ...
    scores = [2.0] * 15 + [0.0] * 20
    assert _late_crossing(scores, ended_bar=math.inf, big_from=-math.inf) == 21.0
    # ... but the normal samples after it say the shift ended (2 nats a sample at its size)
    assert _late_crossing(scores, ended_bar=2.0, big_from=-math.inf) is None


def test_a_lasting_shift_first_seen_too_big_is_not_taken_for_one_that_ended() -> None:
    # the first samples after the clock are high (sized ~1.9 as the window opens), the shift
    # then lasts at 0.8: at the first size 0.8 looks like "back to normal" (1.9 x (0.95 - 0.8)
    # a sample); at the size seen since the clock, late samples included, it does not
    scores = [1.9] * 12 + [0.8] * 80
    crossed = _late_crossing(scores, ended_bar=2.0, big_from=1.05)
    assert crossed is not None and crossed < 40.0
    # a burst that did end is still stopped
    assert _late_crossing([2.0] * 15 + [0.0] * 60, ended_bar=2.0, big_from=1.05) is None


def test_a_smaller_shift_than_the_bursts_is_confirmed_sooner() -> None:
    scores = [0.8] * 40  # +50 %: 0.4 a sample at the strong reference
    big = _late_crossing(scores, ended_bar=2.0, big_from=-math.inf)  # 12 late samples
    small = _late_crossing(scores, ended_bar=2.0, big_from=1.05)  # 2.5 / 0.4: 7 late samples
    assert big is not None and small is not None
    assert (big, small) == (21.0, 16.0)


def test_late_samples_at_the_shift_are_one_reading_in_nats() -> None:
    config = replace(PRODUCTION, score_late_at_shift=True, score_redate_slack=1.0)
    score = Detector(config)._score
    assert score is not None and score.at_shift == 0.5 and score.slack == 1.0
    score.shift = 0.0
    score._size(0.8)  # a +50 % step's size: the small bar, 2 nats, read in nats only
    assert score.bars == (math.inf, pytest.approx(2.0), 6)
    assert Detector(PRODUCTION)._score.at_shift is None  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="score_redate_slack"):
        replace(PRODUCTION, score_redate_slack=-1.0)


def test_config_rejects_nonpositive_late_bars() -> None:
    with pytest.raises(ValueError, match="score_ended"):
        DetectorConfig(score_ended=0.0)
    with pytest.raises(ValueError, match="score_confirm"):
        DetectorConfig(score_confirm_small=0.0)
    assert DetectorConfig(score_ended=None, score_big_shift=None).score_persist == 45.0

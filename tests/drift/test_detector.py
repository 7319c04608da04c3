from __future__ import annotations

import random
from dataclasses import replace

import pytest

from sidecar.drift.backtest import config_for_step
from sidecar.drift.config import DetectorConfig
from sidecar.drift.detector import Detector, _Cusum
from sidecar.drift.events import AlertEscalated, AlertFired, AlertResolved, Severity
from tests.drift.streams import DISTRIBUTIONS, FAST, RATE, run

ARMED_BY = 200.0  # 150 s of baseline history (120 s + 30 s gap) and a refresh


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_no_alert_on_stationary_series(name: str) -> None:
    det, changes = run(DISTRIBUTIONS[name], 1500.0, seed=7)
    assert det.armed
    assert changes == []
    assert det.statistic < FAST.threshold


@pytest.mark.parametrize(("factor", "max_delay"), [(1.5, 15.0), (1.2, 60.0)])
@pytest.mark.parametrize("name", ["lognormal", "gamma", "pareto"])
def test_step_is_detected(name: str, factor: float, max_delay: float) -> None:
    onset = 400.0
    _, changes = run(DISTRIBUTIONS[name], 600.0, factor=lambda t: factor if t >= onset else 1.0)
    fired = [(t, c) for t, c in changes if isinstance(c, AlertFired)]
    assert fired, "the step was missed"
    _, first = fired[0]
    # never before the change has lasted `persist` (5 s here, 50 s in production), or 0.9 of it
    # for the magnitude CUSUM, whose clock is dated twice
    assert onset + FAST.score_persist <= first.alert.fired_at <= onset + max_delay
    assert onset - 30 <= first.alert.onset <= first.alert.fired_at
    assert first.alert.baseline_p95 > 0


def test_big_step_fires_once_it_persists_and_is_crit() -> None:
    _, changes = run(DISTRIBUTIONS["lognormal"], 500.0, factor=lambda t: 3.0 if t >= 400 else 1.0)
    first = changes[0][1]
    assert isinstance(first, AlertFired) and first.alert.severity is Severity.CRIT
    # the magnitude CUSUM, 4.5 s of persistence after the onset (0.9 x persist)
    assert 404.5 <= first.alert.fired_at <= 407
    assert 399 <= first.alert.onset <= 401


def test_fast_path_alone_goes_straight_to_crit() -> None:
    # no CUSUM arms (nor the score test); the fast path does from 400 samples
    config = replace(FAST, arm_samples=10**9, score_k=None)
    _, changes = run(
        DISTRIBUTIONS["lognormal"], 500.0, factor=lambda t: 3.0 if t >= 400 else 1.0, config=config
    )
    first = changes[0][1]
    assert isinstance(first, AlertFired) and first.alert.severity is Severity.CRIT
    # needs 50 samples in the 6 s short window, then the condition held for 5 s (persist) + 5 s
    # (the short window less a slot: how long a burst stays in it after it ended)
    assert 411 <= first.alert.fired_at <= 417
    assert 395 <= first.alert.onset <= 401  # the short window's start when the run began


@pytest.mark.parametrize("cusum", [True, False])
def test_burst_shorter_than_persist_is_a_non_event(cusum: bool) -> None:
    # x3 for 4 s (40 s in production terms): neither the CUSUM nor the fast path pages
    config = FAST if cusum else replace(FAST, arm_samples=10**9)
    _, changes = run(
        DISTRIBUTIONS["lognormal"],
        600.0,
        factor=lambda t: 3.0 if 400 <= t < 404 else 1.0,
        config=config,
    )
    assert changes == []
    # the same burst lasting longer than persist is a real change and pages (the fast path alone
    # needs the condition to outlast the short window's smear: 12 s here)
    length = 7 if cusum else 12
    _, changes = run(
        DISTRIBUTIONS["lognormal"],
        600.0,
        factor=lambda t: 3.0 if 400 <= t < 400 + length else 1.0,
        config=config,
    )
    fired = [c for _, c in changes if isinstance(c, AlertFired)]
    # no sooner than the magnitude CUSUM's persistence (0.9 x 5 s) after the burst began
    assert len(fired) == 1 and 404.5 <= fired[0].alert.fired_at <= 400 + length + 3


def test_backtest_of_an_aggregated_series_has_no_persistence_test() -> None:
    assert config_for_step(60.0, DetectorConfig()).persist == 0.0
    assert config_for_step(0.2, DetectorConfig()).persist == 50.0
    # nor a tail CUSUM: a p99 of ~100-240 aggregated points rests on 1-2 of them
    assert config_for_step(60.0, DetectorConfig()).tail_quantile is None
    assert config_for_step(0.2, DetectorConfig()).tail_quantile == 0.99


def test_persist_zero_pages_on_the_crossing() -> None:
    config = replace(FAST, persist_seconds=0.0)
    _, changes = run(
        DISTRIBUTIONS["lognormal"],
        500.0,
        factor=lambda t: 3.0 if 400 <= t < 404 else 1.0,
        config=config,
    )
    first = changes[0][1]
    assert isinstance(first, AlertFired) and 400 <= first.alert.fired_at <= 402
    assert FAST.persist == FAST.short_seconds - FAST.slot_seconds == 5.0
    assert DetectorConfig().persist == 50.0
    assert DetectorConfig().score_persist == pytest.approx(45.0)
    assert config_for_step(60.0, DetectorConfig()).score_persist == 0.0


def test_warn_escalates_to_crit_on_medium_p95() -> None:
    config = replace(FAST, fast_ratio=100.0, fast_exceed_fraction=1.01)  # no fast path
    _, changes = run(
        DISTRIBUTIONS["lognormal"], 600.0, factor=lambda t: 1.7 if t >= 400 else 1.0, config=config
    )
    kinds = [type(c) for _, c in changes]
    assert kinds[:2] == [AlertFired, AlertEscalated]
    assert changes[0][1].alert.severity is Severity.WARN
    assert changes[1][1].alert.severity is Severity.CRIT


def test_clears_after_recovery_and_merges_a_flap() -> None:
    def factor(t: float) -> float:
        return 1.6 if 400 <= t < 430 or 500 <= t < 530 else 1.0

    det, changes = run(DISTRIBUTIONS["lognormal"], 700.0, factor=factor)
    kinds = [(type(c).__name__, getattr(c, "reopened", None)) for _, c in changes]
    fires = [c for _, c in changes if isinstance(c, AlertFired)]
    resolves = [(t, c) for t, c in changes if isinstance(c, AlertResolved)]
    assert len(fires) == 2, kinds
    assert fires[1].reopened and fires[1].alert.id == fires[0].alert.id
    assert fires[1].alert.flaps == 1
    # the first episode cleared after >= 3 refreshes (18 s) of recovery, before the second
    t_clear = resolves[0][0]
    assert 430 + 2 * FAST.refresh_seconds <= t_clear < 500
    assert det.alert is None and resolves[-1][1].alert.resolved_at is not None


def test_alert_after_the_flap_window_is_a_new_alert() -> None:
    det, changes = run(
        DISTRIBUTIONS["lognormal"], 600.0, factor=lambda t: 1.6 if 400 <= t < 460 else 1.0
    )
    first_id = next(c for _, c in changes if isinstance(c, AlertFired)).alert.id
    assert det.alert is None
    _, later = run(
        DISTRIBUTIONS["lognormal"],
        400.0,
        detector=det,
        start=600.0,
        seed=3,
        factor=lambda t: 1.6 if t >= 900 else 1.0,
    )
    fired = [c for _, c in later if isinstance(c, AlertFired)]
    assert fired and not fired[0].reopened and fired[0].alert.id == first_id + 1


def test_arming_needs_samples_and_span() -> None:
    # At t = 85 s the last refresh (84 s) sees a baseline [-66 s, 54 s): 2,000+ samples over
    # 54 s, short of the 60 s span. At 96 s it spans [0, 66 s) and arms.
    det, _ = run(DISTRIBUTIONS["lognormal"], 85.0)
    assert det.baseline is not None and det.baseline.n >= FAST.arm_samples
    assert det.baseline.span == 54.0 and not det.armed
    det, _ = run(DISTRIBUTIONS["lognormal"], 97.0)
    assert det.baseline is not None and det.baseline.span == 66.0 and det.armed
    sparse = replace(FAST, arm_samples=10_000)
    det, _ = run(DISTRIBUTIONS["lognormal"], 400.0, config=sparse)
    assert not det.armed and det.q_ref is not None  # fast path armed, CUSUM not


def test_unarmed_detector_does_not_fire_even_on_a_huge_step() -> None:
    # baseline at the 36 s refresh: [-114 s, 6 s) holds ~240 samples, under the 400 needed
    _, changes = run(DISTRIBUTIONS["lognormal"], 41.0, factor=lambda t: 5.0 if t > 20 else 1.0)
    assert changes == []
    _, changes = run(DISTRIBUTIONS["lognormal"], 56.0, factor=lambda t: 5.0 if t > 20 else 1.0)
    # armed for the fast path at the 42 s refresh ([.., 12 s): ~480 samples), 10 s to hold
    assert changes


def test_failures_count_as_exceedances() -> None:
    det, _ = run(DISTRIBUTIONS["lognormal"], 300.0)
    changes = []
    for i in range(400):
        t = 300 + i / RATE
        det.observe(t, 0.01, failed=True)
        changes += det.evaluate(t)
    assert any(isinstance(c, AlertFired) for c in changes)


def test_floor_suppresses_small_absolute_rises() -> None:
    tight = lambda r: r.gauss(0.0003, 0.00003)  # noqa: E731 - 0.3 ms, like loopback heartbeats
    config = replace(FAST, floor=0.001)
    _, changes = run(tight, 600.0, factor=lambda t: 1.5 if t >= 400 else 1.0, config=config)
    assert changes == []
    _, changes = run(tight, 600.0, factor=lambda t: 1.5 if t >= 400 else 1.0)
    assert changes  # without the floor the same +0.15 ms is an alert


def test_baseline_freezes_while_alert_active() -> None:
    det, _ = run(DISTRIBUTIONS["lognormal"], 500.0, factor=lambda t: 1.6 if t >= 400 else 1.0)
    assert det.alert is not None and det.baseline is not None
    frozen = det.baseline
    run(DISTRIBUTIONS["lognormal"], 200.0, detector=det, start=500.0, factor=lambda t: 1.6)
    assert det.baseline == frozen


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="p0"):
        DetectorConfig(p0=0.2, p1=0.1)
    with pytest.raises(ValueError, match="multiple of slot_seconds"):
        DetectorConfig(short_seconds=15.0)
    with pytest.raises(ValueError, match="baseline_gap"):
        DetectorConfig(baseline_gap_seconds=-1)
    with pytest.raises(ValueError, match="persist"):
        DetectorConfig(persist_seconds=-1)


def test_nan_and_negative_values_do_not_poison() -> None:
    det = Detector(FAST)
    det.observe(1.0, float("nan"))
    det.observe(1.1, -5.0)
    det.observe(1.2, 0.5)
    assert det.p95s(1.5).short == pytest.approx(0.5, rel=0.02)


def test_deterministic() -> None:
    a = run(DISTRIBUTIONS["pareto"], 500.0, factor=lambda t: 1.3 if t > 300 else 1.0, seed=5)[1]
    b = run(DISTRIBUTIONS["pareto"], 500.0, factor=lambda t: 1.3 if t > 300 else 1.0, seed=5)[1]
    assert a == b and random.Random(5).random() == random.Random(5).random()


# -- persistence clock from the change's start; tail CUSUM ------------------------------------

# These test the exceedance CUSUMs' clock: the magnitude test is off.
ONSET_CLOCK = replace(FAST, onset_level=1.0, onset_lookback=1.0, tail_quantile=None, score_k=None)
NO_TAIL = replace(FAST, tail_quantile=None, score_k=None)
PREVIOUS = replace(NO_TAIL, onset_level=None)  # the clock from S >= 5, no tail CUSUM


def _cusum_clock(config: DetectorConfig, pre_lifted: bool) -> float | None:
    """Where the persistence clock starts for 8 exceedances from t = 10 s (0.1 s apart)."""
    level = -1.0 if config.onset_level is None else config.onset_level
    cusum = _Cusum(config, config.threshold, onset_level=level, confirm=config.persist_threshold)
    cusum.reset(0.0)
    if pre_lifted:  # noise lifted S above the onset level long before the burst
        cusum.add(2.0, config.up)
        cusum.add(2.1, config.up)
    for i in range(8):
        cusum.add(10.0 + i / 10, config.up)
    return cusum.episode


def test_persistence_clock_starts_at_the_last_low_point_within_the_lookback() -> None:
    # from S = 0: the last sample with S <= 1 is the first exceedance, 10.0 s
    assert _cusum_clock(ONSET_CLOCK, pre_lifted=False) == pytest.approx(10.0)
    # without onset_level the clock starts where S reached 5 (the behaviour before)
    assert _cusum_clock(PREVIOUS, pre_lifted=False) == pytest.approx(10.7)
    # S was lifted to 1.4 at 2.1 s and never fell back to 1; it reached 5 at 10.5 s: the clock
    # starts 1 s (the lookback) before that, not at 2.0 s
    assert _cusum_clock(ONSET_CLOCK, pre_lifted=True) == pytest.approx(9.5)
    wide = replace(ONSET_CLOCK, onset_lookback=100.0)  # clamped to `persist` (5 s)
    assert _cusum_clock(wide, pre_lifted=True) == pytest.approx(5.5)


@pytest.mark.parametrize("name", ["lognormal", "gamma", "pareto"])
def test_onset_clock_pages_a_step_sooner_but_not_before_it_persisted(name: str) -> None:
    def first_fire(config: DetectorConfig) -> float:
        _, changes = run(DISTRIBUTIONS[name], 500.0, factor=lambda t: 1.5 if t >= 400 else 1.0,
                         config=config)  # fmt: skip
        return next(c.alert.fired_at for _, c in changes if isinstance(c, AlertFired))

    before, after = first_fire(PREVIOUS), first_fire(ONSET_CLOCK)
    assert 400 + FAST.persist <= after < before
    # the test config's 0.5 s lookback (5 s in production) is as short as S's climb to 5 here
    assert 400 + FAST.persist <= first_fire(NO_TAIL) <= before


@pytest.mark.parametrize("length", [3.0, 4.0])
def test_onset_clock_still_ignores_bursts_shorter_than_persist(length: float) -> None:
    _, changes = run(
        DISTRIBUTIONS["lognormal"],
        600.0,
        factor=lambda t: 3.0 if 400 <= t < 400 + length else 1.0,
        config=NO_TAIL,
    )
    assert changes == []
    _, changes = run(
        DISTRIBUTIONS["lognormal"],
        600.0,
        factor=lambda t: 3.0 if 400 <= t < 400 + length else 1.0,
        config=FAST,  # the tail CUSUM has the same persistence
    )
    assert changes == []


TAIL = replace(FAST, score_k=None)  # the tail CUSUM is on by default: p99, 1 % -> 4 %


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_tail_cusum_is_quiet_on_stationary_series(name: str) -> None:
    det, changes = run(DISTRIBUTIONS[name], 1500.0, seed=7, config=TAIL)
    assert det.armed and changes == []
    assert det.tail_statistic is not None and det.tail_statistic < TAIL.threshold


def test_tail_cusum_catches_a_tail_only_change_sooner() -> None:
    # 6 % of requests x4 from 400 s: the p95-level CUSUM barely moves, the p99-level one does
    def first_fire(config: DetectorConfig, seed: int) -> float:
        rng = random.Random(seed)
        factor = lambda t: 4.0 if t >= 400 and rng.random() < 0.06 else 1.0  # noqa: E731
        _, changes = run(DISTRIBUTIONS["lognormal"], 700.0, factor=factor, config=config)
        fired = [c.alert for _, c in changes if isinstance(c, AlertFired)]
        assert fired, "missed"
        assert 400 + config.persist <= fired[0].fired_at
        return fired[0].fired_at

    gains = [first_fire(NO_TAIL, seed) - first_fire(TAIL, seed) for seed in (11, 12, 13)]
    assert min(gains) > 0 and sum(gains) > 20  # production: 10x the seconds


def test_tail_reference_is_just_above_the_baseline_p99() -> None:
    det, _ = run(DISTRIBUTIONS["lognormal"], 300.0, config=TAIL)
    assert det.baseline is not None
    rng = random.Random(0)
    values = sorted(max(rng.lognormvariate(-1.0, 0.6), 1e-4) for _ in range(200_000))
    p99 = values[int(0.99 * len(values))]
    assert det._q_tail == pytest.approx(1.05 * p99, rel=0.05)
    assert Detector(NO_TAIL).tail_statistic is None


def test_config_rejects_bad_onset_and_tail_settings() -> None:
    with pytest.raises(ValueError, match="onset_level"):
        DetectorConfig(onset_level=5.0)
    with pytest.raises(ValueError, match="onset_lookback"):
        DetectorConfig(onset_level=1.0, onset_lookback=-1.0)
    with pytest.raises(ValueError, match="tail_quantile"):
        DetectorConfig(tail_quantile=0.99, tail_p1=0.005)

"""Dating a change for the magnitude CUSUM's persistence clock (sidecar/drift/onset.py)."""

from __future__ import annotations

import math

import pytest

from sidecar.drift.onset import (
    Mark,
    ended,
    later_start,
    latest_plausible,
    likeliest_onset,
)

K = 0.4


def _marks(scores: list[float]) -> tuple[list[Mark], float, int]:
    """Marks at t = 0, 1, ... (the first before any score), and the sums after the last."""
    marks: list[Mark] = [(0.0, 0.0, 0)]
    total = 0.0
    for i, z in enumerate(scores, start=1):
        total += z - K
        marks.append((float(i), total, i))
    return marks, total, len(scores)


def test_a_step_of_the_tuned_size_is_dated_where_the_running_sum_was_lowest() -> None:
    marks, total, n = _marks([0.0] * 10 + [0.8] * 20)
    assert likeliest_onset(marks, total, n, K, least=3) == 10.0


def test_a_big_shift_is_dated_at_its_start_despite_noise_that_averaged_above_k_before_it() -> None:
    # ten samples at 0.5 (above k = 0.4: the lowest running sum is before them), then a burst at
    # 1.4: at the burst's own size the noise is below half of it, so the start is the burst's
    scores = [0.0] * 5 + [0.5] * 10 + [1.4] * 12
    marks, total, n = _marks(scores)
    lowest = min(marks, key=lambda m: m[1])[0]
    assert lowest == 5.0  # what the fixed-size estimate (the running sum's minimum) would say
    assert likeliest_onset(marks, total, n, K, least=3) == 15.0


def test_a_few_lucky_samples_at_the_end_do_not_date_the_change() -> None:
    marks, total, n = _marks([0.0] * 10 + [0.8] * 20 + [2.4, 2.4])
    assert likeliest_onset(marks, total, n, K, least=3) == 10.0
    # a weak start and two top scores: alone, the two are the likeliest "shift"; with least=3
    # the date has at least 3 samples after it
    marks, total, n = _marks([0.0] * 10 + [0.5] * 6 + [2.4, 2.4])
    assert likeliest_onset(marks, total, n, K, least=1) == 16.0
    assert likeliest_onset(marks, total, n, K, least=3) <= n - 3


def test_no_mark_with_enough_samples_after_it() -> None:
    marks, total, n = _marks([1.0, 1.0])
    assert likeliest_onset(marks, total, n, K, least=3) == -math.inf


def test_a_second_dating_moves_the_clock_only_when_clearly_later() -> None:
    # the clock started at 5 (noise), the burst began at 15: re-dated to the burst
    marks, total, n = _marks([0.0] * 5 + [0.3] * 10 + [1.4] * 30)
    assert later_start(marks, 5.0, total, n, K, least=3, spread=5.0) == 15.0
    # a step dated at 10 stays there: the likeliest start is at most a sample or two later
    marks, total, n = _marks([0.0] * 10 + [0.8] * 45)
    assert later_start(marks, 10.0, total, n, K, least=3, spread=5.0) is None
    # nothing after the clock's start yet
    assert later_start(marks, 99.0, total, n, K, least=3, spread=5.0) is None


def test_a_small_shift_is_redated_at_its_own_size_not_at_the_tuned_one() -> None:
    # +0.36 (a +20 % step at sigma 0.5) from 10: at 2k = 0.8 the running sum of score - 0.4
    # keeps falling and its lowest point would be the last sample; at its own size it is 10
    marks, total, n = _marks([0.0] * 10 + [0.36] * 80)
    assert likeliest_onset(marks, total, n, K, least=3) > 80  # the fixed-size estimate
    assert later_start(marks, 0.0, total, n, K, least=3, spread=5.0) is None  # stays at 0 ...
    # ... because within its spread (5 / 0.32^2 ~ 49 samples); a tighter spread moves it to 10
    assert later_start(marks, 0.0, total, n, K, least=3, spread=0.5) == 10.0


def test_ended_stays_at_zero_while_the_shift_lasts_and_climbs_once_it_ended() -> None:
    mu, evidence = 1.4, 0.0
    for _ in range(50):  # samples at the shift: each is evidence it has not ended
        evidence = ended(evidence, mu, mu)
    assert evidence == 0.0
    climbed = [evidence := ended(evidence, 0.0, mu) for _ in range(3)]
    assert climbed == pytest.approx([0.98, 1.96, 2.94])  # mu^2 / 2 per normal sample
    assert ended(climbed[-1], mu, mu) == pytest.approx(2.94 - 0.98)  # and falls back


def test_ended_at_a_small_shift_climbs_slowly() -> None:
    # +50 % (0.8): 0.32 a normal sample, so a few noisy samples of a step rarely reach 2 nats
    evidence = 0.0
    for _ in range(3):
        evidence = ended(evidence, 0.0, 0.8)
    assert evidence == pytest.approx(0.96)


def test_the_latest_plausible_start_of_a_burst_is_its_own_not_the_noise_before_it() -> None:
    # noise slightly above 0 for 12 samples started the clock early; then a shift of 0.8
    scores = [0.3] * 12 + [0.8] * 30
    marks, total, n = _marks(scores)
    # at the burst's start or up to ~1 nat past it (~0.31 nats a sample here): not before it
    start = latest_plausible(marks, 0.0, total, n, K, least=3, slack=1.0)
    assert start is not None and 12.0 <= start <= 16.0
    # no slack: the likeliest start itself; a clock already there is not moved
    assert latest_plausible(marks, 0.0, total, n, K, least=3, slack=0.0) == 12.0
    assert latest_plausible(marks, 12.0, total, n, K, least=3, slack=0.0) is None


def test_slack_moves_a_step_s_clock_later_by_about_slack_over_half_mu_squared() -> None:
    scores = [0.0] * 10 + [0.8] * 40
    marks, total, n = _marks(scores)
    one = latest_plausible(marks, 10.0, total, n, K, least=3, slack=1.0)
    two = latest_plausible(marks, 10.0, total, n, K, least=3, slack=2.0)
    assert one is not None and two is not None
    assert 10.0 < one < two <= 10.0 + 2.0 / (0.8 * 0.8 / 2) + 1  # ~0.32 nats a sample
    assert latest_plausible(marks, 60.0, total, n, K, least=3, slack=1.0) is None  # no marks

"""Round 8's clock-free persistence test (sidecar/drift/outlast.py) and its detector wiring."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from sidecar.drift.config import DetectorConfig
from sidecar.drift.detector import Detector
from sidecar.drift.onset import Mark
from sidecar.drift.outlast import outlasts
from tests.drift.test_magnitude import ONSET, PRODUCTION, _pages, _step

K, FLOOR, PERSIST = 0.4, 0.5, 10.0


def _marks(scores: list[float]) -> list[Mark]:
    """Marks at t = 0, 1, ... (the first before any score) with running sums of `score - K`."""
    marks: list[Mark] = [(0.0, 0.0, 0)]
    total = 0.0
    for i, z in enumerate(scores, start=1):
        total += z - K
        marks.append((float(i), total, i))
    return marks


def test_nothing_to_say_until_a_start_is_persist_seconds_old() -> None:
    assert outlasts(_marks([0.8] * 10), K, PERSIST, 3, FLOOR) == -math.inf
    assert outlasts(_marks([0.8] * 11), K, PERSIST, 3, FLOOR) > -math.inf


def test_a_lasting_shift_gains_about_half_its_square_a_sample_past_the_persistence() -> None:
    # a shift of exactly 0.8 with no noise: H1 explains every sample, H0 the best 11 of them (a
    # 10 s burst covers samples 1 s apart from t to t + 10); each other one adds 0.8 x 0.4 nats
    for extra in (5, 10, 20):
        assert outlasts(_marks([0.8] * (10 + extra)), K, PERSIST, 3, FLOOR) == pytest.approx(
            0.32 * (extra - 1)
        )


def test_a_burst_that_ended_falls_by_the_normal_samples_after_it() -> None:
    burst = outlasts(_marks([0.8] * 10 + [0.0] * 10), K, PERSIST, 3, FLOOR)
    assert burst <= 0.0  # H0's window is the burst; anything longer pays for the normal samples
    lasting = outlasts(_marks([0.8] * 20), K, PERSIST, 3, FLOOR)
    assert lasting == pytest.approx(0.32 * 9)


def test_noise_that_looked_shifted_before_a_burst_counts_as_evidence() -> None:
    # no onset is chosen: three high samples before a 10 s burst make a 13 s shift plausible,
    # which is what the threshold in nats (a few) is for
    quiet = outlasts(_marks([0.0] * 5 + [0.8] * 10 + [0.0] * 3), K, PERSIST, 3, FLOOR)
    lifted = outlasts(_marks([0.0] * 2 + [1.6] * 3 + [0.8] * 10 + [0.0] * 3), K, PERSIST, 3, FLOOR)
    assert lifted > quiet


def test_a_small_shift_is_read_at_its_own_size_not_the_floor() -> None:
    # a lasting 0.36 (+20 %) read at the floor 0.5 still climbs, by 0.5 x (0.36 - 0.25) a sample
    value = outlasts(_marks([0.36] * 110), K, PERSIST, 3, FLOOR)
    assert value == pytest.approx(99 * 0.5 * (0.36 - 0.25), rel=0.01)


def test_the_detector_wires_it_in_place_of_the_clock() -> None:
    config = DetectorConfig(floor=0.020, score_outlast=2.0, score_outlast_seconds=300.0)
    score = Detector(config)._score
    assert score is not None and score.outlast == (2.0, 300.0, 0.5)
    assert score.lookback == 300.0 + config.score_persist
    default = Detector(DetectorConfig())._score
    assert default is not None and default.outlast is None  # off: round 7's clock
    with pytest.raises(ValueError, match="score_outlast"):
        replace(config, score_outlast=0.0)


def test_with_it_a_step_at_one_sample_a_second_pages_and_a_short_burst_does_not() -> None:
    config = replace(PRODUCTION, score_outlast=2.0)
    delays = []
    for seed in range(3):
        pages = _pages(config, _step(1.5), seed)[1]
        assert pages and pages[0] >= ONSET + config.score_persist  # never before 45 s of shift
        delays.append(pages[0] - ONSET)
    assert max(delays) < 120

    def burst(t: float) -> float:
        return 2.0 if ONSET <= t < ONSET + 30 else 1.0

    assert _pages(config, burst, seed=0)[1] == []

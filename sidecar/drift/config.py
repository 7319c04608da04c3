"""Every tunable of the drift detector, in one frozen value.

Defaults are the production design (docs/drift.md): 10 s slots, 1 min short window, 5 min medium
window, baseline [t - 65 min, t - 5 min] refreshed each minute, CUSUM on exceedances of
q_ref = max(1.05 * p95, p95 + floor) with p0 = 5 % -> p1 = 10 % and threshold h = 12, a second
one on exceedances of the baseline p99 (1 % -> 4 %), paging only on changes that persist 50 s
from their estimated start (shorter bursts are non-events). Tests and the
backtest of pre-aggregated series build smaller configs (a 20 s baseline, arming at 100 samples).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class Normalization(StrEnum):
    NONE = "none"  # heartbeat RTT, upstream cancel time
    LOAD = "load"  # ITL: expected = a + c * inflight
    PROMPT_AND_LOAD = "prompt_and_load"  # TTFT: expected = a + b * prompt_tokens + c * inflight


# Absolute floors (seconds) under which a p95 rise is not worth a page, per signal.
DEFAULT_FLOORS: dict[str, float] = {
    "ttft": 0.020,
    "itl": 0.002,
    "heartbeat_rtt": 0.001,  # loopback; use 0.005 over a network
    "upstream_cancel": 0.010,
}

DEFAULT_NORMALIZATION: dict[str, Normalization] = {
    "ttft": Normalization.PROMPT_AND_LOAD,
    "itl": Normalization.LOAD,
    "heartbeat_rtt": Normalization.NONE,
    "upstream_cancel": Normalization.NONE,
}


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    floor: float = 0.020
    threshold: float = 12.0  # h: CUSUM alarm level (log-likelihood units)
    # Persistence: a change must still be there `persist_seconds` after it began (None: the short
    # window less one slot, 50 s in production) before it pages, so bursts shorter than that are
    # non-events. "Began" is when the statistic first reached `persist_from` (since it was last
    # 0); "still there" is log-likelihood evidence >= `persist_threshold` from samples that
    # arrived at least `persist_seconds` later.
    persist_seconds: float | None = None
    persist_from: float = 5.0
    persist_threshold: float = 4.0
    # Where the persistence clock starts once S reaches `persist_from`: the last sample at which
    # S was <= `onset_level` (about where the change began, not where its evidence piled up),
    # but at most `onset_lookback` seconds before S reached `persist_from`, so noise that had
    # lifted S before a burst cannot start the clock long before the burst. None: the clock
    # starts where S reaches `persist_from` (the previous behaviour; ~5 s later on a +50 % step).
    onset_level: float | None = 1.0
    onset_lookback: float = 5.0
    # A second CUSUM on exceedances of q_tail = max(margin * baseline p99, p99 + floor): tail
    # mass 1 % -> `tail_p1`, threshold `tail_threshold` (None: `threshold`), same persistence.
    # It catches changes confined to a few % of requests (a slow replica, a cold cache) that
    # barely move the p95-level CUSUM. None: off.
    tail_quantile: float | None = 0.99
    tail_p1: float = 0.04
    tail_threshold: float | None = None
    # The magnitude test (sidecar/drift/score.py): a CUSUM on each sample's normal score against
    # the baseline's distribution, S <- max(0, S + z - score_k); None: off. Its threshold is set
    # so the key's false pages stay within `false_pages_per_week` at the baseline's sample rate
    # (with the exceedance CUSUMs' theoretical share taken out, at most half), unless
    # `score_threshold` fixes it. Persistence: the samples `persist` seconds or more after the
    # change began must add `score_confirm` nats of evidence that it is still there, read at two
    # references (score_k, for small shifts, and score_confirm_k, faster for big ones); a burst
    # that has ended passes that test with probability about e^-score_confirm each.
    score_k: float | None = 0.25
    score_confirm_k: float = 0.4
    # Bars for a big shift (mean score since the clock >= `score_big_shift`: the size of the
    # bursts the rule must ignore; a x2 burst at sigma 0.5 scores ~1.4): `score_confirm` nats
    # from at least `score_confirm_samples` late samples (noise after a burst that ended passes
    # the bar mostly in its first few samples, and a burst whose clock started a few seconds
    # early still has its own samples there: 12 carry it past its end). A smaller shift (+50 %:
    # ~0.8) needs `score_confirm_small` from `score_confirm_samples_small`. None: the big bars
    # for every size (round 5: 3 nats from 8 samples).
    score_confirm: float = 3.0
    score_confirm_samples: int = 12
    score_big_shift: float | None = 1.05
    score_confirm_small: float = 2.0
    score_confirm_samples_small: int = 6
    # ... and while the late samples do not say the shift has ended: a CUSUM of "back to
    # normal" at the shift seen since the clock (nats, sidecar/drift/onset.py) below this. None:
    # off. It stops bursts whose clock started a few seconds early once they end.
    score_ended: float | None = 2.0
    # Round 7's experiments for fewer 45 s x1.5 burst pages at the same +50 % delay, off: neither
    # moved the trade-off (docs/benchmarks-drift.md, round 7). `score_redate_slack`: when the
    # window opens, date the clock once more at the latest start within this many nats of the
    # likeliest (sidecar/drift/onset.py: latest_plausible), not only when clearly later.
    # `score_late_at_shift`: read the late samples once, in nats at the shift seen since the
    # clock (at least 2 x score_k), against the bar in nats, instead of at two references.
    score_redate_slack: float | None = None
    score_late_at_shift: bool = False
    # Round 8: no clock. The magnitude CUSUM pages once S >= h and the likelihood ratio of "the
    # shift outlasts any burst of `score_persist` seconds" against "a burst of at most that long,
    # anywhere" reaches this many nats (sidecar/drift/outlast.py), over the last
    # `score_outlast_seconds` of the excursion. None: the clock, bars and `score_ended` above.
    score_outlast: float | None = None
    score_outlast_seconds: float = 600.0
    score_threshold: float | None = None
    # The magnitude CUSUM's own persistence (None: 0.9 x persist, 45 s in production): its clock
    # is dated twice (sidecar/drift/onset.py) and a burst that ended is stopped by
    # `score_ended`, so it needs no margin over the longest burst (round 5: 47 s).
    score_persist_seconds: float | None = None
    score_arm_samples: int = 500  # the score CUSUM arms sooner than the exceedance ones
    # None: scores are bounded by the top bin's (~2.5), so one sample never weighs much. A number
    # (pre-aggregated series): a value above every baseline bin scores by how far above it is,
    # adding at most this fraction of the threshold (0.55: one point alone cannot page, two can).
    score_cap: float | None = None
    # With score_cap, on steps long enough that a burst the rule must ignore fills at most a
    # quarter of a point (sidecar/drift/backtest.py): a point far enough above the baseline right
    # after one that scored the cap scores the cap too (score.py: seconds_far). At shorter steps
    # one 45 s burst can fill a point and spill into the next, which this would page.
    score_far_pairs: bool = False
    false_pages_per_week: float = 1.0
    p0: float = 0.05  # exceedance probability with no change
    p1: float = 0.10  # exceedance probability the CUSUM is tuned to detect
    margin: float = 1.05  # q_ref = max(margin * p95, p95 + floor)
    normalization: Normalization = Normalization.NONE
    slot_seconds: float = 10.0
    short_seconds: float = 60.0
    medium_seconds: float = 300.0
    baseline_seconds: float = 3600.0
    baseline_gap_seconds: float = 300.0  # keeps a drift's start out of its own baseline
    refresh_seconds: float = 60.0  # baseline recompute and clear-check cadence
    refit_seconds: float = 600.0  # normalisation refit cadence
    arm_samples: int = 2000  # CUSUM arms with this many baseline samples ...
    arm_span_seconds: float = 1800.0  # ... spanning at least this long
    fast_arm_samples: int = 400  # the fast path needs fewer
    fast_min_samples: int = 50  # samples in the short window before the fast path may fire
    fast_exceed_fraction: float = 0.5
    fast_ratio: float = 2.0
    crit_ratio: float = 1.5  # WARN -> CRIT when the medium p95 reaches this x baseline
    crit_min_samples: int = 50
    clear_exceed_fraction: float = 0.075
    clear_min_samples: int = 200
    clear_evaluations: int = 3
    flap_seconds: float = 600.0  # a new alert this soon after a clear reopens the old one

    def __post_init__(self) -> None:
        if not 0 < self.p0 < self.p1 < 1:
            raise ValueError("need 0 < p0 < p1 < 1")
        if self.threshold <= 0 or self.floor < 0 or self.margin < 1:
            raise ValueError("need threshold > 0, floor >= 0 and margin >= 1")
        for name in ("short_seconds", "medium_seconds", "refresh_seconds", "baseline_seconds"):
            ratio = getattr(self, name) / self.slot_seconds
            if self.slot_seconds <= 0 or ratio < 1 or abs(ratio - round(ratio)) > 1e-9:
                raise ValueError(f"{name} must be a positive multiple of slot_seconds")
        if self.baseline_gap_seconds < 0:
            raise ValueError("baseline_gap_seconds must be >= 0")
        if (self.persist_seconds or 0.0) < 0 or self.persist_threshold < 0:
            raise ValueError("need persist_seconds >= 0 and persist_threshold >= 0")
        if self.persist_from <= 0:
            raise ValueError("need persist_from > 0")
        if self.tail_quantile is not None and not 0 < 1 - self.tail_quantile < self.tail_p1 < 1:
            raise ValueError("need 0 < 1 - tail_quantile < tail_p1 < 1")
        if self.score_k is not None and not 0 < self.score_k <= self.score_confirm_k:
            raise ValueError("need 0 < score_k <= score_confirm_k")
        if self.score_cap is not None and not 0 < self.score_cap < 1:
            raise ValueError("need 0 < score_cap < 1 (a share of the threshold)")
        if min(self.score_confirm, self.score_confirm_small, self.false_pages_per_week) <= 0:
            raise ValueError("need score_confirm(_small) > 0 and false_pages_per_week > 0")
        if self.score_redate_slack is not None and self.score_redate_slack < 0:
            raise ValueError("need score_redate_slack >= 0 (or None: off)")
        if self.score_outlast is not None and (
            self.score_outlast <= 0 or self.score_outlast_seconds <= 0
        ):
            raise ValueError("need score_outlast > 0 (or None: off) and score_outlast_seconds > 0")
        if self.score_ended is not None and self.score_ended <= 0:
            raise ValueError("need score_ended > 0 (or None: off)")
        if self.onset_lookback < 0 or not 0 <= (self.onset_level or 0.0) < self.persist_from:
            raise ValueError("need onset_lookback >= 0 and 0 <= onset_level < persist_from")

    @property
    def up(self) -> float:
        """CUSUM increment on an exceedance: ln(p1 / p0)."""
        return math.log(self.p1 / self.p0)

    @property
    def down(self) -> float:
        """CUSUM increment otherwise: ln((1 - p1) / (1 - p0)), negative."""
        return math.log((1 - self.p1) / (1 - self.p0))

    @property
    def persist(self) -> float:
        """Seconds a change must last before it pages (fast path and CUSUM alike)."""
        if self.persist_seconds is not None:
            return self.persist_seconds
        return self.short_seconds - self.slot_seconds

    @property
    def score_persist(self) -> float:
        """Seconds a change must last before the magnitude CUSUM pages it."""
        if self.score_persist_seconds is not None:
            return self.score_persist_seconds
        return 0.9 * self.persist

    @property
    def history_seconds(self) -> float:
        return self.baseline_seconds + self.baseline_gap_seconds + self.refresh_seconds

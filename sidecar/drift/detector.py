"""Early-warning p95 drift detector for one (model, signal): pure, clock-free, I/O-free.

Why not "p95 over the last minute > 1.2 x baseline"? A p95 from 100 samples wanders +-10-20 % on
its own, so ratio rules page on noise or react late. Instead each sample is one Bernoulli trial:
does it exceed q_ref, just above the baseline's p95? With no change ~5 % do, whatever the latency
distribution; when the tail moves, more do. A CUSUM on the log-likelihood ratio of p1 = 10 % vs
p0 = 5 % accumulates that evidence with a known false-alarm rate (threshold h), and its last zero
estimates when the drift began. A second one does the same above the baseline's p99. One bit per
sample is little at one request a second, so a third CUSUM tests the magnitude: each sample's
normal score against the baseline's distribution (sidecar/drift/score.py), with a threshold from
the key's false-alarm budget and rate. Big jumps are also caught by the fast path on the last
minute.

Bursts shorter than a minute are not drifts: every path pages only once the change has persisted
`persist` seconds (50 s in production). For a CUSUM: counting from where the change began (see
_Cusum), the samples arriving `persist` seconds or more later must add evidence (the plain sum of
their increments) >= a bar while S >= h; after a burst those samples are normal and the sum drifts
down. For the fast path: its condition must hold at every evaluation for `persist` seconds plus
the short window less a slot (a burst stays in the window that long after it ended).

Lifecycle:  OK --S >= h, persisted--> WARN --fast path or 5-min p95 >= 1.5x--> CRIT
            OK --fast path held for `persist` + smear---------------------> CRIT
            WARN/CRIT --3 refreshes with 5-min exceedance <= 7.5 % (n >= 200)--> OK (resolved)
            resolved --fires again within 10 min--> the same alert, reopened (a flap).
The baseline is frozen while S > h/2 or an alert is active, so a drift cannot teach itself normal.

Feed it with `observe(t, value, ...)` (cheap, O(1)) and call `evaluate(now)` every second or so;
both take the caller's clock in seconds. Out-of-order samples count in the newest slot.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass, replace

from sidecar.drift.config import DetectorConfig, Normalization
from sidecar.drift.events import (
    Alert,
    AlertChange,
    AlertEscalated,
    AlertFired,
    AlertResolved,
    Severity,
)
from sidecar.drift.normalize import CovariateHistory, LoadModel, fit
from sidecar.drift.onset import (
    Mark,
    ended,
    later_start,
    latest_plausible,
    likeliest_onset,
    shift_since,
)
from sidecar.drift.outlast import outlasts
from sidecar.drift.score import (
    FAR,
    GRID,
    SCORES,
    TOP_SCORE,
    WEEK,
    edges,
    extrapolated,
    grid_of,
    seconds_far,
    tail_slope,
    threshold,
)
from sidecar.drift.sketch import Tally, Windows, merged, quantile

_TRAIL = 1024  # marks kept for dating a change: 50 s up to 20 samples/s, the last 1024 above
_LEAST = 3  # samples after a mark before it may date a change (see likeliest_onset)
_SPREAD = 5.0  # a second dating moves the clock if later by more than this / shift^2 samples


def _tail(n: int) -> float:
    """Samples above a level for "p95 >= level": 5 %, and never a lone spike in a small window."""
    return max(0.05 * n, 3.0)


@dataclass(frozen=True, slots=True)
class Baseline:
    p95: float  # normalised
    raw_p95: float  # seconds
    q_ref: float
    n: int
    span: float  # seconds between the first and last non-empty bucket's edges
    computed_at: float


@dataclass(frozen=True, slots=True)
class WindowP95:
    short: float | None
    medium: float | None
    baseline: float | None


class _Cusum:
    """S <- max(0, S + increment) with its persistence clock (module docstring).

    `confirm` is the evidence the samples after the persistence delay must add (the plain sum of
    their increments); `strong`, when given, is a second such sum of increments the caller passes
    alongside, with its own bar (the score CUSUM confirms a big change faster with it).

    `argmin=True` (the score CUSUM) starts the clock at the likeliest start of the shift seen in
    the `persist` seconds before S reached `persist_from` (sidecar/drift/onset.py): the lowest
    point of the running sum of the `strong` increments for a shift of the size `strong` is tuned
    to, the observed shift's own reference for a bigger one. Its steeper downward drift under no
    change keeps noise that had lifted S before a burst from moving the clock before the burst.
    An episode ends whenever S falls back to `onset_level`: a burst that ended must not lend its
    clock to the next climb. At one sample a second that clock is ~10 s closer to a step's start
    than the exceedance CUSUMs' 5 s lookback clamp allows.
    """

    __slots__ = (
        "at_shift", "bars", "big_from", "confirm", "crossed", "ended", "ended_bar", "episode", "h",
        "k_strong", "last_zero", "late", "late_n", "late_strong", "least_late", "lookback", "low",
        "onset_level", "origin", "outlast", "persist", "persist_from", "redated", "s", "shift",
        "slack", "small_bars", "strong", "strong_n", "strong_sum", "trail",
    )  # fmt: skip

    def __init__(
        self,
        config: DetectorConfig,
        h: float,
        *,
        onset_level: float,
        confirm: float,
        strong: float = math.inf,
        persist_from: float | None = None,
        persist: float | None = None,
        argmin: bool = False,
        k_strong: float = 0.0,
        least_late: int = 0,
        ended_bar: float = math.inf,
        small: tuple[float, float, int] | None = None,
        big_from: float = -math.inf,
        slack: float | None = None,
        at_shift: float | None = None,
        outlast: tuple[float, float, float] | None = None,
    ) -> None:
        self.h = h
        # round 8 (DetectorConfig.score_outlast): (nats, seconds of trail, smallest shift read)
        # for outlast.py's test in place of the clock; needs argmin (the trail)
        self.outlast = outlast
        # round 7's experiments, off by default (DetectorConfig.score_redate_slack and
        # score_late_at_shift): the clock dated once more to the latest start within `slack`
        # nats of the likeliest; late samples read in nats at the shift seen (at least at_shift)
        self.slack, self.at_shift = slack, at_shift
        self.persist = config.persist if persist is None else persist
        self.persist_from = config.persist_from if persist_from is None else persist_from
        self.confirm, self.strong, self.least_late = confirm, strong, least_late
        # Bars for a shift whose mean score since the clock (`shift`, set as the window opens)
        # is below `big_from` (`small`: confirm, strong, least_late), and the ones in force.
        self.small_bars, self.big_from, self.shift = small, big_from, 0.0
        self.bars = (confirm, strong, least_late)
        # "the shift has ended" evidence over the late samples (sidecar/drift/onset.py: ended);
        # a crossing waits while it is >= ended_bar; inf: off
        self.ended_bar, self.ended = ended_bar, 0.0
        self.origin: Mark | None = None  # the trail's mark at the clock, when the window opened
        level = config.onset_level
        self.onset_level = -1.0 if level is None else onset_level
        self.lookback = 0.0 if level is None else min(config.onset_lookback, self.persist)
        # (t, running sum of `strong` increments, samples) over the last `persist` seconds, for
        # likeliest_onset; `k_strong` is the reference the strong increments subtract
        self.strong_sum, self.strong_n, self.k_strong = 0.0, 0, k_strong
        self.trail: deque[Mark] | None = None
        if argmin:
            self.trail, self.lookback = deque(maxlen=_TRAIL), self.persist
            if outlast is not None:
                self.lookback = outlast[1] + self.persist
        self.s = 0.0
        self.last_zero: float | None = None  # the alert's onset estimate
        self.low = -math.inf  # last sample with S <= onset_level: the clock's earliest start
        self.episode: float | None = None  # where the persistence clock started
        self.redated = True  # the argmin clock was dated again when its window opened
        self.late = self.late_strong = 0.0  # evidence from samples >= `persist` after `episode`
        self.late_n = 0  # ... and how many samples it is from
        self.crossed: tuple[float, float] | None = None  # (time S crossed h, onset)

    def reset(self, t: float) -> None:
        self.s, self.last_zero = 0.0, t
        self._restart(t)
        self.crossed = None

    def _restart(self, t: float) -> None:
        self.low, self.episode = t, None
        self.late = self.late_strong = self.ended = 0.0
        self.late_n = 0
        trail = self.trail
        if trail is not None:
            trail.clear()
            trail.append((t, 0.0, 0))
            self.strong_sum, self.strong_n = 0.0, 0

    def add(self, t: float, step: float, strong: float = 0.0) -> None:
        s = self.s + step
        episode, trail = self.episode, self.trail
        if s <= 0.0:
            self.s, self.last_zero, self.low = 0.0, t, t
            if episode is not None:
                self.episode = None
                self.late = self.late_strong = self.ended = 0.0
                self.late_n = 0
            if trail:
                trail.clear()  # while S is 0 the trail waits (see below)
            return
        if trail is not None:
            # Only while S > 0: wherever S fell to 0, the sum of the (smaller) strong increments
            # fell at least as low, so the likeliest start is at the last zero or after it.
            if not trail:
                trail.append((self.last_zero or t, 0.0, 0))
                self.strong_sum, self.strong_n = 0.0, 0
            total = self.strong_sum = self.strong_sum + strong
            n = self.strong_n = self.strong_n + 1
            trail.append((t, total, n))
            while trail[0][0] < t - self.lookback:
                trail.popleft()
            if self.outlast is not None:
                self._outlast(t, s, trail)
                return
        if episode is None:
            if s >= self.persist_from:
                self.redated = trail is None
                if trail:
                    start = likeliest_onset(trail, total, n, self.k_strong, _LEAST)
                    self.episode = start if start > -math.inf else trail[0][0]
                else:
                    self.episode = max(self.low, t - self.lookback)
            elif s <= self.onset_level:
                self.low = t
        elif trail is not None and s <= self.onset_level:
            self._restart(t)
        elif t >= episode + self.persist:
            if not self.redated and trail and self.persist > 0:  # no clock to date at 0 s
                # The window opens: date the change again on everything seen since the clock
                # started (45 samples at 1/s, not the ~15 the first date had). Later only, and
                # by more than the estimate's own spread: an early start is what pages bursts
                # (their tail counts as "still there"), a late one delays steps.
                self.redated = True
                slack = self.slack
                if slack is None:
                    later = later_start(trail, episode, total, n, self.k_strong, _LEAST, _SPREAD)
                else:
                    later = latest_plausible(trail, episode, total, n, self.k_strong, _LEAST, slack)
                if later is not None:
                    self.episode, self.redated = later, slack is not None  # once
                    self.s = s
                    return
            if trail and not self.late_n:
                self.origin = next((m for m in trail if m[0] >= episode), None)
                origin = self.origin
                self._size(0.0 if origin is None else shift_since(origin, total, n, self.k_strong))
            self.late += step
            if self.at_shift is not None:  # nats at the shift seen (score_late_at_shift)
                mu = max(self.shift, self.at_shift)
                self.late_strong += mu * (strong + self.k_strong - mu / 2)
            else:
                self.late_strong += strong
            self.late_n += 1
            if self.ended_bar < math.inf:
                # at the shift seen since the clock, late samples included: sized once, a shift
                # over-estimated from the first few samples (at 0.2 samples/s the window holds ~9)
                # makes a lasting smaller one look "ended" forever (round 7: +50 % at 0.2/s
                # sized 1.7 was never paged)
                origin = self.origin
                mu = self.shift
                if origin is not None:
                    mu = max(shift_since(origin, total, n, self.k_strong), self.k_strong)
                self.ended = ended(self.ended, strong + self.k_strong, mu)
        h = self.h
        if s >= h:
            s = min(s, 2 * h)  # bounded: only the crossing matters
            confirm, strong_bar, least = self.bars
            if self.crossed is None and (
                (
                    (self.late >= confirm or self.late_strong >= strong_bar)
                    and self.late_n >= least
                    and self.ended < self.ended_bar
                )
                or self.persist <= 0
            ):
                self.crossed = (t, t if self.last_zero is None else self.last_zero)
        self.s = s

    def _outlast(self, t: float, s: float, trail: deque[Mark]) -> None:
        """S >= h and the shift outlasts any burst of `persist` seconds (outlast.py): a crossing.

        The test costs a pass over the trail, so it runs only while S >= h and not yet crossed.
        """
        h = self.h
        if s >= h:
            s = min(s, 2 * h)
            nats, _, floor = self.outlast or (math.inf, 0.0, 0.0)
            if self.crossed is None and (
                self.persist <= 0
                or outlasts(trail, self.k_strong, self.persist, _LEAST, floor) >= nats
            ):
                self.crossed = (t, t if self.last_zero is None else self.last_zero)
        self.s = s

    def _size(self, mu: float) -> None:
        """The shift seen since the clock started sets the bars for the samples after it.

        A shift the size of the bursts the rule must ignore (a x2 burst of lognormal latencies
        at sigma 0.5 scores ~1.4) gets the strict bars: its clock started early only if noise
        before the burst looked like it, and more late samples carry it past the burst's end,
        where `ended` stops it. A smaller one (+50 %: ~0.8) is confirmed sooner.
        """
        self.shift = max(mu, self.k_strong)
        small = self.small_bars
        if small is not None and self.shift < self.big_from:
            self.bars = small
        else:
            self.bars = (self.confirm, self.strong, self.least_late)
        if self.at_shift is not None:  # one reading, in nats: the strong bar times 2 k_strong
            _, strong, least = self.bars
            self.bars = (math.inf, strong * 2 * self.k_strong, least)


class Detector:
    def __init__(self, config: DetectorConfig, *, signal: str = "", model: str = "") -> None:
        self.config = config
        self.signal, self.model = signal, model
        self._windows = Windows(
            config.slot_seconds,
            config.refresh_seconds,
            max(config.medium_seconds, config.short_seconds),
            config.history_seconds,
            separate_raw=config.normalization is not Normalization.NONE,
        )
        self._history = (
            None
            if config.normalization is Normalization.NONE
            else CovariateHistory(config.refresh_seconds, config.history_seconds)
        )
        level = config.onset_level or 0.0
        self._up, self._down = config.up, config.down
        self._cusum = _Cusum(
            config, config.threshold, onset_level=level, confirm=config.persist_threshold
        )
        # Optional second CUSUM on exceedances of the baseline's tail quantile (p99): catches a
        # change confined to a few % of requests (a slow replica, a cold cache) sooner.
        tail = config.tail_quantile
        self._tail: _Cusum | None = None
        self._tail_up = self._tail_down = 0.0
        if tail is not None:
            p0, p1 = 1 - tail, config.tail_p1
            up, down = math.log(p1 / p0), math.log((1 - p1) / (1 - p0))
            self._tail_up, self._tail_down = up, down
            # "back near 0" is below one up-step: the tail CUSUM's bigger steps scale the level
            self._tail = _Cusum(
                config,
                config.tail_threshold or config.threshold,
                onset_level=level * up / config.up,
                confirm=config.persist_threshold,
            )
        self._q_tail = math.inf
        # Optional magnitude test: a CUSUM on each sample's normal score against the baseline
        # (sidecar/drift/score.py), S <- max(0, S + z - k). Its threshold comes from the
        # false-alarm budget and the key's sample rate, set at each rebaseline.
        self._score: _Cusum | None = None
        self._k = self._k_strong = 0.0
        k = config.score_k
        if k is not None:
            self._k, self._k_strong = k, config.score_confirm_k
            # In log-likelihood terms a score CUSUM's S is worth 2k nats per unit: its levels
            # (onset, clock start, confirmation) are the exceedance CUSUMs' divided by 2k.
            nats = 2 * k
            self._score = _Cusum(
                config,
                math.inf,
                onset_level=level / nats,
                confirm=config.score_confirm / nats,
                strong=config.score_confirm / (2 * config.score_confirm_k),
                persist_from=config.persist_from / nats,
                persist=config.score_persist,
                argmin=True,
                k_strong=config.score_confirm_k,
                least_late=config.score_confirm_samples,
                ended_bar=math.inf if config.score_ended is None else config.score_ended,
                small=(
                    config.score_confirm_small / nats,
                    config.score_confirm_small / (2 * config.score_confirm_k),
                    config.score_confirm_samples_small,
                ),
                big_from=-math.inf if config.score_big_shift is None else config.score_big_shift,
                slack=config.score_redate_slack,
                at_shift=nats if config.score_late_at_shift else None,
                outlast=(
                    None
                    if config.score_outlast is None
                    else (config.score_outlast, config.score_outlast_seconds, nats)
                ),
            )
        self._edges: list[float] | None = None  # score bins; None: the score CUSUM is not armed
        self._cap = 0.0  # the highest score: k + score_cap x threshold, set with the bins
        self._top = GRID - 1  # the bin above every edge
        self._grid_model: LoadModel | None = None  # the model the bins were normalised with
        self._grid_at = -math.inf
        self._slope = 0.0  # > 0: scores above the top bin are extrapolated (score_cap)
        self._far = False  # the last point scored the cap (score_far_pairs)
        self._fast_since: float | None = None  # first evaluation of the current fast-path run
        self._q_ref: float | None = None  # exceedances are counted once a baseline exists
        self._crit_level = self._fast_level = math.inf
        self._armed = False
        self.baseline: Baseline | None = None
        self.load_model: LoadModel | None = None
        self._last_fit = -math.inf
        self._refresh_index: int | None = None
        self.alert: Alert | None = None
        self._last_resolved: Alert | None = None
        self._clear_streak = 0
        self._next_id = 1
        # Drift episodes [onset, resolved) stay out of later baselines: unfreezing after a clear
        # must not let the episode it just saw into the reference.
        self._excluded: deque[tuple[float, float]] = deque(maxlen=8)

    # -- hot path ---------------------------------------------------------------------------

    def observe(
        self,
        t: float,
        value: float,
        prompt_tokens: float | None = None,
        inflight: float | None = None,
        failed: bool = False,
    ) -> None:
        """One sample; `failed` (error, timeout, abort) always counts as an exceedance."""
        windows = self._windows
        slot = windows.slot if t < windows.slot_end and windows.slot else windows.current(t)
        value = max(value, 0.0) if value == value else 0.0  # NaN becomes 0, never poisons a sketch
        norm = value
        model = self.load_model
        if model is not None:
            norm = model.normalize(value, prompt_tokens, inflight)
        slot.raw.add(value)
        slot.norm.add(norm)
        slot.n += 1
        history = self._history
        if (
            history is not None
            and not failed
            and (prompt_tokens is not None or inflight is not None)
        ):
            history.add(t, value, float(prompt_tokens or 0), float(inflight or 0))
        q_ref = self._q_ref
        if q_ref is None:
            return
        exceeded = failed or norm > q_ref
        if exceeded:
            slot.exceed += 1
            if failed:
                slot.failed += 1
            # The CRIT and fast-path rules are p95 >= level, i.e. >= 5 % of samples above it:
            # counting here spares evaluate() from merging sketches every second.
            if failed or norm >= self._crit_level:
                slot.over_crit += 1
                if failed or norm >= self._fast_level:
                    slot.over_fast += 1
        # Each CUSUM sits at 0 most of the time with no change: that case is inlined here
        # (the same as what _Cusum.add does for it) to keep the per-sample cost down.
        if self._armed:
            main = self._cusum
            step = self._up if exceeded else self._down
            if main.s + step <= 0.0 and main.episode is None:
                main.s, main.last_zero, main.low = 0.0, t, t
            else:
                main.add(t, step)
            tail = self._tail
            if tail is not None:
                step = self._tail_up if failed or norm > self._q_tail else self._tail_down
                if tail.s + step <= 0.0 and tail.episode is None:
                    tail.s, tail.last_zero, tail.low = 0.0, t, t
                else:
                    tail.add(t, step)
        edges, score = self._edges, self._score
        if edges is not None and score is not None:
            index = bisect_right(edges, norm)
            z = TOP_SCORE if failed else SCORES[index]
            if self._slope and not failed:
                far = False
                if index == self._top:
                    if self._far and self.config.score_far_pairs and seconds_far(norm, edges):
                        z = self._cap  # the second of a pair (score.py: seconds_far)
                    else:
                        z = extrapolated(norm, edges, self._slope, self._cap)
                    far = z >= self._cap
                elif not index and norm * FAR < edges[0]:
                    # far below every baseline point: another regime (fast failures, a lull),
                    # no evidence against a rise; an outage that alternates such points with
                    # far high ones must still add up (NAB's EC2 latency system failure)
                    z = 0.0
                self._far = far
            step = z - self._k
            if score.s + step <= 0.0 and score.episode is None and not score.trail:
                score.s, score.last_zero, score.low = 0.0, t, t
            else:
                score.add(t, step, z - self._k_strong)

    @property
    def statistic(self) -> float:
        """The main CUSUM's statistic S (log-likelihood units)."""
        return self._cusum.s

    @property
    def tail_statistic(self) -> float | None:
        return None if self._tail is None else self._tail.s

    @property
    def score_statistic(self) -> float | None:
        """The magnitude CUSUM's statistic (score units); None when it is off."""
        return None if self._score is None else self._score.s

    @property
    def score_threshold(self) -> float | None:
        """Its current threshold, from the budget and the baseline's rate (inf until armed)."""
        return None if self._score is None else self._score.h

    def _cusums(self) -> tuple[_Cusum, ...]:
        return tuple(c for c in (self._cusum, self._tail, self._score) if c is not None)

    def _suspicious(self) -> bool:
        """Some statistic above half its threshold: the baseline stays frozen."""
        return any(c.s > c.h / 2 for c in self._cusums())

    # -- periodic ---------------------------------------------------------------------------

    def evaluate(self, now: float) -> list[AlertChange]:
        cfg = self.config
        changes: list[AlertChange] = []
        self._windows.flush(now)
        index = math.floor(now / cfg.refresh_seconds + 1e-9)
        if self._refresh_index is None or index > self._refresh_index:
            self._refresh_index = index
            boundary = index * cfg.refresh_seconds
            if self.alert is not None:
                changes.extend(self._check_clear(now))
            if self.alert is None and not self._suspicious():
                self._rebaseline(boundary)
        if self.alert is None:
            crossed = min((c.crossed for c in self._cusums() if c.crossed), default=None)
            if crossed is not None:
                fired_at, onset = crossed
                severity = Severity.CRIT if self._fast_path(now) else Severity.WARN
                changes.append(self._fire(now, severity, fired_at, onset))
            elif self._fast_path_persists(now):
                since = self._fast_since
                assert since is not None
                start = self._windows.slot_start(since) - cfg.short_seconds + cfg.slot_seconds
                zero = self._cusum.last_zero
                onset = zero if self._armed and zero is not None and zero <= since else start
                changes.append(self._fire(now, Severity.CRIT, now, onset))
        elif self.alert.severity is Severity.WARN and (
            self._fast_path(now) or self._medium_rule(now)
        ):
            self.alert = replace(self._measure(now, self.alert), severity=Severity.CRIT)
            changes.append(AlertEscalated(self.alert))
        return changes

    def _rebaseline(self, boundary: float) -> None:
        cfg = self.config
        end = boundary - cfg.baseline_gap_seconds
        start = end - cfg.baseline_seconds
        if self._history is not None and boundary - self._last_fit >= cfg.refit_seconds:
            refit = fit(
                self._history.points(start, end),
                use_prompt=cfg.normalization is Normalization.PROMPT_AND_LOAD,
            )
            if refit is not None:
                self.load_model, self._last_fit = refit, boundary
        width = cfg.refresh_seconds
        buckets = [
            b
            for b in self._windows.buckets(start, end)
            if b.n and not any(b.start < hi and b.start + width > lo for lo, hi in self._excluded)
        ]
        total = merged(buckets, start, self._windows.separate_raw)
        p95, raw_p95 = quantile(total.norm, 0.95), quantile(total.raw, 0.95)
        if p95 is None or raw_p95 is None:
            self.baseline, self._q_ref, self._armed, self._edges = None, None, False, None
            return
        span = buckets[-1].start + cfg.refresh_seconds - buckets[0].start
        q_ref = max(cfg.margin * p95, p95 + cfg.floor)
        self.baseline = Baseline(p95, raw_p95, q_ref, total.n, span, boundary)
        fast = total.n >= cfg.fast_arm_samples
        self._q_ref = q_ref if fast else None
        self._crit_level = max(cfg.crit_ratio * p95, q_ref)
        self._fast_level = max(cfg.fast_ratio * p95, q_ref)
        if self._tail is not None and cfg.tail_quantile is not None:
            tail = quantile(total.norm, cfg.tail_quantile)
            self._q_tail = math.inf if tail is None else max(cfg.margin * tail, tail + cfg.floor)
        long_enough = span >= cfg.arm_span_seconds - 1e-9
        armed = fast and total.n >= cfg.arm_samples and long_enough
        if armed and not self._armed:
            for cusum in (self._cusum, self._tail):
                if cusum is not None:
                    cusum.reset(boundary)
        self._armed = armed
        if self._score is not None:
            may_arm = fast and long_enough and total.n >= cfg.score_arm_samples
            self._rescore(total, span, (start, end) if may_arm else None, boundary)

    def _rescore(
        self, total: Tally, span: float, window: tuple[float, float] | None, boundary: float
    ) -> None:
        """New score bins from the baseline, and the threshold for its rate and size.

        With normalisation, the baseline's sketch holds values normalised by the models in force
        when they arrived (refitted every 10 min, each a few % apart), and a few % is a third of
        the score's reference k: the bins come from the covariate reservoir instead, normalised
        by the current model, the same one new samples are scored with. That costs ~1 ms, so it
        is redone when the model changes and otherwise every `refit_seconds`.
        """
        cfg, score = self.config, self._score
        assert score is not None and cfg.score_k is not None
        grid = None
        if window is not None:
            history, model = self._history, self.load_model
            if history is None:
                grid = edges(total.norm, cfg.floor)
            elif (
                self._edges is not None
                and self._grid_model is model
                and boundary - self._grid_at < cfg.refit_seconds
            ):
                grid = self._edges
            else:
                points = history.points(*window)
                normalize = model.normalize if model is not None else lambda v, p, n: v
                grid = grid_of([normalize(v, p, n) for v, p, n in points], cfg.floor)
                self._grid_model, self._grid_at = model, boundary
        if grid is None:
            self._edges = None
            return
        if self._edges is None:
            score.reset(boundary)
        self._edges = grid
        self._slope = tail_slope(grid) if cfg.score_cap is not None else 0.0
        if cfg.score_threshold is not None:
            score.h = cfg.score_threshold
        else:
            rate = total.n / span
            score.h = threshold(rate, total.n, cfg.score_k, self._score_budget(rate))
        self._cap = cfg.score_k + (cfg.score_cap or 0.0) * score.h

    def _score_budget(self, rate: float) -> float:
        """False pages per week left to the score CUSUM by the exceedance CUSUMs' theory.

        DRIFT.md: an exceedance CUSUM crosses h falsely once per ~1.75 M samples at h = 10, x e
        per +1. What the budget has left, but never less than half of it, goes to the score.
        """
        cfg = self.config
        per_week = sum(
            WEEK * rate / (1.75e6 * math.exp(min(c.h - 10.0, 700.0)))
            for c in (self._cusum, self._tail)
            if c
        )
        return max(cfg.false_pages_per_week - per_week, cfg.false_pages_per_week / 2)

    def _fast_path(self, now: float) -> bool:
        cfg, base = self.config, self.baseline
        if self._q_ref is None or base is None:
            return False
        counts = self._windows.counts(now, cfg.short_seconds)
        if counts.n < cfg.fast_min_samples:
            return False
        # "1-min p95 >= fast level" is "at least 5 % of the minute above it".
        return counts.fraction >= cfg.fast_exceed_fraction or counts.over_fast >= _tail(counts.n)

    def _fast_path_persists(self, now: float) -> bool:
        """The fast-path condition, held at every evaluation for `persist` seconds more than a
        short window lasts: a burst stays in the short window for that long after it ended,
        so a burst of up to `persist` seconds (a big one, or a small one at 1 sample/s, where
        3 slow samples make a minute's p95) holds the condition for less."""
        if not self._fast_path(now):
            self._fast_since = None
            return False
        if self._fast_since is None:
            self._fast_since = now
        cfg = self.config
        smear = cfg.short_seconds - cfg.slot_seconds
        return now - self._fast_since >= cfg.persist + smear - 1e-9

    def _medium_rule(self, now: float) -> bool:
        counts = self._windows.counts(now, self.config.medium_seconds)
        return counts.n >= self.config.crit_min_samples and counts.over_crit >= _tail(counts.n)

    def _check_clear(self, now: float) -> list[AlertChange]:
        cfg, alert = self.config, self.alert
        assert alert is not None
        counts = self._windows.counts(now, cfg.medium_seconds)
        if counts.n >= cfg.clear_min_samples:
            ok = counts.fraction <= cfg.clear_exceed_fraction
            self._clear_streak = self._clear_streak + 1 if ok else 0
        if self._clear_streak < cfg.clear_evaluations:
            return []
        resolved = replace(self._measure(now, alert), resolved_at=now)
        self._excluded.append((alert.onset, now))
        self.alert, self._last_resolved = None, resolved
        self._clear_streak, self._fast_since = 0, None
        for cusum in self._cusums():
            cusum.reset(now)
        return [AlertResolved(resolved)]

    def _fire(self, now: float, severity: Severity, fired_at: float, onset: float) -> AlertChange:
        last = self._last_resolved
        self._clear_streak, self._fast_since = 0, None
        for cusum in self._cusums():
            cusum.crossed = None
        if (
            last is not None
            and last.resolved_at is not None
            and fired_at - last.resolved_at <= self.config.flap_seconds
        ):
            self.alert = replace(
                self._measure(now, last), severity=severity, resolved_at=None, flaps=last.flaps + 1
            )
            return AlertFired(self.alert, reopened=True)
        base = self.baseline
        assert base is not None  # a crossing or the fast path needs a baseline
        fresh = Alert(
            self._next_id,
            self.signal,
            self.model,
            severity,
            onset,
            fired_at,
            None,
            base.raw_p95,
            None,
            None,
            0.0,
            0.0,
            0,
        )
        self._next_id += 1
        self.alert = self._measure(now, fresh)
        return AlertFired(self.alert)

    def _measure(self, now: float, alert: Alert) -> Alert:
        cfg, base = self.config, self.baseline
        medium = self._windows.merged(now, cfg.medium_seconds)
        short = self._windows.merged(now, cfg.short_seconds)
        p95 = quantile(medium.norm, 0.95)
        ratio = p95 / base.p95 if base is not None and p95 is not None and base.p95 > 0 else 0.0
        return replace(
            alert,
            short_p95=quantile(short.raw, 0.95),
            medium_p95=quantile(medium.raw, 0.95),
            ratio=ratio,
            exceed_fraction=medium.exceed / medium.n if medium.n else 0.0,
            n=medium.n,
        )

    # -- read-only views --------------------------------------------------------------------

    @property
    def armed(self) -> bool:
        return self._armed

    @property
    def q_ref(self) -> float | None:
        return self._q_ref

    def p95s(self, now: float) -> WindowP95:
        cfg = self.config
        short = self._windows.merged(now, cfg.short_seconds)
        medium = self._windows.merged(now, cfg.medium_seconds)
        base = self.baseline
        return WindowP95(
            quantile(short.raw, 0.95),
            quantile(medium.raw, 0.95),
            None if base is None else base.raw_p95,
        )

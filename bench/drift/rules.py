"""The contenders, all fed the same samples: our detector and two simple rules.

Each contender gets `feed(t, ttft, prompt, inflight)` and keeps `pages`: for each setting it
runs, the times a new page went out (flaps within 10 min of the last firing merged, as ours
does). Ours runs one detector per setting; a window rule computes its 1-min p95 once and checks
every setting's limit against it, so sweeping a rule's knob costs almost nothing.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from sidecar.drift.config import DetectorConfig, Normalization
from sidecar.drift.detector import Detector
from sidecar.drift.events import AlertFired

FLAP = 600.0
DEFAULT_H = DetectorConfig().threshold
# Ours as round 3 shipped it: both exceedance CUSUMs, no magnitude test.
ROUND3 = f"ours h={DEFAULT_H:g}, no magnitude test (round 3)"
# Ours as round 2 shipped it: persistence clock from S >= 5, no tail CUSUM, no magnitude test.
PREVIOUS = {"onset_level": None, "tail_quantile": None, "score_k": None}


class Ours:
    def __init__(
        self, name: str, *, threshold: float = 10.0, normalize: bool = True, **overrides: Any
    ) -> None:
        config = DetectorConfig(
            floor=0.020,
            threshold=threshold,
            normalization=Normalization.PROMPT_AND_LOAD if normalize else Normalization.NONE,
            **overrides,
        )
        self.detector = Detector(config, signal="ttft", model="bench")
        self._pages: list[float] = []
        self.pages = {name: self._pages}
        self._next = 0.0

    def feed(self, t: float, v: float, p: int, n: int) -> None:
        self.detector.observe(t, v, p, n)
        if t >= self._next:
            self._next = t + 1.0
            for change in self.detector.evaluate(t):
                if isinstance(change, AlertFired) and not change.reopened:
                    self._pages.append(change.alert.fired_at)


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


class WindowRule:
    """Every 10 s: page when the last minute's exact p95 (n >= 50) exceeds a limit.

    `ratio=True`: each limit is a ratio to the p95 of [t - 65 min, t - 5 min] (recomputed each
    minute, needs 2,000 samples); otherwise limits are fixed, in seconds.
    """

    def __init__(self, limits: dict[str, float], *, ratio: bool) -> None:
        self.limits, self.ratio = limits, ratio
        self.pages: dict[str, list[float]] = {name: [] for name in limits}
        self.max_p95 = 0.0
        self._slots: deque[list[float]] = deque(maxlen=6)
        self._minutes: deque[list[float]] = deque(maxlen=66)
        self._slot = -1
        self._minute = -1
        self._baseline = math.inf
        self._last_true = dict.fromkeys(limits, -math.inf)

    def feed(self, t: float, v: float, p: int, n: int) -> None:
        slot = int(t // 10)
        if slot != self._slot:
            if self._slot >= 0:
                self._check(t)
            self._slot = slot
            self._slots.append([])
            minute = int(t // 60)
            if minute != self._minute:
                self._minute = minute
                self._minutes.append([])
                if self.ratio and len(self._minutes) >= 36:
                    window = [x for m in list(self._minutes)[:-6] for x in m]
                    self._baseline = _p95(window) if len(window) >= 2000 else math.inf
        self._slots[-1].append(v)
        self._minutes[-1].append(v)

    def _check(self, t: float) -> None:
        recent = [x for s in self._slots for x in s]
        if len(recent) < 50:
            return
        p95 = _p95(recent)
        self.max_p95 = max(self.max_p95, p95)
        scale = self._baseline if self.ratio else 1.0
        for name, limit in self.limits.items():
            if p95 > limit * scale:
                if t - self._last_true[name] > FLAP:
                    self.pages[name].append(t)
                self._last_true[name] = t


# Ours has a second knob besides h: how long a change must last before it pages. Shorter is
# faster and pages bursts; the curve includes it so ours also has points where the simple rules
# trade many false alarms for speed.
PERSIST_SWEEP = (0.0, 25.0)


def persist_name(h: float, seconds: float) -> str:
    return f"ours h={h:g}, persist {seconds:g} s"


def ours_name(h: float, chosen: float) -> str:
    return f"ours h={h:g}" + (" (tuned = default)" if h == chosen == DEFAULT_H else "")


def ratio_name(r: float) -> str:
    return f"p95 ratio > {r:g}"


def fixed_name(x: float) -> str:
    return f"fixed p95 > {x:.2f}s"


def contenders(
    h_sweep: tuple[float, ...],
    chosen_h: float,
    ratios: tuple[float, ...],
    fixed: tuple[float, ...],
) -> list[Any]:
    """Every setting of every family, plus ours as the previous round and the first one had it."""
    feeders: list[Any] = [Ours(ours_name(h, chosen_h), threshold=h) for h in h_sweep]
    feeders += [
        Ours(persist_name(chosen_h, s), threshold=chosen_h, persist_seconds=s)
        for s in PERSIST_SWEEP
    ]
    feeders.append(Ours(ROUND3, threshold=DEFAULT_H, score_k=None))
    feeders.append(Ours(f"ours h={DEFAULT_H:g}, round 2", threshold=DEFAULT_H, **PREVIOUS))
    feeders.append(
        Ours("ours h=10, no persistence (first round)", threshold=10.0, persist_seconds=0.0,
             **PREVIOUS)
    )  # fmt: skip
    feeders.append(WindowRule({ratio_name(r): r for r in ratios}, ratio=True))
    feeders.append(WindowRule({fixed_name(x): x for x in fixed}, ratio=False))
    return feeders


__all__ = ["Ours", "WindowRule", "contenders"]

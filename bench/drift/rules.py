"""The contenders, all fed the same samples: our detector (normalised and raw) and two baselines.

Ours runs the shipped defaults (persistence included) unless told otherwise. Each contender gets
`feed(t, ttft, prompt, inflight)` and reports `pages`: the times a new page went out (flaps within
10 min of the last firing merged, as ours does).
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


class Ours:
    def __init__(
        self, *, threshold: float = 10.0, normalize: bool = True, **overrides: Any
    ) -> None:
        config = DetectorConfig(
            floor=0.020,
            threshold=threshold,
            normalization=Normalization.PROMPT_AND_LOAD if normalize else Normalization.NONE,
            **overrides,
        )
        self.detector = Detector(config, signal="ttft", model="bench")
        self.pages: list[float] = []
        self._next = 0.0

    def feed(self, t: float, v: float, p: int, n: int) -> None:
        self.detector.observe(t, v, p, n)
        if t >= self._next:
            self._next = t + 1.0
            for change in self.detector.evaluate(t):
                if isinstance(change, AlertFired) and not change.reopened:
                    self.pages.append(change.alert.fired_at)


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


class WindowRule:
    """Every 10 s: page when the last minute's exact p95 (n >= 50) exceeds `limit()`.

    `ratio` > 0: limit = ratio x p95 of [t - 65 min, t - 5 min] (recomputed each minute);
    otherwise a fixed limit in seconds.
    """

    def __init__(self, *, ratio: float = 0.0, fixed: float = math.inf) -> None:
        self.ratio, self.fixed = ratio, fixed
        self.pages: list[float] = []
        self.max_p95 = 0.0
        self._slots: deque[list[float]] = deque(maxlen=6)
        self._minutes: deque[list[float]] = deque(maxlen=66)
        self._slot = -1
        self._minute = -1
        self._baseline = math.inf
        self._last_true = -math.inf

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
        limit = self.ratio * self._baseline if self.ratio else self.fixed
        if p95 > limit:
            if t - self._last_true > FLAP:
                self.pages.append(t)
            self._last_true = t


def contenders(threshold: float, ratio: float, fixed: float) -> dict[str, object]:
    label = "tuned = default" if threshold == DEFAULT_H else "tuned"
    ours: dict[str, object] = {f"ours h={threshold:g} ({label})": Ours(threshold=threshold)}
    if threshold != DEFAULT_H:
        ours[f"ours h={DEFAULT_H:g} (default)"] = Ours(threshold=DEFAULT_H)
    return {
        **ours,
        "ours h=10, no persistence (before)": Ours(threshold=10.0, persist_seconds=0.0),
        "ours h=10 (raw TTFT)": Ours(threshold=10.0, normalize=False),
        f"p95 ratio > {ratio:g}": WindowRule(ratio=ratio),
        f"fixed p95 > {fixed:.2f}s": WindowRule(fixed=fixed),
    }


__all__ = ["Ours", "WindowRule", "contenders"]

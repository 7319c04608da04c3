"""Seeded synthetic latency streams and a fast test config for the detector tests."""

from __future__ import annotations

import random
from collections.abc import Callable

from sidecar.drift.config import DetectorConfig
from sidecar.drift.detector import Detector
from sidecar.drift.events import AlertChange

# The production design scaled down 10x in time: 1 s slots, a 6 s short and 30 s medium window,
# a 120 s baseline ending 30 s ago, refreshed every 6 s, the persistence clock's lookback 0.5 s.
# Arming rules are kept in samples.
FAST = DetectorConfig(
    slot_seconds=1.0,
    short_seconds=6.0,
    medium_seconds=30.0,
    baseline_seconds=120.0,
    baseline_gap_seconds=30.0,
    refresh_seconds=6.0,
    refit_seconds=60.0,
    arm_samples=1000,
    arm_span_seconds=60.0,
    fast_arm_samples=400,
    fast_min_samples=50,
    clear_min_samples=200,
    flap_seconds=60.0,
    floor=0.0,
    onset_lookback=0.5,
)
RATE = 40.0  # samples per second

Draw = Callable[[random.Random], float]

DISTRIBUTIONS: dict[str, Draw] = {
    "lognormal": lambda r: r.lognormvariate(-1.0, 0.6),
    "gamma": lambda r: r.gammavariate(2.0, 0.15),
    "pareto": lambda r: 0.1 * r.paretovariate(2.5),
    "bimodal": lambda r: r.gauss(0.2, 0.02) if r.random() < 0.7 else r.gauss(0.6, 0.05),
}


def run(
    draw: Draw,
    seconds: float,
    *,
    factor: Callable[[float], float] = lambda t: 1.0,
    config: DetectorConfig = FAST,
    seed: int = 1,
    detector: Detector | None = None,
    start: float = 0.0,
) -> tuple[Detector, list[tuple[float, AlertChange]]]:
    """Feed `seconds` of Poisson arrivals; evaluate once per (simulated) second."""
    rng = random.Random(seed)
    det = detector or Detector(config, signal="ttft", model="m")
    changes: list[tuple[float, AlertChange]] = []
    t, next_eval = start, start
    while t < start + seconds:
        t += rng.expovariate(RATE)
        det.observe(t, factor(t) * max(draw(rng), 1e-4))
        if t >= next_eval:
            changes.extend((t, c) for c in det.evaluate(t))
            next_eval += 1.0
    return det, changes

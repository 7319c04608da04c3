"""Incident shapes for one key at a given traffic: Poisson arrivals, lognormal latencies.

The issue's outside measurement used lognormal latencies at one request per second; sigma 0.5 in
log (a +50 % step is a 0.8 sigma shift, +20 % a 0.36 sigma one) is harder than the real llmperf
TTFT shape the replay bench uses (sigma ~0.22). Every shape multiplies or reshapes the latency
from `onset` on; non-events must not page.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

MEDIAN = 0.5  # seconds
SIGMA = 0.5  # of log latency
BURST = 45.0  # seconds: a burst this long is not a drift
BURST_EVERY = 150.0  # repeated bursts: one every 2.5 min ...
BURSTS_FOR = 600.0  # ... for 10 min

Latency = Callable[[float, random.Random], float]  # (seconds since onset, rng) -> seconds


@dataclass(frozen=True)
class Shape:
    name: str
    event: bool  # True: should page; False: any page is false
    rate: float  # samples per second
    latency: Latency


def _normal(dt: float, rng: random.Random) -> float:
    return MEDIAN * math.exp(rng.gauss(0.0, SIGMA))


def _scaled(factor: Callable[[float], float]) -> Latency:
    return lambda dt, rng: _normal(dt, rng) * (factor(dt) if dt >= 0 else 1.0)


def _tail_only(dt: float, rng: random.Random) -> float:
    # 6 % of requests x3 from the onset: p95 about x2, median unchanged
    slow = dt >= 0 and rng.random() < 0.06
    return _normal(dt, rng) * (3.0 if slow else 1.0)


def _variance(dt: float, rng: random.Random) -> float:
    # sigma 0.5 -> 0.7 at the same median: p95 +39 %, median unchanged
    return MEDIAN * math.exp(rng.gauss(0.0, 0.7 if dt >= 0 else SIGMA))


def _repeated(dt: float) -> float:
    return 2.0 if dt < BURSTS_FOR and dt % BURST_EVERY < BURST else 1.0


SHAPES = [
    Shape("step x1.5", True, 1.0, _scaled(lambda dt: 1.5)),
    Shape("step x1.2", True, 1.0, _scaled(lambda dt: 1.2)),
    Shape("ramp to x1.5 in 30 min", True, 1.0, _scaled(lambda dt: 1 + 0.5 * min(1.0, dt / 1800))),
    Shape("tail only (6% x3)", True, 1.0, _tail_only),
    Shape("variance x1.4 (sigma 0.5->0.7)", True, 1.0, _variance),
    Shape("burst x2 for 45 s", False, 1.0, _scaled(lambda dt: 2.0 if dt < BURST else 1.0)),
    Shape("45 s x2 bursts every 2.5 min for 10 min", True, 1.0, _scaled(_repeated)),
    Shape("step x1.5 at 0.5/s", True, 0.5, _scaled(lambda dt: 1.5)),
    Shape("step x1.5 at 0.2/s", True, 0.2, _scaled(lambda dt: 1.5)),
]
QUIET = Shape("quiet", False, 1.0, lambda dt, rng: _normal(dt, rng))


def samples(shape: Shape, seed: int, seconds: float, onset: float) -> Iterator[tuple[float, float]]:
    """(t, latency) in arrival order for `seconds`."""
    # every shape and seed its own stream: the quiet hours before each onset are independent
    rng = random.Random(f"{shape.name}/{shape.rate:g}/{seed}")
    t = 0.0
    while True:
        t += rng.expovariate(shape.rate)
        if t >= seconds:
            return
        yield t, shape.latency(t - onset, rng)

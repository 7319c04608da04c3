"""Replay of real arrivals (Azure 2023) with a TTFT model shaped by real llmperf latencies.

TTFT_i = (a + b * prompt_tokens_i + c * inflight_i) * shape_i * fault(t_i)
  * arrivals and prompt/generated lengths: the Azure conv trace, looped (each loop rotated by a
    seeded random offset, so seeds differ in where bursts fall);
  * shape_i: a draw from the pooled llmperf TTFT distribution divided by its provider's median
    (real heavy tails, ~1.0 median);
  * inflight_i: streams still generating when request i arrives (duration = TTFT + generated
    tokens x ITL), so load surges raise TTFT as they do on a real server.
"""

from __future__ import annotations

import csv
import heapq
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data"
A, B, C = 0.12, 0.00015, 0.012  # s, s per prompt token, s per in-flight stream
ITL = 0.03


def load_trace(name: str = "conv") -> list[tuple[float, int, int]]:
    rows = []
    with (DATA / f"azure2023_{name}.csv").open() as handle:
        for rec in csv.DictReader(handle):
            t = datetime.fromisoformat(rec["TIMESTAMP"][:26]).timestamp()
            rows.append((t, int(rec["ContextTokens"]), int(rec["GeneratedTokens"])))
    t0 = rows[0][0]
    return [(t - t0, p, g) for t, p, g in rows]


def load_shape() -> list[float]:
    by_source: dict[str, list[float]] = {}
    with (DATA / "llmperf2023_latency.csv").open() as handle:
        for rec in csv.DictReader(handle):
            by_source.setdefault(rec["source"], []).append(float(rec["ttft_s"]))
    shape: list[float] = []
    for values in by_source.values():
        median = sorted(values)[len(values) // 2]
        shape.extend(v / median for v in values)
    return shape


@dataclass(frozen=True)
class Scenario:
    name: str
    event: bool  # True: a drift that should page; False: must not page
    factor: Callable[[float, random.Random], float]  # (seconds since onset, rng) -> multiplier
    surge: float = 0.0  # seconds of doubled arrival rate from the onset


def _step(x: float) -> Callable[[float, random.Random], float]:
    return lambda dt, rng: x if dt >= 0 else 1.0


SCENARIOS = [
    Scenario("step x1.5", True, _step(1.5)),
    Scenario("step x1.2", True, _step(1.2)),
    Scenario("step x1.1", True, _step(1.1)),
    Scenario("ramp to x1.5 in 20 min", True, lambda dt, r: 1 + 0.5 * min(1.0, max(dt, 0) / 1200)),
    Scenario("tail only (6% x3)", True, lambda dt, r: 3.0 if dt >= 0 and r.random() < 0.06 else 1),
    Scenario("burst x2 for 45 s", False, lambda dt, r: 2.0 if 0 <= dt < 45 else 1.0),
    Scenario("load surge (2x rate, 5 min)", False, lambda dt, r: 1.0, surge=300.0),
]
QUIET = Scenario("quiet", False, lambda dt, r: 1.0)


def stream(
    trace: list[tuple[float, int, int]],
    shape: list[float],
    seed: int,
    seconds: float,
    scenario: Scenario,
    onset: float,
) -> Iterator[tuple[float, float, int, int]]:
    """(t, ttft, prompt_tokens, inflight) in arrival order for `seconds`."""
    rng = random.Random(seed)
    span = trace[-1][0] + 1.0
    ends: list[float] = []
    base = 0.0
    while base < seconds:
        k = rng.randrange(len(trace))
        rotated = trace[k:] + trace[:k]
        first = rotated[0][0]
        for t_raw, prompt, gen in rotated:
            t = base + (t_raw - first) % span
            if t >= seconds:
                break
            copies = 2 if scenario.surge and 0 <= t - onset < scenario.surge else 1
            for _ in range(copies):
                tt = t + (rng.random() * 0.5 if copies == 2 else 0.0)
                while ends and ends[0] <= tt:
                    heapq.heappop(ends)
                inflight = len(ends)
                ttft = (A + B * prompt + C * inflight) * rng.choice(shape)
                ttft *= scenario.factor(tt - onset, rng)
                heapq.heappush(ends, tt + ttft + gen * ITL * (1 + 0.01 * inflight))
                yield tt, ttft, prompt, inflight
        base += span

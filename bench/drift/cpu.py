"""`python -m bench.drift.cpu`: the live detector's CPU per sample, armed, on quiet traffic.

One key at 5.5 samples/s (the replay's rate), lognormal latencies, evaluate() once a second, as
`sidecar serve` runs it. Warm-up of 70 min arms every CUSUM; the next 2 h are timed (observe and
evaluate together, per sample). Run it against another checkout with PYTHONPATH to compare.
"""

from __future__ import annotations

import math
import random
import statistics
import sys
import time

from sidecar.drift.config import DetectorConfig
from sidecar.drift.detector import Detector

RATE = 5.5
WARMUP = 70 * 60.0
TIMED = 2 * 3600.0


def per_sample(seed: int) -> float:
    rng = random.Random(seed)
    det = Detector(DetectorConfig(floor=0.020), signal="ttft", model="m")
    t, next_eval = 0.0, 0.0
    values = []
    while t < WARMUP + TIMED:
        t += rng.expovariate(RATE)
        values.append((t, 0.5 * math.exp(rng.gauss(0.0, 0.5))))
    split = next(i for i, (t, _) in enumerate(values) if t >= WARMUP)
    for t, v in values[:split]:
        det.observe(t, v)
        if t >= next_eval:
            next_eval = t + 1.0
            det.evaluate(t)
    start = time.process_time()
    for t, v in values[split:]:
        det.observe(t, v)
        if t >= next_eval:
            next_eval = t + 1.0
            det.evaluate(t)
    return (time.process_time() - start) / (len(values) - split) * 1e6


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    runs = [per_sample(seed) for seed in range(rounds)]
    print(f"detector: {statistics.median(runs):.2f} us/sample median of {rounds} "
          f"({', '.join(f'{r:.2f}' for r in runs)})")  # fmt: skip


if __name__ == "__main__":
    main()

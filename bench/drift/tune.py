"""`python -m bench.drift.tune`: the 1 sample/s trade-off on many runs (round 6's tune runs).

One key at 1 sample/s, lognormal latencies (median 0.5 s, sigma 0.5), onset 75 min in (the
detector arms at ~35 min), evaluate() once a second as `sidecar serve` runs it. Per run and shape:
+50 % step (delay, paged within 300 s), +20 % step (delay, paged within 30 min), one 45 s x2 and
one 45 s x1.5 burst (paged within 15 min of their start: false). Config overrides as NAME=VALUE
(DetectorConfig fields, floats). Seeds are a separate stream from the shapes benchmark's; report
seeds of `python -m bench.drift` are never used here.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import fields, replace

from sidecar.drift.config import DetectorConfig
from sidecar.drift.detector import Detector

ONSET = 75 * 60.0
MEDIAN, SIGMA = 0.5, 0.5
Factor = Callable[[float], float]  # seconds since onset -> latency multiplier
SHAPES: dict[str, tuple[Factor, float]] = {  # name: (factor, seconds watched after the onset)
    "x1.5": (lambda dt: 1.5, 300.0),
    "x1.2": (lambda dt: 1.2, 1800.0),
    "burst x2": (lambda dt: 2.0 if dt < 45.0 else 1.0, 900.0),
    "burst x1.5": (lambda dt: 1.5 if dt < 45.0 else 1.0, 900.0),
}


def first_page(config: DetectorConfig, shape: str, seed: int) -> float | None:
    """Seconds from the onset to the first page (None: none); a page before the onset is -1."""
    factor, after = SHAPES[shape]
    rng = random.Random(f"tune6/{shape}/{seed}")
    det = Detector(config, signal="ttft", model="m")
    t, next_eval = 0.0, 0.0
    while t < ONSET + after:
        t += rng.expovariate(1.0)
        dt = t - ONSET
        det.observe(t, MEDIAN * math.exp(rng.gauss(0.0, SIGMA)) * (factor(dt) if dt >= 0 else 1))
        if t >= next_eval:
            next_eval = t + 1.0
            if det.evaluate(t):
                return max(dt, -1.0)
    return None


def _task(args: tuple[DetectorConfig, str, int]) -> float | None:
    return first_page(*args)


def _config(overrides: list[str]) -> DetectorConfig:
    defaults = DetectorConfig()
    names = {f.name for f in fields(DetectorConfig)}
    values: dict[str, object] = {}
    for item in overrides:
        name, _, text = item.partition("=")
        if name not in names:
            raise SystemExit(f"no DetectorConfig field {name!r} (use NAME=VALUE)")
        whole = isinstance(getattr(defaults, name), int)  # counts stay ints
        values[name] = None if text == "None" else int(text) if whole else float(text)
    return replace(DetectorConfig(floor=0.020), **values)  # type: ignore[arg-type]


def summary(shape: str, pages: list[float | None]) -> str:
    early = sum(1 for p in pages if p is not None and p < 0)
    if shape.startswith("burst"):
        n = sum(1 for p in pages if p is not None and p >= 0)
        return f"{shape}: paged {n}/{len(pages)} ({100 * n / len(pages):.1f} %), early {early}"
    delays = sorted(p for p in pages if p is not None and p >= 0)
    missed = len(pages) - len(delays) - early
    p90 = delays[min(len(delays) - 1, math.ceil(0.9 * len(delays)) - 1)] if delays else math.nan
    med = statistics.median(delays) if delays else math.nan
    return f"{shape}: median {med:.1f} s, p90 {p90:.1f} s, missed {missed}, early {early}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.drift.tune", description=__doc__)
    parser.add_argument("overrides", nargs="*", help="DetectorConfig NAME=VALUE")
    parser.add_argument("--runs", type=int, default=192)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args(argv)
    config = _config(args.overrides)
    seeds = range(args.first_seed, args.first_seed + args.runs)
    started = time.monotonic()
    for shape in args.shapes.split(","):
        tasks = [(config, shape, s) for s in seeds]
        with ProcessPoolExecutor(args.jobs) as pool:
            pages = list(pool.map(_task, tasks, chunksize=8))
        print(summary(shape, pages), flush=True)
    print(f"({len(seeds)} runs per shape, {time.monotonic() - started:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()

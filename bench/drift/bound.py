"""`python -m bench.drift.bound`: how fast can a +50 % step page while 45 s bursts stay quiet?

A lower bound for the 1 sample/s trade-off (docs/benchmarks-drift.md, round 8): the test is told
when the change began, so only the samples after onset + 45 s can tell a step from a 45 s burst
(before that both are the same shift). Scores are the detector's own (64 equiprobable bins of
the baseline lognormal, raised by the floor; sidecar/drift/score.py), arrivals Poisson at 1/s,
a 45 s persistence like the magnitude CUSUM's. After onset + 45 s the test adds the
log-likelihood ratio mu (z - mu / 2) of each sample, "still shifted by mu" against "back to
normal", and pages when the sum reaches c nats (and, with --with-h, once the magnitude CUSUM
from the onset has crossed its threshold too). By Wald, a burst that ended passes with
probability below e^-c. mu is the true shift (`oracle`) or the mean score of the 45 s after the
onset (`known onset`: what the best test could know).

`--unknown` drops the oracle: the detector's clock-free test (sidecar/drift/outlast.py) on the
same scores, the magnitude CUSUM (k 0.25) running from 150 s before the change, paging once
S >= h and the test reaches c nats: what not knowing the onset costs.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
from bisect import bisect_right
from statistics import NormalDist

from sidecar.drift.onset import Mark
from sidecar.drift.outlast import outlasts
from sidecar.drift.score import GRID, SCORES, threshold

MEDIAN, SIGMA, FLOOR, PERSIST = 0.5, 0.5, 0.020, 45.0
SHAPES = {  # name: (factor during the change, seconds it lasts (inf: a step), seconds watched)
    "x1.5": (1.5, math.inf, 300.0),
    "x1.2": (1.2, math.inf, 1800.0),
    "burst x1.5": (1.5, 45.0, 900.0),
    "burst x2": (2.0, 45.0, 900.0),
}
LEVELS = (1.0, 1.5, 1.75, 2.0, 2.5, 2.75, 3.0, 3.5, 4.0)


def score_edges() -> list[float]:
    normal = NormalDist(math.log(MEDIAN), SIGMA)
    return [math.exp(normal.inv_cdf(i / GRID)) + FLOOR for i in range(1, GRID)]


def run(
    shape: str, seed: int, edges: list[float], h: float, oracle: bool
) -> dict[float, float | None]:
    """Seconds from the onset to the page at each level c (None: no page)."""
    factor, length, watched = SHAPES[shape]
    rng = random.Random(f"bound8/{shape}/{seed}")
    mean_shift = _mean_score(factor, edges) if oracle else None
    t, s, early, n_early, late = 0.0, 0.0, 0.0, 0, 0.0
    pages: dict[float, float | None] = dict.fromkeys(LEVELS)
    mu = 0.0
    while t < watched:
        t += rng.expovariate(1.0)
        f = factor if t < length else 1.0
        z = SCORES[bisect_right(edges, MEDIAN * math.exp(rng.gauss(0.0, SIGMA)) * f)]
        s = max(0.0, s + z - 0.25) if h > 0 else math.inf
        if t < PERSIST:
            early, n_early = early + z, n_early + 1
            continue
        if not mu:
            mu = mean_shift if mean_shift is not None else max(early / max(n_early, 1), 0.25)
        late += mu * (z - mu / 2)
        for c in LEVELS:
            if pages[c] is None and late >= c and s >= h:
                pages[c] = t
        if late < -15.0 or all(p is not None for p in pages.values()):
            break
    return pages


def unknown(shape: str, seed: int, edges: list[float], h: float) -> dict[float, float | None]:
    """Seconds from the onset to the page at each level c with outlast.py's test (no oracle)."""
    factor, length, watched = SHAPES[shape]
    rng = random.Random(f"bound8u/{shape}/{seed}")
    t, s, total, n = -150.0, 0.0, 0.0, 0
    trail: list[Mark] = [(t, 0.0, 0)]
    pages: dict[float, float | None] = dict.fromkeys(LEVELS)
    while t < watched and any(p is None for p in pages.values()):
        t += rng.expovariate(1.0)
        f = factor if 0.0 <= t < length else 1.0
        z = SCORES[bisect_right(edges, MEDIAN * math.exp(rng.gauss(0.0, SIGMA)) * f)]
        s += z - 0.25
        if s <= 0.0:
            s, total, n, trail = 0.0, 0.0, 0, [(t, 0.0, 0)]
            if t > length + 300.0:
                break  # a burst long over, S back at 0
            continue
        total, n = total + z - 0.4, n + 1
        trail.append((t, total, n))
        if s < h:
            continue
        while trail[0][0] < t - 600.0 - PERSIST:
            trail.pop(0)
        g = outlasts(trail, 0.4, PERSIST, 3, 0.5)
        for c in LEVELS:
            if pages[c] is None and g >= c:
                pages[c] = t
    return pages


def _mean_score(factor: float, edges: list[float]) -> float:
    normal = NormalDist(math.log(MEDIAN * factor), SIGMA)
    cdf = [0.0, *(normal.cdf(math.log(e)) for e in edges), 1.0]
    return sum(SCORES[i] * (cdf[i + 1] - cdf[i]) for i in range(GRID))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.drift.bound", description=__doc__)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--with-h", action="store_true", help="also wait for S >= h")
    parser.add_argument("--oracle", action="store_true", help="mu is the true shift")
    parser.add_argument("--unknown", action="store_true", help="no oracle: outlast.py's test")
    args = parser.parse_args(argv)
    edges = score_edges()
    h = threshold(1.0, 3600, 0.25, 1.0) if args.with_h or args.unknown else 0.0
    mode = "unknown onset" if args.unknown else "oracle mu" if args.oracle else "mu from 45 s"
    print(f"h = {h:.1f}" if h else "no threshold", mode)
    table: dict[str, dict[float, list[float | None]]] = {}
    for shape in SHAPES:
        per = [
            unknown(shape, i, edges, h) if args.unknown else run(shape, i, edges, h, args.oracle)
            for i in range(args.runs)
        ]
        table[shape] = {c: [p[c] for p in per] for c in LEVELS}
    print("| c nats | +50 % median s | +20 % median s | 45 s x1.5 burst paged | 45 s x2 paged |")
    print("|---|---|---|---|---|")
    for c in LEVELS:
        cells = [f"{c:g}"]
        for shape in ("x1.5", "x1.2"):
            delays = [p for p in table[shape][c] if p is not None]
            cells.append(f"{statistics.median(delays):.1f}" if delays else "-")
        for shape in ("burst x1.5", "burst x2"):
            paged = sum(p is not None for p in table[shape][c])
            cells.append(f"{100 * paged / args.runs:.1f} %")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

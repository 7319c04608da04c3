"""`python -m bench.drift.tune_aggregated`: ours and both rules on aggregated points, many runs.

The shapes benchmark's runs (bench/drift/shapes_bench.py) at 1-min and 5-min sampling only, on
tune seeds (default 6000-6047: 48 runs per shape, 24 quiet weeks at 1/s), so the aggregated
detector (sidecar/drift/backtest.py) can be compared with the rules on more than 10 runs: quiet
false pages are few events. Raw sampling is left out (python -m bench.drift.tune covers it).
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench.drift.shapes import SHAPES, Shape, samples
from bench.drift.shapes_bench import (
    AFTER,
    CONTENDERS,
    ONSET,
    TUNE_SEEDS,
    WARMUP,
    WEEK,
    _ours,
    _points,
    tune_task,
)
from bench.drift.simple import FixedRule, RatioRule

SAMPLINGS = ("1 min", "5 min")


def limits() -> dict[float, dict[str, float]]:
    """The fixed rule's thresholds, tuned as the shapes benchmark tunes them."""
    out: dict[float, dict[str, float]] = {}
    for rate in sorted({s.rate for s in SHAPES}):
        for seed in TUNE_SEEDS:
            for sampling, value in tune_task(rate, seed).items():
                out.setdefault(rate, {})[sampling] = max(
                    out.get(rate, {}).get(sampling, 0.0), 1.01 * value
                )
    return out


def pages(shape: Shape, seed: int, limit: dict[str, float]) -> dict[tuple[str, str], list[float]]:
    raw = list(samples(shape, seed, ONSET + AFTER, ONSET))
    out = {}
    for sampling in SAMPLINGS:
        points = _points(raw, sampling)
        rules = (RatioRule(CONTENDERS[1]), FixedRule(CONTENDERS[2], limit[sampling]))
        for t, v in points:
            for rule in rules:
                rule.feed(t, [v])
        out[sampling, "ours"] = _ours(points)
        out.update({(sampling, rule.name): rule.pages for rule in rules})
    return out


def row(shape: Shape, runs: list[dict[tuple[str, str], list[float]]], sampling: str) -> str:
    cells, marks = [], {}
    for c in CONTENDERS:
        hits, false, delays = 0, 0, []
        for run in runs:
            got = run[sampling, c]
            false += sum(1 for p in got if WARMUP <= p < ONSET)
            after = [p - ONSET for p in got if ONSET <= p < ONSET + AFTER]
            if not shape.event:
                false += len(after)
            elif after:
                hits, delays = hits + 1, [*delays, after[0]]
        median = f"{statistics.median(delays):.0f} s" if delays else "-"
        cells.append(f"{hits}/{len(runs)}, {median}, {false}" if shape.event else f"{false}")
        marks[c] = (hits, false)
    ours, rules = marks["ours"], [marks[c] for c in CONTENDERS[1:]]
    best_hits, best_false = max(r[0] for r in rules), min(r[1] for r in rules)
    verdict = [f"false {'+' if ours[1] < best_false else '=' if ours[1] == best_false else '-'}"]
    if shape.event:
        sign = "+" if ours[0] > best_hits else "=" if ours[0] == best_hits else "-"
        verdict.insert(0, f"misses {sign}")
    return f"| {shape.name} | {sampling} | " + " | ".join(cells) + f" | {', '.join(verdict)} |"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.drift.tune_aggregated", description=__doc__
    )
    parser.add_argument("--runs", type=int, default=48)
    parser.add_argument("--first-seed", type=int, default=6000)
    args = parser.parse_args(argv)
    started = time.monotonic()
    limit = limits()
    seeds = range(args.first_seed, args.first_seed + args.runs)
    by_shape = {s.name: [pages(s, seed, limit[s.rate]) for seed in seeds] for s in SHAPES}
    print("| shape | sampling | " + " | ".join(CONTENDERS) + " | ours vs better rule |")
    print("|---|---|" + "---|" * (len(CONTENDERS) + 1))
    for shape in SHAPES:
        for sampling in SAMPLINGS:
            print(row(shape, by_shape[shape.name], sampling))
    print("\n| traffic | quiet weeks | sampling | " + " | ".join(CONTENDERS) + " |")
    print("|---|---|---|" + "---|" * len(CONTENDERS))
    for rate in sorted({s.rate for s in SHAPES}, reverse=True):
        runs = [r for s in SHAPES if s.rate == rate for r in by_shape[s.name]]
        weeks = len(runs) * (ONSET - WARMUP) / WEEK
        for sampling in SAMPLINGS:
            counts = [
                sum(1 for r in runs for p in r[sampling, c] if WARMUP <= p < ONSET)
                for c in CONTENDERS
            ]
            cells = " | ".join(f"{n} ({n / weeks:.2f}/week)" for n in counts)
            print(f"| {rate:g}/s | {weeks:.1f} | {sampling} | {cells} |")
    print(f"\n({len(seeds)} runs per shape, seeds {seeds[0]}-{seeds[-1]}, "
          f"{time.monotonic() - started:.0f} s)")  # fmt: skip


if __name__ == "__main__":
    main()

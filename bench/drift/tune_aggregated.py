"""`python -m bench.drift.tune_aggregated`: ours and both rules on aggregated points, many runs.

The shapes benchmark's runs (bench/drift/shapes_bench.py) at 1-min and 5-min sampling only, on
tune seeds (default 6000-6047: 48 runs per shape, 24 quiet weeks at 1/s), so the aggregated
detector (sidecar/drift/backtest.py) can be compared with the rules on more than 10 runs: quiet
false pages are few events. Raw sampling is left out by default (`--samplings raw,1 min,5 min`
adds it: ~4x slower; python -m bench.drift.tune covers ours alone on many more raw runs). Both
verdicts are printed: the old one (misses and false pages) and the strict one that also counts
median delay (bench/drift/verdict.py).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from bench.drift.shapes import SHAPES, Shape
from bench.drift.shapes_bench import (
    CONTENDERS,
    ONSET,
    TUNE_SEEDS,
    WARMUP,
    WEEK,
    _score,
    run_task,
    tune_task,
    verdict_tables,
    verdicts,
)
from bench.drift.shapes_bench import SAMPLINGS as ALL_SAMPLINGS

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


def row(shape: Shape, runs: list[dict[str, Any]], sampling: str) -> tuple[str, tuple[str, str]]:
    """The table row of one cell, and its (old, strict) verdicts."""
    scores = {c: _score(shape, runs, (sampling, c)) for c in CONTENDERS}
    cells = []
    for c in CONTENDERS:
        sc = scores[c]
        median = f"{statistics.median(sc['delays']):.0f} s" if sc["delays"] else "-"
        hits = f"{sc['hits']}/{len(runs)}, {median}, " if shape.event else ""
        cells.append(f"{hits}{sc['false']}")
    old, strict = verdicts(shape, scores, len(runs), ALL_SAMPLINGS[sampling])
    return f"| {shape.name} | {sampling} | " + " | ".join(cells) + f" | {old} | {strict} |", (
        old,
        strict,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.drift.tune_aggregated", description=__doc__
    )
    parser.add_argument("--runs", type=int, default=48)
    parser.add_argument("--first-seed", type=int, default=6000)
    parser.add_argument(
        "--samplings", default=",".join(SAMPLINGS), help="of raw, 1 min, 5 min (raw: ~4x slower)"
    )
    args = parser.parse_args(argv)
    samplings = tuple(args.samplings.split(","))
    if not set(samplings) <= set(ALL_SAMPLINGS):
        parser.error(f"--samplings: choose from {', '.join(ALL_SAMPLINGS)}")
    started = time.monotonic()
    limit = limits()
    seeds = range(args.first_seed, args.first_seed + args.runs)
    by_shape = {
        s.name: [run_task(s.name, seed, limit[s.rate], samplings) for seed in seeds] for s in SHAPES
    }
    print("| shape | sampling | " + " | ".join(CONTENDERS) + " | old verdict | strict |")
    print("|---|---|" + "---|" * (len(CONTENDERS) + 2))
    summary: dict[str, list[tuple[str, str]]] = {}
    for shape in SHAPES:
        for sampling in samplings:
            line, marks = row(shape, by_shape[shape.name], sampling)
            summary.setdefault(shape.name, []).append(marks)
            print(line)
    print("\n".join(verdict_tables(summary, list(samplings))))
    print("\n| traffic | quiet weeks | sampling | " + " | ".join(CONTENDERS) + " |")
    print("|---|---|---|" + "---|" * len(CONTENDERS))
    for rate in sorted({s.rate for s in SHAPES}, reverse=True):
        runs = [r for s in SHAPES if s.rate == rate for r in by_shape[s.name]]
        weeks = len(runs) * (ONSET - WARMUP) / WEEK
        for sampling in samplings:
            counts = [
                sum(1 for r in runs for p in r["pages"][sampling, c] if WARMUP <= p < ONSET)
                for c in CONTENDERS
            ]
            cells = " | ".join(f"{n} ({n / weeks:.2f}/week)" for n in counts)
            print(f"| {rate:g}/s | {weeks:.1f} | {sampling} | {cells} |")
    print(f"\n({len(seeds)} runs per shape, seeds {seeds[0]}-{seeds[-1]}, "
          f"{time.monotonic() - started:.0f} s)")  # fmt: skip


if __name__ == "__main__":
    main()

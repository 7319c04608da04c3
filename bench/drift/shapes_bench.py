"""`python -m bench.drift [--quick]`: incident shapes x sampling, ours vs two simple rules.

Each run is one key: 20 h of quiet traffic (the first 8 h are warm-up: the rules need 6 h of
trailing day, ours at 5-min steps ~7.5 h of baseline), then the shape for 1 h. The same samples
feed every contender at three samplings: raw (per request), and p95 per 1 min and per 5 min (a
Prometheus export), where ours is `drift backtest`'s replay (sidecar/drift/backtest.py). Scoring:
one hit per event (the first page within the hour after the onset), no point-adjust; a false
page is any page in the quiet hours after warm-up or in a non-event's hour. The fixed rule's
thresholds are tuned on quiet runs of the tune seeds; the report seeds are never used for tuning.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.drift.shapes import QUIET, SHAPES, Shape, samples
from bench.drift.simple import FixedRule, RatioRule, exact_p95, highest_pair
from bench.drift.verdict import Result, old_tally, old_verdict, strict_verdict, tally
from sidecar.drift.backtest import Row, replay
from sidecar.drift.config import DetectorConfig

ONSET = 20 * 3600.0
WARMUP = 8 * 3600.0
AFTER = 3600.0
WEEK = 7 * 86400.0
SAMPLINGS = {"raw": 60.0, "1 min": 60.0, "5 min": 300.0}  # rules' bucket per sampling
CONTENDERS = ("ours", "ratio 1h/day > 1.2 twice", "fixed p95 twice")
TUNE_SEEDS = (0, 1, 2, 3)
BASE = DetectorConfig(floor=0.020)  # production TTFT config, values not normalised

Buckets = list[tuple[float, list[float]]]


def bucket(points: list[tuple[float, float]], step: float) -> Buckets:
    """Values grouped by `step`-second bucket, stamped with the bucket's end; empty ones too."""
    out: Buckets = []
    for t, v in points:
        end = (math.floor(t / step) + 1) * step
        while not out or out[-1][0] < end:
            out.append(((out[-1][0] if out else end - step) + step, []))
        out[-1][1].append(v)
    return out


def _points(raw: list[tuple[float, float]], sampling: str) -> list[tuple[float, float]]:
    return [(t, exact_p95(vs)) for t, vs in bucket(raw, SAMPLINGS[sampling]) if vs]


def _ours(points: list[tuple[float, float]]) -> list[float]:
    result = replay([Row(t, v) for t, v in points], BASE)
    return sorted(a.fired_at for a in result.alerts)


def run_task(
    name: str, seed: int, limits: dict[str, float], samplings: tuple[str, ...] = tuple(SAMPLINGS)
) -> dict[str, Any]:
    shape = next(s for s in SHAPES if s.name == name)  # by name: shapes hold lambdas
    raw = list(samples(shape, seed, ONSET + AFTER, ONSET))
    pages: dict[tuple[str, str], list[float]] = {}
    for sampling in samplings:
        step = SAMPLINGS[sampling]
        if sampling == "raw":
            points, buckets = raw, bucket(raw, step)
        else:
            points = _points(raw, sampling)
            buckets = [(t, [v]) for t, v in points]
        rules = (RatioRule(CONTENDERS[1]), FixedRule(CONTENDERS[2], limits[sampling]))
        for t, values in buckets:
            for rule in rules:
                rule.feed(t, values)
        pages[sampling, "ours"] = _ours(points)
        for rule in rules:
            pages[sampling, rule.name] = rule.pages
    return {"pages": pages, "samples": len(raw)}


def tune_task(rate: float, seed: int) -> dict[str, float]:
    """The highest p95 two consecutive buckets reached in quiet hours, per sampling."""
    raw = [(t, v) for t, v in samples(replace(QUIET, rate=rate), seed, ONSET, ONSET) if t >= WARMUP]
    out = {}
    for sampling, step in SAMPLINGS.items():
        if sampling == "raw":
            out[sampling] = highest_pair([vs for _, vs in bucket(raw, step)])
        else:
            out[sampling] = highest_pair([[v] for _, v in _points(raw, sampling)])
    return out


def _pool(jobs: int, fn: Any, tasks: list[tuple[Any, ...]], label: str) -> list[Any]:
    out: list[Any] = [None] * len(tasks)
    start = time.monotonic()
    with ProcessPoolExecutor(jobs) as pool:
        futures = {pool.submit(fn, *task): i for i, task in enumerate(tasks)}
        for done, future in enumerate(as_completed(futures), 1):
            out[futures[future]] = future.result()
            print(f"\r{label}: {done}/{len(tasks)}, {time.monotonic() - start:.0f} s", end="",
                  file=sys.stderr, flush=True)  # fmt: skip
    print(file=sys.stderr)
    return out


def _score(shape: Shape, runs: list[dict[str, Any]], key: tuple[str, str]) -> dict[str, Any]:
    delays, false = [], 0
    for run in runs:
        pages = run["pages"][key]
        false += sum(1 for p in pages if WARMUP <= p < ONSET)
        after = [p - ONSET for p in pages if ONSET <= p < ONSET + AFTER]
        if not shape.event:
            false += len(after)
        elif after:
            delays.append(after[0])
    return {"hits": len(delays), "delays": delays, "false": false}


def _fmt_delays(delays: list[float]) -> str:
    if not delays:
        return "-"
    ordered = sorted(delays)
    p90 = ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]
    return f"{statistics.median(delays):.0f} / {p90:.0f}"


def _result(shape: Shape, score: dict[str, Any]) -> Result:
    delays = score["delays"]
    median = statistics.median(delays) if delays and shape.event else None
    return Result(score["hits"] if shape.event else 0, score["false"], median)


def verdicts(
    shape: Shape, scores: dict[str, dict[str, Any]], n: int, step: float
) -> tuple[str, str]:
    """The old verdict (misses and false pages) and the strict one (bench/drift/verdict.py)."""
    results = {c: _result(shape, scores[c]) for c in CONTENDERS}
    rules = {c: results[c] for c in CONTENDERS[1:]}
    ours = results["ours"]
    return (
        old_verdict(ours, list(rules.values()), n, shape.event),
        strict_verdict(ours, rules, step, shape.event),
    )


def report(
    shapes: list[Shape], by_shape: dict[str, list[dict[str, Any]]], seeds: list[int]
) -> list[str]:
    n = len(seeds)
    out = ["| shape | sampling | contender | detected | delay s median / p90 | false pages | "
           "ours vs better rule (old) | strict |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    summary: dict[str, list[tuple[str, str]]] = {}
    for shape in shapes:
        runs = by_shape[shape.name]
        for sampling, step in SAMPLINGS.items():
            scores = {c: _score(shape, runs, (sampling, c)) for c in CONTENDERS}
            old, strict = verdicts(shape, scores, n, step)
            summary.setdefault(shape.name, []).append((old, strict))
            for c in CONTENDERS:
                sc = scores[c]
                hit = f"{sc['hits']}/{n}" if shape.event else f"(non-event) {sc['hits']}"
                cells = [shape.name, sampling, c, hit, _fmt_delays(sc["delays"]), str(sc["false"]),
                         old if c == "ours" else "", strict if c == "ours" else ""]  # fmt: skip
                out.append("| " + " | ".join(cells) + " |")
    out += verdict_tables(summary, list(SAMPLINGS))
    return out


def verdict_tables(summary: dict[str, list[tuple[str, str]]], samplings: list[str]) -> list[str]:
    """Per shape both verdicts at every sampling, then the counts per sampling."""
    out = ["", "### Verdict per shape: old (misses, false pages vs the better rule) | strict "
           "(bench/drift/verdict.py: + better than both rules, = neither, - worse than one)", "",
           "| shape | " + " | ".join(f"{s} old | {s} strict" for s in samplings) + " |",
           "|---|" + "---|---|" * len(samplings)]  # fmt: skip
    for name, cells in summary.items():
        out.append(f"| {name} | " + " | ".join(f"{o} | {s}" for o, s in cells) + " |")
    out += ["", "| sampling | old verdict: cells | strict verdict: cells |", "|---|---|---|"]
    for i, sampling in enumerate(samplings):
        column = [cells[i] for cells in summary.values()]
        out.append(f"| {sampling} | {old_tally([o for o, _ in column])} | "
                   f"{tally([s for _, s in column])} |")  # fmt: skip
    return out


def quiet_rates(by_shape: dict[str, list[dict[str, Any]]], shapes: list[Shape]) -> list[str]:
    """False pages per key per week in the quiet hours of every run, by traffic."""
    out = ["| traffic | quiet weeks | sampling | " + " | ".join(CONTENDERS) + " |",
           "|---|---|---|" + "---|" * len(CONTENDERS)]  # fmt: skip
    for rate in sorted({s.rate for s in shapes}, reverse=True):
        runs = [r for s in shapes if s.rate == rate for r in by_shape[s.name]]
        weeks = len(runs) * (ONSET - WARMUP) / WEEK
        for sampling in SAMPLINGS:
            cells = []
            for c in CONTENDERS:
                pages = sum(1 for r in runs for p in r["pages"][sampling, c] if WARMUP <= p < ONSET)
                cells.append(f"{pages} ({pages / weeks:.2f}/week)")
            out.append(f"| {rate:g}/s | {weeks:.1f} | {sampling} | " + " | ".join(cells) + " |")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.drift", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2 report seeds, ~1 min")
    parser.add_argument("--seeds", type=int, default=10, help="report seeds (default 10)")
    parser.add_argument("--first-seed", type=int, default=1000, help="first report seed")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args(argv)
    seeds = list(range(args.first_seed, args.first_seed + (2 if args.quick else args.seeds)))
    if set(seeds) & set(TUNE_SEEDS):
        parser.error(f"report seeds must not include the tune seeds {TUNE_SEEDS}")
    started = time.monotonic()
    rates = sorted({s.rate for s in SHAPES})
    tuned = _pool(args.jobs, tune_task, [(r, s) for r in rates for s in TUNE_SEEDS], "tune")
    limits: dict[float, dict[str, float]] = {}
    for (rate, _), highest in zip([(r, s) for r in rates for s in TUNE_SEEDS], tuned, strict=True):
        for sampling, value in highest.items():
            previous = limits.setdefault(rate, {}).get(sampling, 0.0)
            limits[rate][sampling] = max(previous, 1.01 * value)
    tasks = [(shape.name, seed, limits[shape.rate]) for shape in SHAPES for seed in seeds]
    results = _pool(args.jobs, run_task, tasks, "report")
    by_shape = {
        s.name: results[i * len(seeds) : (i + 1) * len(seeds)] for i, s in enumerate(SHAPES)
    }
    total = sum(r["samples"] for r in results)
    out = [f"# Drift shapes benchmark ({'quick' if args.quick else 'full'})", ""]
    out.append(
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; {time.monotonic() - started:.0f} s wall, {total:,} samples. "
        f"Report seeds {seeds[0]}..{seeds[-1]} (tune seeds {TUNE_SEEDS[0]}..{TUNE_SEEDS[-1]}); "
        f"lognormal latencies (median 0.5 s, sigma 0.5); onset after {ONSET / 3600:g} h, "
        f"{AFTER / 60:g} min to detect; quiet hours counted from {WARMUP / 3600:g} h."
    )
    fixed = "; ".join(
        f"{r:g}/s: " + ", ".join(f"{k} {v:.2f} s" for k, v in limits[r].items()) for r in rates
    )
    out += ["", f"Fixed-rule thresholds (tuned on quiet tune runs): {fixed}", ""]
    out += report(SHAPES, by_shape, seeds)
    out += ["", "### Quiet hours: false pages per key", "", *quiet_rates(by_shape, SHAPES)]
    text = "\n".join(out)
    print(text)
    results_dir = Path(__file__).resolve().parent.parent / "results"
    results_dir.mkdir(exist_ok=True)
    (results_dir / ("drift-shapes-quick.md" if args.quick else "drift-shapes.md")).write_text(
        text + "\n"
    )

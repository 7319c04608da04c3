"""`python -m bench.drift --replay --lean`: the Azure replay, ours now vs ours without the
magnitude test (round 3), on the same samples, every scenario and quiet hours: minutes where
the full replay bench (with every family's sweep) takes most of an hour."""

from __future__ import annotations

from typing import Any

from bench.drift.replay import AFTER, ONSET, WARMUP, _fmt_delays, _pool_map, _run
from bench.drift.rules import DEFAULT_H, ROUND3, Ours
from bench.drift.sim import QUIET, SCENARIOS

NOW = f"ours h={DEFAULT_H:g} (with the magnitude test)"
QUIET_HOURS = 11.0


def lean_task(seed: int, name: str | None) -> dict[str, list[float]]:
    feeders = [Ours(NOW, threshold=DEFAULT_H), Ours(ROUND3, threshold=DEFAULT_H, score_k=None)]
    scenario = QUIET if name is None else next(s for s in SCENARIOS if s.name == name)
    _run(feeders, seed, QUIET_HOURS * 3600 if name is None else ONSET + AFTER, scenario)
    return {n: p for f in feeders for n, p in f.pages.items()}


def lean(seeds: list[int], jobs: int) -> list[str]:
    names: list[str | None] = [None, *(s.name for s in SCENARIOS)]
    tasks = [(seed, name) for name in names for seed in seeds]
    results = _pool_map(jobs, tasks, lean_task, "lean")
    by: dict[str | None, list[dict[str, list[float]]]] = {}
    for (_, name), pages in zip(tasks, results, strict=True):
        by.setdefault(name, []).append(pages)
    hours = (QUIET_HOURS - WARMUP / 3600) * len(seeds)
    out = [f"Seeds {seeds[0]}..{seeds[-1]}; quiet: {hours:g} h after warm-up.", ""]
    out += ["| scenario | contender | detected (non-event: paged) | delay s median / p90 / max | "
            "pages before onset |", "|---|---|---|---|---|"]  # fmt: skip
    for contender in (NOW, ROUND3):
        quiet = sum(1 for r in by[None] for p in r[contender] if p >= WARMUP)
        out.append(f"| quiet ({hours:g} h) | {contender} | {quiet} false pages | - | - |")
    for scenario in SCENARIOS:
        for contender in (NOW, ROUND3):
            runs: list[Any] = by[scenario.name]
            delays = [
                next(p for p in r[contender] if p >= ONSET) - ONSET
                for r in runs
                if any(p >= ONSET for p in r[contender])
            ]
            early = sum(1 for r in runs for p in r[contender] if p < ONSET)
            cells = [scenario.name, contender, f"{len(delays)}/{len(runs)}",
                     _fmt_delays(delays), str(early)]  # fmt: skip
            out.append("| " + " | ".join(cells) + " |")
    return out

"""Streaming scenarios: added TTFT / inter-token latency, CPU per token, and the rate ramp.

Variants of a level run back to back in a rotating order each round, against one simulator
whose per-stream rate is set for the level, so each round compares like with like.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bench.relay.env import Env
from bench.relay.procs import Proc, machine_jiffies, rss_bytes
from bench.relay.stats import latency_figures, percentile, summarize

KEYS = ("ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms", "cpu_us_per_token", "token_rate")
ITL_P99_BUDGET_MS = 5.0
STREAMS_PER_WORKER = 128


@dataclass(frozen=True)
class Target:
    name: str
    kind: str  # "ws" or "sse"
    url: str
    proc: Proc | None  # the relay whose CPU is charged to the tokens (None: direct)
    # Further processes sharing the load (bench.relay.multiproc): load worker i talks to
    # (self, *more)[i % n], and the CPU of all of them is charged.
    more: tuple[Target, ...] = ()

    def shard(self, index: int) -> Target:
        shards = (self, *self.more)
        return shards[index % len(shards)]

    def cpu(self) -> tuple[float, float] | None:
        """CPU seconds of every process (and of their event loops' threads) so far."""
        procs = [t.proc for t in (self, *self.more) if t.proc is not None]
        if not procs:
            return None
        return sum(p.cpu() for p in procs), sum(p.loop_cpu() for p in procs)


def max_tokens_for(rate: float, seconds: float) -> int:
    """Answers of about `seconds` (1 s in the full run, 8..100 tokens): long enough that
    per-request work does not swamp the per-token cost, short enough for several TTFT samples
    per user and round."""
    return max(8, min(100, round(rate * seconds)))


def measure(
    env: Env,
    target: Target,
    streams: int,
    max_tokens: int,
    seconds: float,
    stagger: float | None = None,
) -> dict[str, Any]:
    """One variant, one round: latency figures, token and request rates, relay and simulator
    CPU per token and per request."""
    cfg = env.config
    stagger = cfg.stagger if stagger is None else stagger
    n_workers = min(len(env.workers), max(1, math.ceil(streams / STREAMS_PER_WORKER)))
    n_workers = max(n_workers, min(len(env.workers), 1 + len(target.more)))
    shares = [streams // n_workers + (i < streams % n_workers) for i in range(n_workers)]
    jobs = [
        {
            "job": "stream",
            "kind": target.kind,
            "url": target.shard(i).url,
            "streams": share,
            "duration": seconds,
            "stagger": stagger,
            "max_tokens": max_tokens,
            "seed": cfg.seed * 1000 + i,
        }
        for i, share in enumerate(shares)
    ]
    before = target.cpu()
    sim0, machine0 = env.sim.cpu(), machine_jiffies()
    results = env.workers.run(jobs, timeout=stagger + seconds + 60)
    after, machine1 = target.cpu(), machine_jiffies()
    busy, ticks = machine1[0] - machine0[0], machine1[1] - machine0[1]
    relay_cpu = loop_cpu = None
    if before is not None and after is not None:
        relay_cpu, loop_cpu = after[0] - before[0], after[1] - before[1]
    sim_cpu = env.sim.cpu() - sim0
    ttft = [x for r in results for x in r["ttft"]]
    itl = [x for r in results for x in r["itl"]]
    tokens = sum(r["tokens"] for r in results)
    requests = sum(r["requests"] for r in results)
    total = [x for r in results for x in r["total"]]
    elapsed = max(r["elapsed"] for r in results)
    kinds: dict[str, int] = {}
    for r in results:
        for kind, count in r["error_kinds"].items():
            kinds[kind] = kinds.get(kind, 0) + count
    return {
        **latency_figures(ttft, itl),
        "tokens": tokens,
        "total_p50_ms": _ms(percentile(total, 50)),
        "total_p99_ms": _ms(percentile(total, 99)),
        "requests": requests,
        "request_rate": sum(r["window_requests"] for r in results) / seconds,
        "errors": sum(r["errors"] for r in results),
        "error_kinds": kinds,
        "token_rate": tokens / elapsed if elapsed else 0.0,
        "cpu_us_per_token": relay_cpu / tokens * 1e6 if relay_cpu is not None and tokens else None,
        "loop_cpu_us_per_token": loop_cpu / tokens * 1e6
        if loop_cpu is not None and tokens
        else None,
        "cpu_us_per_request": relay_cpu / requests * 1e6
        if relay_cpu is not None and requests
        else None,
        "loop_cpu_us_per_request": loop_cpu / requests * 1e6
        if loop_cpu is not None and requests
        else None,
        "sim_cpu_us_per_token": sim_cpu / tokens * 1e6 if tokens else None,
        "relay_rss_mib": rss_bytes(target.proc.pid) / 2**20 if target.proc else None,
        "machine_busy": busy / ticks if ticks else None,  # all CPUs, everything running
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def compare(env: Env, label: str, targets: list[Target], levels: tuple[int, ...]) -> list[Any]:
    """For each concurrency level: every target, `rounds` times, rotating the order."""
    cfg = env.config
    out = []
    for target in targets if cfg.warmup > 0 else ():  # first connections, lazy imports
        env.progress(f"{label}: warm-up, {target.name}")
        measure(env, target, 4, 12, cfg.warmup)
    for streams in levels:
        rate = cfg.rate_per_stream(streams)
        max_tokens = max_tokens_for(rate, cfg.answer_seconds)
        env.set_rate(rate)
        where = f"{label}: {streams} streams x {rate:g} tok/s"
        rounds = rotating_rounds(env, where, targets, streams, max_tokens)
        out.append(
            {
                "streams": streams,
                "rate_per_stream": rate,
                "max_tokens": max_tokens,
                "summary": summarize(rounds, "direct", KEYS),
                "rounds": rounds,
            }
        )
    env.progress_done()
    return out


def rotating_rounds(
    env: Env,
    label: str,
    targets: list[Target],
    streams: int,
    max_tokens: int,
    stagger: float | None = None,
) -> list[dict[str, Any]]:
    """Every target `rounds` times, the order rotated each round (so no variant always runs
    first or last); one {target name: result} dict per round."""
    cfg = env.config
    rounds = []
    for r in range(cfg.rounds):
        row = {}
        for k in range(len(targets)):
            target = targets[(k + r) % len(targets)]
            env.progress(f"{label}, round {r + 1}/{cfg.rounds}, {target.name}")
            row[target.name] = measure(env, target, streams, max_tokens, cfg.duration, stagger)
        rounds.append({t.name: row[t.name] for t in targets})
    return rounds


def websocket_targets(env: Env) -> list[Target]:
    sim, servers = env.sim, env.servers
    return [
        Target("direct", "sse", sim.url + "/v1/chat/completions", None),
        Target("sidecar", "ws", f"ws://{servers['sidecar'].url}/v1/stream", servers["sidecar"]),
        Target("minimal", "ws", f"ws://{servers['minimal'].url}/v1/stream", servers["minimal"]),
    ]


def http_targets(env: Env) -> list[Target]:
    sim, servers = env.sim, env.servers
    sidecar = servers["sidecar"]
    targets = [
        Target("direct", "sse", sim.url + "/v1/chat/completions", None),
        Target("sidecar", "sse", f"http://{sidecar.url}/v1/chat/completions", sidecar),
    ]
    if "nginx" in servers:
        nginx = servers["nginx"]
        targets.append(Target("nginx", "sse", nginx.url + "/v1/chat/completions", nginx))
    return targets


def ws_scenario(env: Env) -> dict[str, Any]:
    return {"levels": compare(env, "ws", websocket_targets(env), env.config.levels)}


def http_scenario(env: Env) -> dict[str, Any]:
    return {"levels": compare(env, "http", http_targets(env), env.config.levels)}


def ramp_scenario(env: Env) -> dict[str, Any]:
    """Raise the aggregate token rate step by step. A relay passes a step when its added p99 ITL
    is within 5 ms and it keeps up (≥ 90 % of the direct tokens); its sustained rate is the last
    step before its first failure. Every relay runs every step (for CPU per token against the
    rate) unless it falls below half the direct rate, where more steps would only overload it."""
    cfg = env.config
    targets = websocket_targets(env)
    streams = cfg.ramp_streams
    steps: list[dict[str, Any]] = []
    best: dict[str, float | None] = {t.name: None for t in targets[1:]}
    failed: set[str] = set()
    overloaded: set[str] = set()
    for aggregate in cfg.ramp_rates:
        rate = aggregate / streams
        env.set_rate(rate)
        max_tokens = max_tokens_for(rate, cfg.answer_seconds)
        row: dict[str, Any] = {}
        for target in targets:
            if target.name in overloaded:
                continue
            env.progress(f"ramp: {aggregate:g} tok/s over {streams} streams, {target.name}")
            row[target.name] = measure(env, target, streams, max_tokens, cfg.ramp_seconds)
        direct = row["direct"]
        for name in best:
            if name not in row:
                continue
            mine = row[name]
            added = _sub(mine["itl_p99_ms"], direct["itl_p99_ms"])
            kept_up = mine["tokens"] >= 0.9 * direct["tokens"] and not mine["errors"]
            mine["added_itl_p99_ms"] = added
            mine["passed"] = kept_up and added is not None and added <= ITL_P99_BUDGET_MS
            if mine["passed"] and name not in failed:
                best[name] = aggregate
            elif not mine["passed"]:
                failed.add(name)
            if mine["tokens"] < 0.5 * direct["tokens"]:
                overloaded.add(name)
        steps.append({"aggregate_rate": aggregate, "rate_per_stream": rate, "results": row})
        if overloaded >= set(best):
            break
    env.progress_done()
    return {"streams": streams, "budget_ms": ITL_P99_BUDGET_MS, "max_rate": best, "steps": steps}


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b

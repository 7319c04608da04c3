"""Would several sidecar processes serve the closed loop better than one? (issue 33, item 4)

    python -m bench.relay.multiproc [--users 64] [--processes 2]

The best case for a `--workers N` mode: N independent sidecars (each its own ledger, journal
and metrics, so no coordination cost at all) with the users split evenly between them, as
`SO_REUSEPORT` would at best. Side by side in rotating rounds with one sidecar serving all the
users, nginx and the direct connection, for the `requests` scenario's answer shapes. Every
variant's users come from the same load worker processes. If even this upper bound does not
win, a real `--workers` mode (shared ledger writer or one per worker, Prometheus multiprocess
collection) would not either.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from bench.relay.env import Config, Env
from bench.relay.loadgen import Workers
from bench.relay.procs import Procs, nginx_available
from bench.relay.stats import summarize
from bench.relay.streams import Target, rotating_rounds

KEYS = ("ttft_p50_ms", "ttft_p99_ms", "cpu_us_per_request", "request_rate", "machine_busy")
CHAT = "/v1/chat/completions"


def spread(target: Target, copies: int) -> Target:
    """The same server from every load worker (so every variant has the same clients)."""
    twin = dataclasses.replace(target, proc=None)
    return dataclasses.replace(target, more=(twin,) * (copies - 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.relay.multiproc", description=__doc__)
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--commit", default=None)
    args = parser.parse_args(argv)
    cfg = dataclasses.replace(
        Config.full(), rounds=args.rounds, duration=args.seconds, workers=args.processes
    )
    procs, workers = Procs(args.commit), Workers(cfg.workers)
    try:
        sim = procs.simulator(cfg.ttft, 50.0, cfg.seed)
        env = Env(cfg, procs, workers, sim)
        sidecars = [procs.sidecar(sim.url, 20.0, f"sidecar-{i}") for i in range(args.processes)]
        shards = [
            Target(f"sidecar-{i}", "sse", f"http://{p.url}{CHAT}", p)
            for i, p in enumerate(sidecars)
        ]
        n = args.processes
        targets = [spread(Target("direct", "sse", sim.url + CHAT, None), n)]
        if nginx_available():
            nginx = procs.nginx(int(sim.url.rsplit(":", 1)[1]))
            targets.append(spread(Target("nginx", "sse", nginx.url + CHAT, nginx), n))
        targets.append(spread(dataclasses.replace(shards[0], name="1 sidecar"), n))
        targets.append(dataclasses.replace(shards[0], name=f"{n} sidecars", more=tuple(shards[1:])))
        for name, tokens, rate in cfg.request_shapes:
            env.set_rate(rate, ttft=cfg.request_ttft)
            where = f"{name}, c={args.users}"
            rounds = rotating_rounds(env, where, targets, args.users, tokens, cfg.request_stagger)
            _print(where, summarize(rounds, "direct", KEYS))
        env.progress_done()
    finally:
        workers.close()
        procs.close()
    return 0


def _print(where: str, summary: dict[str, dict[str, Any]]) -> None:
    print(
        f"\n{where}: +TTFT p50 / p99 ms, CPU µs per request (all processes), requests/s, "
        "machine busy"
    )
    for name, row in summary.items():
        if name == "direct":
            print(f"  direct: {row['request_rate']:.1f} requests/s, {row['machine_busy']:.0%}")
            continue
        print(
            f"  {name}: +{row['added_ttft_p50_ms']:.2f} / +{row['added_ttft_p99_ms']:.2f}, "
            f"{row['cpu_us_per_request']:.0f}, {row['request_rate']:.1f} "
            f"({row['ratio_request_rate']:.3f} of direct), {row['machine_busy']:.0%}"
        )


if __name__ == "__main__":
    raise SystemExit(main())

"""`python -m bench.live_sessions`: what polling the admin `GET /sessions` once a second costs
a sidecar that holds 10,000 WebSocket connections, side by side with not polling.

One sidecar (default heartbeats, every 20 s) holds `--connections` idle WebSockets (answering
pings, as browsers do) while `--streams` users stream short answers through it (the relay
bench's WebSocket users: a new request as soon as the last one ends). Rounds alternate two
phases of `--seconds` each: without a poller, and with one that asks `GET /sessions?QUERY` every
`--interval` seconds (the /ui page's question by default). Each phase reports the sidecar's CPU
(all its threads, as a share of one core), the users' time to first token (p50, p99) and, when
polled, each answer's wall time and size. The figures are medians over rounds; `added` is the
median of the per-round differences (polled − quiet), so a noisy neighbour moves both sides.

Bounded: every phase and job has a deadline; processes are killed on exit.
Run under `nice` on a shared machine: `nice -n 10 .venv/bin/python -m bench.live_sessions`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.relay.loadgen import Workers
from bench.relay.procs import Proc, Procs, raise_fd_limit
from bench.relay.stats import median, percentile

CONNS_PER_SOURCE_ADDR = 10_000


class Poller(threading.Thread):
    """GET `url` every `interval` seconds until stopped; records wall time and bytes."""

    def __init__(self, url: str, interval: float) -> None:
        super().__init__(daemon=True)
        self.url, self.interval = url, interval
        self.stop = threading.Event()
        self.walls: list[float] = []
        self.sizes: list[int] = []
        self.errors = 0

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=10) as response:
                    self.sizes.append(len(response.read()))
                self.walls.append(time.monotonic() - started)
            except OSError:
                self.errors += 1
            self.stop.wait(max(0.0, self.interval - (time.monotonic() - started)))


def open_idle(workers: Workers, url: str, count: int) -> int:
    n = len(workers)
    per_addr = max(1, math.ceil(count / n / CONNS_PER_SOURCE_ADDR))
    jobs = [
        {
            "job": "idle_open",
            "url": url,
            "count": count // n + (i < count % n),
            "local_addrs": [f"127.0.0.{2 + i * per_addr + j}" for j in range(per_addr)],
            "timeout": 300,
        }
        for i in range(n)
    ]
    return sum(r["open"] for r in workers.run(jobs, timeout=330))


def phase(
    workers: Workers, sidecar: Proc, args: argparse.Namespace, poll_url: str | None, seed: int
) -> dict[str, Any]:
    n = len(workers)
    jobs = [
        {
            "job": "stream",
            "kind": "ws",
            "url": f"ws://{sidecar.url}/v1/stream",
            "streams": args.streams // n + (i < args.streams % n),
            "duration": args.seconds,
            "stagger": 0.5,
            "max_tokens": args.max_tokens,
            "seed": seed * 100 + i,
        }
        for i in range(n)
    ]
    poller = Poller(poll_url, args.interval) if poll_url else None
    cpu0, t0 = sidecar.cpu(), time.monotonic()
    if poller is not None:
        poller.start()
    try:
        results = workers.run(jobs, timeout=args.seconds + 90)
    finally:
        if poller is not None:
            poller.stop.set()
            poller.join(15)
    elapsed = time.monotonic() - t0
    cpu = sidecar.cpu() - cpu0
    ttft = [t for r in results for t in r["ttft"]]
    errors = sum(r["errors"] for r in results)
    if errors or not ttft:
        kinds = [r["error_kinds"] for r in results]
        raise RuntimeError(f"streaming users failed ({errors} errors: {kinds}); see the logs")
    row: dict[str, Any] = {
        "cpu_percent": cpu / elapsed * 100,
        "ttft_p50_ms": _ms(percentile(ttft, 50)),
        "ttft_p99_ms": _ms(percentile(ttft, 99)),
        "requests": sum(r["requests"] for r in results),
        "elapsed_s": elapsed,
    }
    if poller is not None:
        row |= {
            "polls": len(poller.walls),
            "poll_errors": poller.errors,
            "poll_p50_ms": _ms(percentile(poller.walls, 50)),
            "poll_p99_ms": _ms(percentile(poller.walls, 99)),
            "answer_kib": (median([float(s) for s in poller.sizes]) or 0) / 1024,
        }
    return row


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def summarize(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    keys = ("cpu_percent", "ttft_p50_ms", "ttft_p99_ms")
    out: dict[str, Any] = {}
    for variant in ("quiet", "polled"):
        out[variant] = {k: median([r[variant][k] for r in rounds]) for k in rounds[0][variant]}
    out["added"] = {
        k: median([r["polled"][k] - r["quiet"][k] for r in rounds if r["polled"][k] is not None])
        for k in keys
    }
    polls = median([r["polled"]["polls"] for r in rounds]) or 1
    seconds = median([r["polled"]["elapsed_s"] for r in rounds]) or 1
    cpu_added = out["added"]["cpu_percent"] or 0.0
    out["added"]["cpu_ms_per_poll"] = cpu_added / 100 * seconds / polls * 1000
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.live_sessions", description=__doc__)
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--streams", type=int, default=50, help="streaming users")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--tokens-per-second", type=float, default=200.0, help="per stream")
    parser.add_argument("--seconds", type=float, default=20.0, help="per phase")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    parser.add_argument("--query", default="limit=200", help="the poll's query string")
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")
    parser.add_argument("--quick", action="store_true", help="1,000 connections, 1 short round")
    parser.add_argument("--out", type=Path, default=Path("bench/results/live_sessions.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.connections, args.rounds, args.seconds = min(args.connections, 1000), 1, 5.0
    raise_fd_limit()
    procs = Procs()
    workers = Workers(args.workers)
    try:
        sim = procs.simulator(ttft=0.02, tokens_per_second=args.tokens_per_second, seed=7)
        # The idle connections alone reach the default --max-connections (10,000).
        sidecar = procs.sidecar(sim.url, heartbeat=20.0, extra=("--max-connections", "0"))
        poll_url = f"{sidecar.admin}/sessions?{args.query}"
        _say(f"opening {args.connections} idle connections")
        opened = open_idle(workers, f"ws://{sidecar.url}/v1/stream", args.connections)
        _say(f"{opened} open; warming up")
        phase(workers, sidecar, argparse.Namespace(**{**vars(args), "seconds": 3.0}), None, 0)
        rounds = []
        for n in range(args.rounds):
            row = {}
            for variant in ("quiet", "polled") if n % 2 == 0 else ("polled", "quiet"):
                _say(f"round {n + 1}/{args.rounds}: {variant}")
                row[variant] = phase(
                    workers, sidecar, args, poll_url if variant == "polled" else None, n + 1
                )
            rounds.append(row)
        result = {
            "settings": {**vars(args), "out": str(args.out), "opened": opened},
            "rounds": rounds,
            "summary": summarize(rounds),
        }
    finally:
        workers.close()
        procs.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(report(result))
    return 0


def report(result: dict[str, Any]) -> str:
    s, cfg = result["summary"], result["settings"]
    q, p, a = s["quiet"], s["polled"], s["added"]
    lines = [
        f"{cfg['opened']} idle connections + {cfg['streams']} streaming users, "
        f"{cfg['rounds']} rounds of {cfg['seconds']:g} s per phase; "
        f"poll: GET /sessions?{cfg['query']} every {cfg['interval']:g} s",
        "",
        "| | sidecar CPU (% of a core) | TTFT p50 (ms) | TTFT p99 (ms) |",
        "|---|---|---|---|",
        _row("not polled", q, ""),
        _row("polled", p, ""),
        _row("added", a, "+"),
        "",
        f"per poll: {a['cpu_ms_per_poll']:.1f} ms of sidecar CPU; answer "
        f"{p['answer_kib']:.0f} KiB, wall p50 {p['poll_p50_ms']:.1f} ms, "
        f"p99 {p['poll_p99_ms']:.1f} ms ({p['polls']:.0f} polls per phase)",
    ]
    return "\n".join(lines)


def _row(name: str, figures: dict[str, Any], sign: str) -> str:
    cpu, p50, p99 = (figures[k] for k in ("cpu_percent", "ttft_p50_ms", "ttft_p99_ms"))
    return f"| {name} | {cpu:{sign}.1f} | {p50:{sign}.2f} | {p99:{sign}.2f} |"


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())

"""Garbage-collector pauses in a loaded sidecar: `python -m bench.relay.gcpauses`.

Starts the simulator and one sidecar (the working tree, or `--commit`) with a probe loaded by
`sitecustomize` (bench/relay/gcprobe: the sidecar's code is unchanged), drives it with the A/B's
closed loop (`--users` users, 15-token answers at 13 tokens/s by default, as
`bench.relay.ab --streams 200`) and prints how often the collector ran, how long it paused the
event loop, and with `--types` what it freed: anything a finished stream or connection leaves
in a reference cycle shows up there (docs/benchmarks.md, "Garbage-collector pauses").

    python -m bench.relay.gcpauses --commit 302b76f --types   # a stream's cycle, by type
    python -m bench.relay.gcpauses --kind sse
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from bench.relay.env import Config, Env
from bench.relay.loadgen import Workers
from bench.relay.procs import REPO, Procs
from bench.relay.profile import SHAPES
from bench.relay.streams import Target, measure

PROBE = Path(__file__).parent / "gcprobe"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.relay.gcpauses", description=__doc__)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--kind", choices=("sse", "ws"), default="ws")
    parser.add_argument("--shape", choices=tuple(SHAPES), default="slow")
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--commit", default=None)
    parser.add_argument("--types", action="store_true", help="what each collection freed")
    args = parser.parse_args(argv)
    cfg = Config.full()
    procs, workers = Procs(args.commit), Workers(cfg.workers)
    out = procs.tmp / "gc.json"
    probe_env = {
        "PYTHONPATH": os.pathsep.join((str(PROBE), str(procs.code), str(REPO))),
        "GCPROBE_OUT": str(out),
        "GCPROBE_TYPES": "1" if args.types else "0",
    }
    try:
        sim = procs.simulator(cfg.ttft, 50.0, cfg.seed)
        env = Env(cfg, procs, workers, sim)
        tokens, rate = SHAPES[args.shape]
        env.set_rate(rate, ttft=cfg.request_ttft)
        sidecar = procs.sidecar(sim.url, 20.0, env=probe_env)
        url = f"ws://{sidecar.url}/v1/stream" if args.kind == "ws" else f"http://{sidecar.url}"
        path = "" if args.kind == "ws" else "/v1/chat/completions"
        target = Target("sidecar", args.kind, url + path, sidecar)
        measure(env, target, 16, tokens, 2.0)  # warm-up: start-up's collections end before
        since = time.time()
        Path(f"{out}.load").touch()  # the probe counts freed types from now on
        result = measure(env, target, args.users, tokens, args.seconds, cfg.request_stagger)
        requests = result["request_rate"] * args.seconds
        report(json.loads(out.read_text()) if out.exists() else None, requests, since)
    finally:
        workers.close()
        procs.close()
    return 0


def report(stats: dict[str, Any] | None, requests: float, since: float) -> None:
    """Collections during the measured load only (start-up collects a lot: imports, the full
    collection before `gc.freeze()`)."""
    pauses = [(gen, ms) for t, gen, ms in (stats or {}).get("pauses", []) if t >= since]
    print(f"{requests:.0f} requests measured, {len(pauses)} collections meanwhile")
    for generation in (0, 1, 2):
        ms = [p for gen, p in pauses if gen == generation]
        if ms:
            print(
                f"generation {generation}: {len(ms)} collections, pause median "
                f"{statistics.median(ms):.2f} ms, max {max(ms):.2f} ms, total {sum(ms):.0f} ms"
            )
    freed = sorted((stats or {}).get("freed", {}).items(), key=lambda item: -item[1])
    if freed:
        total = sum(count for _, count in freed)
        print(f"freed {total} objects ({total / requests:.1f} per request), by type:")
        for name, count in freed[:25]:
            print(f"  {count:8d}  {name}")


if __name__ == "__main__":
    raise SystemExit(main())

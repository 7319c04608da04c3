"""CPU per token of streams whose clients are away (grace mode), with and without a resume
store: `python -m bench.relay.parked --redis redis://127.0.0.1:6379/0`.

Connected clients cost a store nothing (nothing is published then; `bench.relay.ab` with
`--env-b` compares that side by side). Parked streams publish one entry per flush: here
clients start `--streams` answers each, vanish after the first delta, and the sidecar's CPU
is read over `--seconds` while the answers go on into the replay buffers (and Redis), divided
by the tokens the simulator generated meanwhile. The two sidecars take turns, `--rounds` times.
Start a throwaway Redis first (`redis-server --port 6379 --save ''`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import urllib.request
from typing import Any

from websockets.asyncio.client import connect

from bench.relay.procs import Proc, Procs, cpu_seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.relay.parked", description=__doc__)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--streams", type=int, default=16, help="per client")
    parser.add_argument("--rate", type=float, default=50.0, help="tokens/s per stream")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    procs = Procs(None)
    try:
        sim = procs.simulator(0.02, args.rate, 1)
        sides = {}
        grace = str(args.seconds + 1)
        for name, store in (("grace", None), ("grace+redis", args.redis)):
            env = {"SIDECAR_ON_DISCONNECT": "grace", "SIDECAR_RESUME_GRACE": grace}
            if store:
                env["SIDECAR_RESUME_STORE"] = store
            saved = {k: os.environ.get(k) for k in env}
            os.environ.update(env)
            try:
                sides[name] = procs.sidecar(sim.url, 20.0, name.replace("+", "-"))
            finally:
                for key, value in saved.items():
                    os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
        results: dict[str, list[float]] = {name: [] for name in sides}
        order = list(sides)
        for r in range(args.rounds):
            for name in order[r % 2 :] + order[: r % 2]:
                results[name].append(asyncio.run(_round(sides[name], sim.url, args)))
                _wait_idle(sim.url)
        for name, values in results.items():
            print(
                f"{name}: {statistics.median(values):.1f} µs CPU per parked token "
                f"(rounds: {', '.join(f'{v:.1f}' for v in values)})"
            )
    finally:
        procs.close()
    return 0


async def _round(side: Proc, sim_url: str, args: argparse.Namespace) -> float:
    tokens = int(args.rate * (args.seconds + 3))
    await asyncio.gather(*(_vanish(side.url, args.streams, tokens) for _ in range(args.clients)))
    cpu0, generated0 = cpu_seconds(side.pid), _generated(sim_url)
    await asyncio.sleep(args.seconds)
    cpu1, generated1 = cpu_seconds(side.pid), _generated(sim_url)
    return (cpu1 - cpu0) * 1e6 / max(1, generated1 - generated0)


def _wait_idle(sim_url: str) -> None:
    """The grace window ends the parked answers before the next round."""
    deadline = time.monotonic() + 30
    while _stats(sim_url)["active"] and time.monotonic() < deadline:
        time.sleep(0.2)


async def _vanish(url: str, streams: int, tokens: int) -> None:
    ws = await connect(f"ws://{url}/v1/stream", max_queue=None)
    await ws.recv()  # hello
    body = {"model": "sim", "messages": [{"role": "user", "content": "hi"}], "max_tokens": tokens}
    for i in range(streams):
        await ws.send(json.dumps({"type": "generate", "id": f"s{i}", "body": body}))
    started: set[str] = set()
    async for raw in ws:
        frame = json.loads(raw)
        if frame["type"] == "delta":
            started.add(frame["id"])
            if len(started) == streams:
                break
    ws.transport.abort()


def _stats(sim_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(sim_url + "/sim/stats", timeout=5) as response:
        return dict(json.load(response))


def _generated(sim_url: str) -> int:
    return int(_stats(sim_url)["tokens_generated"])


if __name__ == "__main__":
    raise SystemExit(main())

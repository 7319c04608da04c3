"""Capacity: CPU per token of a saturated relay, and the tokens/s one core can carry.

Each relay is held to a fraction of one core (bench/relay/quota.py) and offered more tokens
than that fraction can carry, so its event loop never sleeps: tokens/s delivered ÷ quota is its
capacity per core, and its CPU ÷ tokens its cost per token with the wake-ups of a lightly
loaded loop taken out. Three load shapes, because coalescing decides the result:

- many slow streams (200 × 15 tokens/s): a stream's next token arrives long after the relay
  last read it, so every token is still one upstream read and one client write;
- faster streams (64 × 100 tokens/s, a model decoding quickly; 16 × 400, as when speculative
  decoding or vLLM's `--stream-interval` sends tokens in bursts): while the relay serves the
  others, a stream's tokens queue up, one read brings several, and the sidecar writes them to
  the client in one call.

Variants: the sidecar as shipped (tracing off), the sidecar exporting every span over OTLP/HTTP
to a receiver on loopback (the issue's "accounting, metrics and tracing on"), and the minimal
relay. Latencies under a quota measure the quota, not the relay, and are not reported.
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

from bench.relay.env import Env
from bench.relay.quota import CpuQuota, saturation
from bench.relay.stats import median
from bench.relay.streams import Target, measure, rotating_rounds


def capacity_scenario(env: Env) -> dict[str, Any]:
    cfg, sim = env.config, env.sim
    env.traced_sidecar()
    servers = env.servers
    targets = [
        Target("direct", "sse", sim.url + "/v1/chat/completions", None),
        *(
            Target(name, "ws", f"ws://{servers[server].url}/v1/stream", servers[server])
            for name, server in (
                ("sidecar", "sidecar"),
                ("sidecar+tracing", "traced"),
                ("minimal", "minimal"),
            )
        ),
    ]
    for target in targets[1:] if cfg.warmup > 0 else ():  # the traced sidecar is new
        env.progress(f"capacity: warm-up, {target.name}")
        measure(env, target, 4, 12, cfg.warmup)
    quotas: list[tuple[CpuQuota, int]] = []
    try:
        for target in targets[1:]:
            assert target.proc is not None
            quota = CpuQuota(target.name.replace("+", "-"), cfg.capacity_quota)
            quotas.append((quota, target.proc.pid))
            quota.add(target.proc.pid)
        fraction = quotas[0][0].fraction
        shapes = [_shape(env, targets, fraction, *shape) for shape in cfg.capacity_shapes]
    finally:
        for quota, pid in quotas:
            quota.release(pid)
            quota.close()
    env.progress_done()
    return {"quota": fraction, "shapes": shapes, "otlp_received": _exports(env)}


def _exports(env: Env) -> dict[str, int]:
    """What the traced sidecar exported (its processor sends every 500 ms: wait for one)."""
    url = env.servers["otlp-sink"].url + "/stats"
    deadline = time.monotonic() + 3.0
    while True:
        with urllib.request.urlopen(url, timeout=5) as response:
            received: dict[str, int] = json.loads(response.read())
        if received["exports"] or time.monotonic() > deadline:
            return received
        time.sleep(0.1)


def _shape(
    env: Env, targets: list[Target], quota: float, streams: int, rate: float, answer: int
) -> dict[str, Any]:
    env.set_rate(rate)
    where = f"capacity: {streams} streams x {rate:g} tok/s at {quota:g} core"
    rounds = rotating_rounds(env, where, targets, streams, answer)
    summary: dict[str, dict[str, Any]] = {}
    for target in targets:
        runs = [row[target.name] for row in rounds]
        delivered = median([x["token_rate"] for x in runs]) or 0.0
        cpu = median([x["cpu_us_per_token"] for x in runs])
        saturated = saturation(cpu, delivered, quota) if cpu is not None else {}
        summary[target.name] = {
            "token_rate": delivered,
            "cpu_us_per_token": cpu,
            "tokens_per_s_per_core": saturated.get("tokens_per_s_per_core"),
            "quota_used": saturated.get("quota_used"),
            "errors": sum(x["errors"] for x in runs),
        }
    return {
        "streams": streams,
        "rate_per_stream": rate,
        "answer_tokens": answer,
        "summary": summary,
        "rounds": rounds,
    }

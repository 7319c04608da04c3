"""Per-request cost: closed-loop clients against a relay, side by side with nginx (issue 33).

Each of c users sends its next request when the last answer ends, so the request rate follows
the relay's own speed. Two answer shapes after a 50 ms first token: "short" (16 tokens at
1,000 tokens/s: per-request work dominates) and "long" (200 tokens at 200 tokens/s: one
wake-up per token). At c = 1, 16 and 64, every variant runs in a rotating order each round:

- direct: the client reads the simulator's SSE (the limit);
- HTTP: nginx (`proxy_buffering off`, the no-logic floor), the sidecar's passthrough, and a
  second sidecar exporting every span (tracing on);
- WebSocket: the sidecar, the traced sidecar, and the minimal relay (the WebSocket floor).

Reported per variant: added TTFT p50/p99 and added total time (request sent → end of the
answer) against direct, relay CPU per request and per token (process CPU time over the
round, so the machine's load barely moves it), and requests/s of answers ended in the window.
"""

from __future__ import annotations

from typing import Any

from bench.relay.env import Env
from bench.relay.stats import summarize
from bench.relay.streams import Target, measure, rotating_rounds

KEYS = (
    "ttft_p50_ms",
    "ttft_p99_ms",
    "total_p50_ms",
    "total_p99_ms",
    "cpu_us_per_request",
    "cpu_us_per_token",
    "loop_cpu_us_per_request",
    "request_rate",
    "token_rate",
    "machine_busy",
)


def targets(env: Env) -> list[Target]:
    sim, servers = env.sim, env.servers
    sidecar, traced, minimal = servers["sidecar"], env.traced_sidecar(), servers["minimal"]
    chat = "/v1/chat/completions"
    out = [Target("direct", "sse", sim.url + chat, None)]
    if "nginx" in servers:
        out.append(Target("nginx", "sse", servers["nginx"].url + chat, servers["nginx"]))
    out += [
        Target("sidecar", "sse", f"http://{sidecar.url}{chat}", sidecar),
        Target("sidecar+tracing", "sse", f"http://{traced.url}{chat}", traced),
        Target("ws sidecar", "ws", f"ws://{sidecar.url}/v1/stream", sidecar),
        Target("ws sidecar+tracing", "ws", f"ws://{traced.url}/v1/stream", traced),
        Target("ws minimal", "ws", f"ws://{minimal.url}/v1/stream", minimal),
    ]
    return out


def requests_scenario(env: Env) -> dict[str, Any]:
    cfg = env.config
    chosen = targets(env)
    shapes = []
    try:
        for target in chosen[1:] if cfg.warmup > 0 else ():
            env.progress(f"requests: warm-up, {target.name}")
            measure(env, target, 4, 12, cfg.warmup)
        for name, tokens, rate in cfg.request_shapes:
            env.set_rate(rate, ttft=cfg.request_ttft)
            levels = []
            for users in cfg.request_levels:
                where = f"requests: {name} ({tokens} tokens at {rate:g}/s), c={users}"
                rounds = rotating_rounds(env, where, chosen, users, tokens, cfg.request_stagger)
                summary = summarize(rounds, "direct", KEYS)
                levels.append({"users": users, "summary": summary, "rounds": rounds})
            shapes.append({"shape": name, "tokens": tokens, "rate": rate, "levels": levels})
    finally:
        env.set_rate(cfg.rate_per_stream(1))  # the other scenarios' first token again
    env.progress_done()
    return {"ttft_s": cfg.request_ttft, "shapes": shapes}

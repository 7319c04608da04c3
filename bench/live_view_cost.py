"""`python -m bench.live_view_cost`: the CPU one `GET /sessions` answer takes on the event loop
at 10,000 sessions, in process: no sockets, and CPU time of this thread rather than wall time,
so a busy machine blurs it far less than it blurs `bench.live_sessions`.

Real `WebSocketSession` objects (their RTT rings full: 256 pongs each, the worst case), one in
50 with a running stream, are read the way the admin app reads them: `select` (every session,
through attribute getters) and the JSON of each listed session. Each figure is the median of
`--repeat` answers after one warm-up (RTT medians are memoised per pong; `cold` is the first
answer sorted by `rtt_p50`, when every median is computed).
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
from collections import deque
from types import SimpleNamespace
from typing import Any

from sidecar.accounting.stream import StreamAccount
from sidecar.context import Limits
from sidecar.ingress.stream import LiveStream
from sidecar.ingress.websocket import RTT_WINDOW, WebSocketSession
from sidecar.live import snapshot
from sidecar.live.query import Query
from sidecar.live.view import LiveView

QUERIES = {
    "/ui (limit=200)": Query(limit=200),
    "top (sort=waste, limit=50)": Query(sort="waste", limit=50),
    "sort=rtt, limit=200": Query(sort="rtt", limit=200),
    "sort=rtt_p50, limit=200": Query(sort="rtt_p50", limit=200),
    "tenant=t3": Query(tenant="t3"),
    "stuck=1": Query(stuck=True),
}


def server(count: int, seed: int = 1) -> Any:
    rng = random.Random(seed)
    ctx: Any = SimpleNamespace(
        edge=None,
        limits=Limits(),
        app_ping_interval=0.0,
        resume_grace=0.0,
        instance_id="bench",
        wall_clock=time.time,
        clock=time.monotonic,
        metrics=SimpleNamespace(heartbeat_rtt=SimpleNamespace(observe=lambda _v: None)),
        observer=SimpleNamespace(sample=lambda *_args: None),
        sessions=set(),
        parked={},
        streams=set(),
        ended=deque(maxlen=200),
    )
    for n in range(count):
        scope = {"type": "websocket", "headers": [], "query_string": f"tenant=t{n % 20}".encode()}
        session = WebSocketSession(scope, None, None, ctx)
        for _ in range(RTT_WINDOW):
            session._on_rtt(rng.uniform(0.0005, 0.05))
        if n % 50 == 0:
            account = StreamAccount(f"st{n}", "r1", session.id, "m", "t", "ws", "/", 0.0, 0.0)
            session.live["r1"] = LiveStream(SimpleNamespace(account=account), 0)  # type: ignore[arg-type]
        ctx.sessions.add(session)
    return ctx


def answer_ms(view: LiveView, ctx: Any, query: Query) -> tuple[float, float]:
    """(select, JSON of the listed sessions) in milliseconds of this thread's CPU."""
    t0 = time.thread_time()
    chosen = view.select(query, snapshot.read(ctx))
    t1 = time.thread_time()
    for row in chosen.rows:
        view.session_json(chosen, row)
    return (t1 - t0) * 1000, (time.thread_time() - t1) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.live_view_cost", description=__doc__)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=21)
    args = parser.parse_args(argv)
    ctx = server(args.sessions)
    gc.collect()
    gc.freeze()  # as `sidecar serve` does after start-up
    cold_view = LiveView.new()
    cold = sum(answer_ms(cold_view, ctx, QUERIES["sort=rtt_p50, limit=200"]))
    print(f"{args.sessions} sessions, full RTT rings, 1 in 50 streaming")
    print(f"CPU milliseconds of the loop's thread per answer, median of {args.repeat}")
    print("\n| query | select | listed sessions' JSON | total |\n|---|---|---|---|")
    view = LiveView.new()
    for name, query in QUERIES.items():
        answer_ms(view, ctx, query)  # warm-up
        runs = [answer_ms(view, ctx, query) for _ in range(args.repeat)]
        select = statistics.median(r[0] for r in runs)
        listing = statistics.median(r[1] for r in runs)
        print(f"| {name} | {select:.1f} | {listing:.1f} | {select + listing:.1f} |")
    print(f"| sort=rtt_p50, cold (every median computed) | | | {cold:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

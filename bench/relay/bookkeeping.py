"""What a stream's bookkeeping costs, in-process: `python -m bench.relay.bookkeeping [N]`.

No sockets and no event loop: N streams of 15 tokens go through the real `Recorder` (crash
journal on a temporary directory, access log to /dev/null, metrics on their own registry) and
the `LatencyObserver`, and each step's time per stream is printed in µs. This is the part of a
request's CPU that does not depend on the network, so it is steady enough to compare two
versions of a step on a busy machine (docs/benchmarks.md, "The stream core").
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from sidecar import logs
from sidecar.accounting.ids import random_hex_id, time_ordered_id
from sidecar.accounting.pricing import PriceBook
from sidecar.accounting.recorder import Recorder
from sidecar.accounting.stream import Outcome, StreamAccount
from sidecar.context import LatencyObserver
from sidecar.ledger import journal
from sidecar.ledger.writer import Barrier, Row
from sidecar.telemetry.metrics import Metrics

TOKENS = 15
STEPS = ("account", "started", "tokens", "observer", "ahead", "finish", "finished")


def new_account() -> StreamAccount:
    """A stream's account as `open_stream` builds one (fresh ids, both clocks read)."""
    return StreamAccount(
        stream_id=time_ordered_id(),
        request_id=random_hex_id(),
        session_id="session",
        model="model",
        tenant="tenant",
        ingress="websocket",
        path="/v1/chat/completions",
        started_at=time.time(),
        t_start=time.monotonic(),
        prompt_chars=100,
        trace_id=random_hex_id(),
    )


def measure(streams: int) -> dict[str, float]:
    """µs per stream for each step."""
    queued: list[Row | Barrier] = []
    with tempfile.TemporaryDirectory() as tmp, open("/dev/null", "w") as devnull:
        crash_journal = journal.Journal(Path(tmp), "bench", queued.append)
        metrics = Metrics()
        access = logs.AccessLog("text", stream=devnull)
        recorder = Recorder(
            metrics,
            crash_journal.submit,
            PriceBook(),
            "bench",
            time.time,
            access_log=access,
            journal_only=crash_journal.note,
        )
        observer = LatencyObserver(metrics, None, lambda: 0)
        totals = dict.fromkeys(STEPS, 0.0)
        clock = time.perf_counter
        for _ in range(streams):
            t0 = clock()
            account = new_account()
            t1 = clock()
            recorder.started(account)
            t2 = clock()
            now = time.monotonic()
            for k in range(TOKENS):
                account.on_content(now + k * 0.01, "tok")
                account.on_written()
            t3 = clock()
            observer.first_token(account, 0.02)
            for _ in range(TOKENS - 1):
                observer.gap(account, 0.01)
            t4 = clock()
            recorder.completed_ahead(account, now + 0.2)
            t5 = clock()
            account.finish(Outcome.COMPLETED, now + 0.2)
            t6 = clock()
            recorder.finished(account, now + 0.2)
            t7 = clock()
            for step, elapsed in zip(
                STEPS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5, t7 - t6), strict=True
            ):
                totals[step] += elapsed
            if len(queued) > 1000:
                queued.clear()
        access.close()
        crash_journal.close()
    return {step: total / streams * 1e6 for step, total in totals.items()}


def main(argv: list[str]) -> int:
    streams = int(argv[0]) if argv else 20_000
    measure(min(streams, 2_000))  # warm-up: imports, caches, the journal's first pages
    result = measure(streams)
    print(" ".join(f"{step} {us:.2f}" for step, us in result.items()), end="")
    print(f"  total {sum(result.values()):.1f} µs per stream ({streams} streams)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

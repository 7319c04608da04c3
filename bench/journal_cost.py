"""What the crash journal costs per stream, side by side with the queue alone.

    .venv/bin/python -m bench.journal_cost

A stream's start row is built and handed to the ledger before the client sees `start`; with the
journal the start row is copied into the journal's memory-mapped segment instead (the database
sees it only if the stream runs a second), and the final row is copied there before it is
queued. This times
`Recorder.started` + `Recorder.finished` per stream both ways, interleaved rounds, medians.
Without the journal a SIGKILL loses every row still in the writer's queue: up to one flush
interval (0.2 s) plus one batch commit of rows.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from bench.relay.bookkeeping import new_account
from sidecar.accounting.pricing import PriceBook
from sidecar.accounting.recorder import Recorder
from sidecar.accounting.stream import Outcome, StreamAccount
from sidecar.ledger.journal import Journal
from sidecar.ledger.writer import Barrier, Row
from sidecar.telemetry.metrics import Metrics

STREAMS = 5_000
ROUNDS = 7


def _account() -> StreamAccount:
    account = new_account()
    for _ in range(20):
        account.on_content(time.monotonic(), "tok")
    return account


def _per_stream_us(recorder: Recorder) -> float:
    accounts = [_account() for _ in range(STREAMS)]
    start = time.perf_counter()
    for account in accounts:
        recorder.started(account)
        account.on_written(account.deltas)
        account.finish(Outcome.COMPLETED, time.monotonic())
        recorder.finished(account, time.monotonic())
    return (time.perf_counter() - start) / STREAMS * 1e6


def main() -> None:
    queued: list[Row | Barrier] = []
    metrics = Metrics()
    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal(Path(tmp), "bench", queued.append)
        plain = Recorder(metrics, queued.append, PriceBook([]), "bench", time.time, None)
        journaled = Recorder(
            metrics, journal.submit, PriceBook([]), "bench", time.time, None, journal.note
        )
        with_queue, with_journal = [], []
        for _ in range(ROUNDS):
            with_queue.append(_per_stream_us(plain))
            queued.clear()
            with_journal.append(_per_stream_us(journaled))
            queued.clear()
        journal.close()
    a, b = statistics.median(with_queue), statistics.median(with_journal)
    print(f"per stream (start + final row), median of {ROUNDS} rounds of {STREAMS}:")
    print(f"  queue only        {a:7.1f} us")
    print(f"  journal + queue   {b:7.1f} us   (+{b - a:.1f} us, x{b / a:.2f})")


if __name__ == "__main__":
    main()

"""The sidecar's own work per relayed token, without sockets: `python -m bench.relay.pertoken`.

Real SSE chunks as vLLM sends them (1, 4 or 16 deltas per upstream read) go through the relay's
real `pump`: SSE decoding, accounting, the Prometheus histograms and the drift detector (via
`LatencyObserver`), protocol v1 frames and their WebSocket headers; per stream (64 tokens) the
ledger rows and stream metrics (`Recorder`, rows to a list instead of the writer's queue) and an
OpenTelemetry stream span under a session span (SDK provider, batch processor, in-memory
exporter). What is left out is the
operating system: the `recv()` of the upstream chunk and the `send()` of the frames, which the
full benchmark (`python -m bench`) measures with everything else. The difference between the two
is what the network stack costs per token on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sidecar.accounting.pricing import PriceBook
from sidecar.accounting.recorder import Recorder
from sidecar.accounting.stream import Outcome, StreamAccount
from sidecar.context import LatencyObserver
from sidecar.drift.live import DriftSettings, build_monitor
from sidecar.ingress import protocol
from sidecar.ingress.transport import _text_header
from sidecar.ledger.writer import Row
from sidecar.relay.pump import pump
from sidecar.telemetry.metrics import Metrics
from sidecar.telemetry.spans import SessionTrace, Tracing
from sidecar.upstream.sse import SSEDecoder

BODY = {"model": "llama-3.1-8b-instruct", "messages": [{"role": "user", "content": "hi"}]}


def sse_chunk(first: int, deltas: int) -> bytes:
    events = []
    for n in range(first, first + deltas):
        chunk = {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "model": "llama-3.1-8b-instruct",
            "choices": [{"index": 0, "delta": {"content": f" tok{n}"}, "finish_reason": None}],
        }
        events.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
    return b"".join(events)


class FramingSink:
    """The WebSocket sink's work without the socket: frames, headers, one joined write buffer."""

    def __init__(self, account: StreamAccount) -> None:
        self.account = account
        self.frames: list[bytes] = []
        self.written = 0

    def delta(self, seq: int, text: str) -> None:
        self.frames.append(protocol.delta(self.account.request_id, seq, text))

    def passthrough(self, payload: str, usage_only: bool) -> None:
        pass

    async def flush(self, finished: bool = False) -> None:
        if not self.frames:
            return
        frames, self.frames = self.frames, []
        data = b"".join([part for frame in frames for part in (_text_header(frame), frame)])
        self.written += len(data)
        self.account.on_written(len(frames))


@dataclass
class Pipeline:
    observer: LatencyObserver
    recorder: Recorder
    session: SessionTrace


def pipeline() -> Pipeline:
    metrics = Metrics()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(InMemorySpanExporter()))
    session = Tracing(provider).session_span([], "session", "t", "127.0.0.1:5000")
    rows: list[Row] = []
    recorder = Recorder(metrics, rows.append, PriceBook(), "bench", time.time)
    observer = LatencyObserver(metrics, build_monitor(DriftSettings()), lambda: 200)
    return Pipeline(observer, recorder, session)


async def relay_once(chunks: list[bytes], p: Pipeline, clock: list[float], n: int) -> None:
    account = StreamAccount(
        stream_id=f"s{n}", request_id=f"r{n}", session_id="x", model="llama-3.1-8b-instruct",
        tenant="t", ingress="ws", path="/v1/chat/completions", started_at=0.0,
        t_start=clock[0], prompt_chars=400,
    )  # fmt: skip

    async def upstream() -> AsyncIterator[bytes]:
        for chunk in chunks:
            clock[0] += 0.02  # 20 ms between reads: gaps the histograms and drift accept
            yield chunk

    trace = p.session.stream_started(account, BODY)
    p.recorder.started(account)
    await pump(
        upstream(), account, FramingSink(account), p.observer, lambda: clock[0], SSEDecoder()
    )
    account.finish(Outcome.COMPLETED, clock[0])
    trace.end(account)
    p.recorder.finished(account, clock[0])


def measure(deltas_per_read: int, tokens: int) -> float:
    """µs of CPU per token through the pump with metrics and drift on."""
    p = pipeline()
    per_stream = 64
    chunks = [sse_chunk(i, deltas_per_read) for i in range(0, per_stream, deltas_per_read)]
    clock = [1000.0]
    streams = max(1, tokens // per_stream)

    async def run() -> None:
        for n in range(streams):
            await relay_once(chunks, p, clock, n)

    start = time.process_time()
    asyncio.run(run())
    return (time.process_time() - start) / (streams * per_stream) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.relay.pertoken", description=__doc__)
    parser.add_argument("--tokens", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    print("| deltas per upstream read | µs of sidecar logic per token (median of runs) |")
    print("|---:|---:|")
    for deltas in (1, 4, 16):
        runs = [measure(deltas, args.tokens) for _ in range(args.repeat)]
        print(f"| {deltas} | {statistics.median(runs):.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

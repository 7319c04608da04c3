"""The relay's inner loop: upstream bytes → SSE events → accounting → the client's sink.

All deltas decoded from one upstream read are handed to the sink together, so the sink can
write them with one system call (the main lever on CPU per token, DESIGN §10).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Protocol

from sidecar.accounting.stream import StreamAccount
from sidecar.errors import UpstreamError
from sidecar.upstream.sse import (
    Chunk,
    Content,
    Decoder,
    Finish,
    Malformed,
    PromptUsage,
    SSEDecoder,
    StreamEnd,
    UpstreamFailure,
    Usage,
    UsageDetails,
    read_chunk,
)

Read = Callable[[str], list[Chunk]]  # one payload's chunks: a route's reader (chat: read_chunk)


class ClientGone(Exception):
    """The client's connection is closed or closing; nothing more can be written."""


class Sink(Protocol):
    """Where relayed output goes; each method may raise `ClientGone`."""

    def delta(self, seq: int, text: str) -> None: ...

    def passthrough(self, payload: str, usage_only: bool) -> None: ...

    async def flush(self, finished: bool = False) -> None:
        """Write what the last read produced; `finished`: the upstream just sent its end, so a
        sink may add its own closing frame to the same write."""


class Observer(Protocol):
    """Latency samples for metrics and drift; called once per delta, must be cheap."""

    def first_token(self, account: StreamAccount, ttft: float) -> None: ...

    def gap(self, account: StreamAccount, seconds: float) -> None: ...


async def pump(
    chunks: AsyncIterator[bytes],
    account: StreamAccount,
    sink: Sink,
    observer: Observer,
    clock: Callable[[], float],
    decoder: Decoder | None = None,
    first_token_relayed: Callable[[], None] | None = None,
    read: Read = read_chunk,
) -> bool:
    """Relay until `[DONE]` or the end of the body; True if the upstream finished properly.

    Latency samples go to the observer after the write, not before: metrics and drift are
    then off the path from the upstream's bytes to the client's. `first_token_relayed` is
    called once the first token is written (the upstream client then stops giving this
    stream's reads priority). `read` is the route's event reader, chosen once per stream.
    """
    decoder = decoder or SSEDecoder()
    finished = False
    latencies: list[float] = []
    next_chunk = chunks.__aiter__().__anext__
    while True:
        try:
            data = await next_chunk()
        except StopAsyncIteration:
            break
        except OSError:
            if finished:  # the model server dropped the connection after its answer's end
                break
            raise
        now = clock()
        first = account.t_first is None
        for payload in decoder.feed(data):
            finished = _handle(payload, account, sink, latencies, now, read) or finished
        # Write, then hand the read's latencies to the observer, also when the write finds
        # the client gone. Inline, not a helper coroutine: this runs once per upstream read.
        try:
            await sink.flush(finished)
        finally:
            if first:
                _observe(observer, account, latencies, first)
            elif latencies:  # the usual read: gaps only (a call less per read than _observe)
                for seconds in latencies:
                    observer.gap(account, seconds)
                latencies.clear()
        if first and account.t_first is not None and first_token_relayed is not None:
            first_token_relayed()
    first = account.t_first is None
    for payload in decoder.flush():
        finished = _handle(payload, account, sink, latencies, clock(), read) or finished
    try:
        await sink.flush(finished)
    finally:
        if latencies:
            _observe(observer, account, latencies, first)
    return finished


def _observe(
    observer: Observer, account: StreamAccount, latencies: list[float], first: bool
) -> None:
    """The read's latencies: its time to first token first if `first`, then gaps."""
    if not latencies:
        return
    if first:
        observer.first_token(account, latencies[0])
        for seconds in latencies[1:]:
            observer.gap(account, seconds)
    else:
        for seconds in latencies:
            observer.gap(account, seconds)
    latencies.clear()


def _handle(
    payload: str,
    account: StreamAccount,
    sink: Sink,
    latencies: list[float],
    now: float,
    read: Read,
) -> bool:
    usage_only = False
    finished = False
    for chunk in read(payload):
        match chunk:
            case Content(text, reason):
                seq, gap = account.on_content(now, text)
                sink.delta(seq, text)
                latencies.append(now - account.t_start if gap is None else gap)
                if reason:
                    account.finish_reason = reason
            case Usage(prompt, completion, final):
                account.on_usage(prompt, completion, final)
                usage_only = final
            case Finish(reason):
                account.finish_reason = reason
            case StreamEnd():
                finished = True
            case UpstreamFailure(message):
                raise UpstreamError("upstream_error", f"model server failed mid-stream: {message}")
            case Malformed():
                # Keep relaying: one bad event should not cost the whole answer. Counted, and
                # reported once when the stream ends (sidecar.relay.lifecycle).
                account.malformed += 1
            case PromptUsage(prompt):
                account.on_prompt(prompt)
            case UsageDetails(cached, reasoning):
                account.cached_prompt_tokens = cached
                account.reasoning_tokens = reasoning
    sink.passthrough(payload, usage_only)
    return finished


def count_unrelayed(
    data: bytes, decoder: Decoder, account: StreamAccount, now: float, read: Read = read_chunk
) -> None:
    """Account for upstream output that reached the sidecar after its client left: generated,
    never relayed. Keeps the generated count exact up to the moment the upstream is closed."""
    for payload in decoder.feed(data):
        for chunk in read(payload):
            match chunk:
                case Content(text):
                    account.on_content(now, text)
                case Usage(prompt, completion, final):
                    account.on_usage(prompt, completion, final)
                case PromptUsage(prompt):
                    account.on_prompt(prompt)
                case _:
                    pass

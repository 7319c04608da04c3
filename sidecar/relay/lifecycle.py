"""One stream's life, the same on every ingress (DESIGN §4): admission, the upstream request,
the relay, and exactly one ending, with its ledger row, span, metrics, drift samples and budget.

An ingress only adapts its client: it builds a `Stream` with `open_stream`, hands `relay()` a
`ClientSink` (how to start an answer, end it and report an error to that client), and calls
`stop()` when the client leaves, cancels or must be cut off. Every ending goes through `end()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from sidecar.accounting.ids import random_hex_id, time_ordered_id
from sidecar.accounting.stream import Outcome, StreamAccount
from sidecar.errors import UpstreamError
from sidecar.relay import failpoints
from sidecar.relay.pump import ClientGone, Sink, count_unrelayed, pump
from sidecar.security.limits import Refusal
from sidecar.telemetry.spans import StreamTrace
from sidecar.upstream.client import UPSTREAM_IO_ERRORS, UpstreamResponse
from sidecar.upstream.flavour import ShapedRequest
from sidecar.upstream.routes import STREAM_ROUTES, Reader, Route

if TYPE_CHECKING:
    from sidecar.context import ServerContext

log = logging.getLogger("sidecar.stream")

# Ends decided by the sidecar while the model server may still be generating: stop it at once.
GONE_OUTCOMES = frozenset({Outcome.CLIENT_GONE, Outcome.CLIENT_CANCELLED, Outcome.CLIENT_TOO_SLOW})
STOPPED_OUTCOMES = GONE_OUTCOMES | {Outcome.SHUTDOWN, Outcome.REJECTED}
# Failures of the model server: the extreme tail of time to first token for drift.
UPSTREAM_FAILURES = frozenset({Outcome.UPSTREAM_ERROR, Outcome.TIMEOUT})
SHUTDOWN_NOTICE = ("shutdown", "the sidecar is shutting down; retry on another replica", 503, 1.0)


class ClientSink(Sink, Protocol):
    """An ingress's side of a stream, on top of the relay's per-read `Sink` methods."""

    async def opened(self, body_ready: bool) -> None:
        """The model server accepted the request (2xx); `body_ready`: its first bytes came
        with the headers."""

    async def completed(self) -> bool:
        """The upstream finished its answer: write the end. False if the end must wait (the
        client is away and may resume); the stream then stays running until it does."""

    async def failed(
        self, code: str, message: str, status: int, retry_after: float | None = None
    ) -> None:
        """Tell the client why its answer ends early (an error frame, status or event), and
        when to try again if that helps (`retry_after` seconds)."""


# (code, message, HTTP status, retry after seconds) to tell a client that was stopped.
Notice = tuple[str, str, int, float | None]


def open_stream(
    ctx: ServerContext,
    body: dict[str, Any],
    *,
    request_id: str | None,
    session_id: str | None,
    tenant: str,
    ingress: str,
    path: str,
    prompt_chars: int,
    trace: Callable[[StreamAccount, dict[str, Any]], StreamTrace],
) -> Stream | Refusal:
    """Admit a request to one of `STREAM_ROUTES` (`path`): its account, the edge's limits and budget
    (a refusal is recorded as a `rejected` row and returned for the ingress to tell its
    client), its span."""
    route = STREAM_ROUTES[path]
    model = body.get("model")
    account = StreamAccount(
        stream_id=time_ordered_id(),
        request_id=request_id or random_hex_id(),
        session_id=session_id,
        model=model if isinstance(model, str) and model else ctx.default_model,
        tenant=tenant,
        ingress=ingress,
        path=path,
        started_at=ctx.wall_clock(),
        t_start=ctx.clock(),
        prompt_chars=prompt_chars,
        trace_id=random_hex_id(),
    )
    edge, key = ctx.edge, account.stream_id  # key: the budget's reservation for this stream
    admitted = (
        edge.admit(body, account.tenant, ctx.wall_clock(), stream=key, generates=route.streams)
        if edge
        else None
    )
    if isinstance(admitted, Refusal):  # max_tokens cap or the tenant's daily budget
        account.finish(Outcome.REJECTED, ctx.clock(), error_code=admitted.code)
        ctx.recorder.finished(account, ctx.clock())
        return admitted
    if admitted is not None:
        body = admitted
    stream_trace = trace(account, body)
    account.trace_id = stream_trace.trace_id_hex or account.trace_id
    shaped = route.shape(body, ctx.flavour, account.stream_id)
    return Stream(ctx, account, stream_trace, shaped, route)


class Stream:
    """A running stream; `relay()` drives it, `stop()` ends it from outside."""

    __slots__ = (
        "_cancel_observed",
        "_final_ahead",
        "_notice",
        "account",
        "ctx",
        "decoder",
        "on_end",
        "read",
        "reader",
        "relaying",
        "response",
        "route",
        "shaped",
        "t_stop",
        "task",
        "trace",
    )

    def __init__(
        self,
        ctx: ServerContext,
        account: StreamAccount,
        trace: StreamTrace,
        shaped: ShapedRequest,
        route: Route,
    ) -> None:
        self.ctx, self.account, self.trace, self.shaped = ctx, account, trace, shaped
        self.route = route
        self.decoder = route.decoder()
        self.reader: Reader = route.reader(not shaped.client_wants_stream)
        self.read = self.reader.read  # chosen once: the chat route's is `read_chunk` itself
        self.response: UpstreamResponse | None = None
        self.task: asyncio.Task[Any] | None = None
        self.t_stop: float | None = None  # when the sidecar decided to stop the upstream
        self._cancel_observed = False
        self._final_ahead = False
        self._notice: Notice | None = None
        self.on_end: Callable[[Stream], None] | None = None  # the ingress forgets it
        self.relaying = True  # until its relay returns (a finished stream may await a resume)
        ctx.streams.add(self)

    async def relay(self, sink: ClientSink) -> None:
        """Send the request upstream and relay the answer until the stream ends, in the calling
        task (`stop()` cancels it). Every way out maps to exactly one outcome."""
        ctx, account = self.ctx, self.account
        self.task = asyncio.current_task()
        if account.ended:  # stopped before its task ran (the connection closed at once)
            self.relaying = False
            return
        breaker = ctx.breaker
        try:
            if not breaker.allow(ctx.clock()):  # a dead model server: say so at once
                wait = breaker.retry_after(ctx.clock())
                message = f"model server unreachable; retry in {wait:.0f} s"
                await self._fail(sink, "upstream_unavailable", message, status=503, retry=wait)
                return
            headers: dict[str, str] = {}
            self.trace.inject(headers)
            try:
                response = self.response = await ctx.upstream.stream(
                    account.path, self.shaped.body, account.stream_id, headers
                )
            except UpstreamError as exc:
                if exc.code == "upstream_unavailable":
                    breaker.failed(ctx.clock())
                else:
                    breaker.succeeded()  # it answered: it is up
                raise
            breaker.succeeded()
            failpoints.check("stream_opened", account.model)
            # Journaled before the client hears of it: a crash leaves no started stream
            # unaccounted (sidecar.ledger.journal). After the request left, so not on its path.
            ctx.recorder.started(account)
            await sink.opened(response.body_ready())
            assert ctx.observer is not None
            finished = await pump(
                response.chunks(),
                account,
                sink,
                ctx.observer,
                ctx.clock,
                self.decoder,
                response.first_token_relayed,
                self.read,
            )
            if finished or account.finish_reason is not None:
                if await sink.completed():
                    self.end(Outcome.COMPLETED)
            else:
                await self._fail(sink, "upstream_truncated", "model server closed the stream early")
        except UpstreamError as exc:
            outcome = Outcome.TIMEOUT if exc.code == "upstream_timeout" else Outcome.UPSTREAM_ERROR
            status = 504 if outcome is Outcome.TIMEOUT else exc.status or 502
            await self._fail(sink, exc.code, str(exc), outcome, status)
        except UPSTREAM_IO_ERRORS as exc:
            await self._fail(sink, "upstream_error", f"model server connection failed: {exc}")
        except ClientGone:
            self.end(Outcome.CLIENT_GONE)
        except asyncio.CancelledError:
            if self.t_stop is None or self.task is None:
                # Cancelled from outside (the server is stopping): still one true ending.
                self.end(Outcome.SHUTDOWN)
                raise
            self.task.uncancel()  # `stop()` ended it; tell the client if it asked to
            if self._notice is not None:
                await _quietly(sink.failed(*self._notice))
        except Exception:
            ctx.metrics.internal_errors.inc()
            log.exception("stream %s ended by an internal error", account.stream_id)
            await self._fail(
                sink,
                "internal_error",
                "the sidecar failed on this request (its log has the details)",
                Outcome.INTERNAL_ERROR,
                500,
            )
        finally:
            self._close_upstream(final=True)
            # The task's frame refers back to this object: drop the cycle now, not at the next
            # full collection (which pauses the loop).
            self.task = self.response = None
            self.relaying = False

    def completing(self) -> None:
        """The upstream's end is about to reach the client (`done`, `[DONE]`, the whole JSON):
        its final row goes to the crash journal first (`Recorder.completed_ahead`)."""
        if not self.account.ended and not self._final_ahead:
            self._final_ahead = True
            self.ctx.recorder.completed_ahead(self.account, self.ctx.clock())

    def stop(
        self,
        outcome: Outcome,
        *,
        error_code: str | None = None,
        unsent: int = 0,
        notice: Notice | None = None,
    ) -> bool:
        """End the stream from outside its relay (client gone or cancelled, revoked, drained):
        the upstream is closed at once. `notice` is told to the client by the relay task."""
        self._notice = notice
        return self.end(outcome, error_code=error_code, unsent=unsent)

    def shutdown(self) -> None:
        """The drain ran out: end as `shutdown` with the true counts, and say so."""
        self.stop(Outcome.SHUTDOWN, error_code="shutdown", notice=SHUTDOWN_NOTICE)

    def end(self, outcome: Outcome, *, error_code: str | None = None, unsent: int = 0) -> bool:
        """The one place a stream ends; False if it had already ended (the first outcome wins)."""
        account, ctx = self.account, self.ctx
        now = ctx.clock()
        if not account.finish(outcome, now, error_code=error_code, unsent=unsent):
            return False
        ctx.streams.discard(self)
        ctx.ended.append(account)  # the live view's "just ended" (a bounded ring)
        on_end, self.on_end = self.on_end, None  # called once; and the ingress's callback
        if on_end is not None:  # often refers back to this stream: no cycle for the GC to find
            on_end(self)
        if outcome in STOPPED_OUTCOMES:
            if outcome in GONE_OUTCOMES:
                self.trace.client_gone()
            self.t_stop = now
            self._close_upstream()
            task = self.task
            if task is not None and task is not asyncio.current_task() and not task.done():
                task.cancel()
        elif outcome in UPSTREAM_FAILURES:
            assert ctx.observer is not None
            ctx.observer.failed_before_first_token(account, now)
        if account.malformed:
            ctx.metrics.upstream_malformed.labels(ctx.metrics.model(account.model, True)).inc(
                account.malformed
            )
            log.warning(
                "stream %s: %d events from the model server could not be parsed (skipped)",
                account.stream_id,
                account.malformed,
            )
        self.trace.end(account)
        ctx.recorder.finished(account, now)
        if ctx.edge is not None:
            ctx.edge.charge(
                account.tenant,
                account.prompt_tokens,
                account.generated_tokens,
                ctx.wall_clock(),
                stream=account.stream_id,
            )
        return True

    async def _fail(
        self,
        sink: ClientSink,
        code: str,
        message: str,
        outcome: Outcome = Outcome.UPSTREAM_ERROR,
        status: int = 502,
        retry: float | None = None,
    ) -> None:
        if self.end(outcome, error_code=code):
            await _quietly(sink.failed(code, message, status, retry))

    def _close_upstream(self, final: bool = False) -> None:
        """Close the upstream response (a mid-stream close aborts the generation); when the
        sidecar stopped it, what arrived unread still counts as generated, and the time from
        the decision to the close is measured (`sidecar_upstream_cancel_seconds`)."""
        response, ctx = self.response, self.ctx
        if response is not None and not response.closed:
            if self.account.outcome is not Outcome.COMPLETED:
                count_unrelayed(
                    response.take_buffered(), self.decoder, self.account, ctx.clock(), self.read
                )
            response.close()
        elif response is None and not final:
            return  # still connecting: the cancelled request closes its connection, then here
        if self.t_stop is not None and not self._cancel_observed:
            self._cancel_observed = True
            now = ctx.clock()
            elapsed = now - self.t_stop
            ctx.metrics.upstream_cancel.observe(elapsed)
            self.trace.upstream_cancelled(elapsed)
            assert ctx.observer is not None
            ctx.observer.sample("upstream_cancel", self.account.model, elapsed, now)


async def _quietly(write: Any) -> None:
    """A client may be gone by the time it is told why its stream ended."""
    with contextlib.suppress(ClientGone, OSError, RuntimeError):
        await write

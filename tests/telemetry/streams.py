"""Two streams of one session, fed through `StreamAccount` as the relay would feed them."""

from __future__ import annotations

from typing import Any

from sidecar.accounting.stream import Outcome, StreamAccount
from sidecar.telemetry.spans import SessionTrace

CLIENT_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CLIENT_TRACE_ID}-{CLIENT_SPAN_ID}-01"
PROMPT = "tell me a secret"
COMPLETION = "the cake is a lie"

CHAT_BODY: dict[str, Any] = {
    "model": "sim-small",
    "messages": [{"role": "user", "content": PROMPT}],
    "max_tokens": 3,
    "temperature": 0.5,
}
COMPLETION_BODY: dict[str, Any] = {"model": "sim-large", "prompt": PROMPT, "max_tokens": 300}


def account(request_id: str, path: str, model: str) -> StreamAccount:
    return StreamAccount(
        stream_id=f"s-{request_id}",
        request_id=request_id,
        session_id="sess-1",
        model=model,
        tenant="acme",
        ingress="ws",
        path=path,
        started_at=1_700_000_000.0,
        t_start=10.0,
        prompt_chars=len(PROMPT),
    )


def run_session(session: SessionTrace) -> tuple[StreamAccount, StreamAccount]:
    """A completed chat stream and a cancelled completion stream, then the session's end."""
    done = account("full", "/v1/chat/completions", "sim-small")
    full = session.stream_started(done, CHAT_BODY)
    cut = account("stop", "/v1/completions", "sim-large")
    stop = session.stream_started(cut, COMPLETION_BODY)
    for i, word in enumerate(COMPLETION.split(" ")[:3]):
        done.on_content(10.1 + i * 0.01, word)
        cut.on_content(10.2 + i * 0.01, word)
    full.first_token(0.1)
    stop.first_token(0.2)
    done.on_usage(4, 3, final=True)
    done.on_written(3)
    done.finish_reason = "stop"
    done.finish(Outcome.COMPLETED, 10.5)
    full.end(done, output_text=COMPLETION if full.capture_content else None)
    cut.on_written(3)
    cut.on_ack(2)
    cut.finish(Outcome.CLIENT_CANCELLED, 10.6)
    stop.client_gone()
    stop.upstream_cancelled(0.004)
    stop.end(cut, output_text="the cake" if stop.capture_content else None)
    session.heartbeat_missed()
    session.end(0.01, 0.05, 1, "client_closed")
    return done, cut

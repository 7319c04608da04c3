"""The HTTP answer ends its body in the write that carries `[DONE]` (one system call and one
client wake-up fewer per request), and the end of the body is not mistaken for the client
leaving: uvicorn reports a complete response to the request's `receive` as `http.disconnect`."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from sidecar.accounting.stream import Outcome
from sidecar.ingress.http import HttpAnswer
from sidecar.relay.pump import pump
from sidecar.upstream.routes import ROUTES
from tests.unit.test_accounting import account
from tests.unit.test_ws_sink import Observer, _chunks, _event

DONE = b"data: [DONE]\n\n"


class FakeStream:
    def __init__(self) -> None:
        self.account = account(ingress="http", t_start=0.0)
        flavour = SimpleNamespace(continuous_usage=False)
        disconnects = SimpleNamespace(labels=lambda _reason: SimpleNamespace(inc=lambda: None))
        metrics = SimpleNamespace(disconnects=disconnects)
        self.ctx = SimpleNamespace(
            flavour=flavour, clock=lambda: 1.0, keyed_http=set(), metrics=metrics
        )
        self.shaped = SimpleNamespace(client_wants_stream=True, client_wants_usage=False)
        self.route = ROUTES["/v1/chat/completions"]
        self.reader = self.route.reader(False)
        self.completions = 0
        self.stops: list[Outcome] = []

    def completing(self) -> None:
        self.completions += 1

    def stop(self, outcome: Outcome, **_: Any) -> bool:
        self.stops.append(outcome)
        return True


def _answer(messages: list[dict[str, Any]], received: list[dict[str, Any]]) -> HttpAnswer:
    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    async def receive() -> dict[str, Any]:
        return received.pop(0)

    return HttpAnswer({}, receive, send, FakeStream())  # type: ignore[arg-type]


def _relay(reads: list[bytes]) -> tuple[HttpAnswer, list[dict[str, Any]]]:
    messages: list[dict[str, Any]] = []
    answer = _answer(messages, [])

    async def run() -> None:
        await answer.opened(body_ready=False)
        stream = answer.stream
        await pump(_chunks(reads), stream.account, answer, Observer(), lambda: 1.0)
        assert stream.account.finish_reason == "stop"  # so the relay calls `completed()`
        assert await answer.completed()

    asyncio.run(run())
    return answer, messages


def test_the_body_ends_in_the_write_that_carries_done() -> None:
    answer, messages = _relay([_event("a"), _event("b", "stop") + DONE])
    assert [m["type"] for m in messages] == ["http.response.start"] + ["http.response.body"] * 2
    assert messages[1]["more_body"] is True
    assert messages[2]["body"].endswith(DONE) and messages[2]["more_body"] is False
    assert answer.account.written == answer.account.deltas == 2
    assert answer.stream.completions >= 1  # the final row was journaled before that write


def test_without_done_the_end_is_written_when_the_answer_completes() -> None:
    _, messages = _relay([_event("a"), _event("b", "stop")])
    assert [m.get("more_body", False) for m in messages[1:]] == [True, True, False]
    assert messages[-1]["body"] == b""


def test_the_end_of_the_body_is_not_taken_for_the_client_leaving() -> None:
    disconnect = {"type": "http.disconnect"}
    answer = _answer([], [disconnect])
    answer.body_ended = True
    asyncio.run(answer._watch())
    assert answer.stream.stops == []  # type: ignore[attr-defined]

    answer = _answer([], [disconnect])
    asyncio.run(answer._watch())
    assert answer.stream.stops == [Outcome.CLIENT_GONE]  # type: ignore[attr-defined]

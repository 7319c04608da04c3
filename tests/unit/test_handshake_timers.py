"""The head and body timers of sidecar.security.handshake, through a real uvicorn: armed only when
a read leaves a request incomplete (a kept-alive request whose head and body arrive together
arms none), and still firing when the body trickles or stops."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from sidecar.security.handshake import with_handshake_timeout
from tests.support.timeouts import scaled
from tests.unit.test_transport import uvicorn_serving

BODY = b'{"n": 1}'
REQUEST = (
    b"POST /x HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\n\r\n" % len(BODY)
)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    length = (b"content-length", b"%d" % len(body))
    await send({"type": "http.response.start", "status": 200, "headers": [length]})
    await send({"type": "http.response.body", "body": body})


@contextlib.contextmanager
def counting_timers(loop: asyncio.AbstractEventLoop) -> Any:
    """Counts the timers the protocol arms, by callback name."""
    armed: dict[str, int] = {"_expired": 0, "_body_expired": 0}
    call_later = loop.call_later

    def counted(delay: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        name = getattr(callback, "__name__", "")
        if name in armed:
            armed[name] += 1
        return call_later(delay, callback, *args, **kwargs)

    loop.call_later = counted  # type: ignore[method-assign]
    try:
        yield armed
    finally:
        del loop.call_later  # type: ignore[method-assign]


async def read_answer(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), scaled(5))
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    return head + await reader.readexactly(length)


def test_whole_requests_arm_no_timer_and_a_trickled_or_stopped_body_still_times_out() -> None:
    protocol = with_handshake_timeout(5.0, lambda: None, body_timeout=5.0, body_idle_timeout=0.3)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with uvicorn_serving(app, http=protocol) as port:
            with counting_timers(loop) as armed:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                for _ in range(20):  # head and body in one write, kept alive
                    writer.write(REQUEST + BODY)
                    assert (await read_answer(reader)).endswith(BODY)
                # Only the new connection's head timer (its first bytes may come later).
                assert armed == {"_expired": 1, "_body_expired": 0}

                writer.write(REQUEST)  # the head alone, the body 0.1 s later (< idle timeout)
                await asyncio.sleep(0.1)
                assert armed["_body_expired"] == 1
                writer.write(BODY)
                assert (await read_answer(reader)).endswith(BODY)

                writer.write(REQUEST[:20])  # half a head: its timer starts now
                await asyncio.sleep(0.05)
                assert armed["_expired"] == 2
                writer.write(REQUEST[20:] + BODY[:3])  # the head completes, the body stops
                answer = await asyncio.wait_for(reader.read(), scaled(5))
                assert answer.startswith(b"HTTP/1.1 408"), answer
                writer.close()

    asyncio.run(main())

"""F3: a slow request body is timed out. Sockets that send a POST head and then trickle the body
(or stop) used to hold every connection slot indefinitely: `--handshake-timeout` covered only
the head. Now each gets 408 within --body-timeout (total) or --body-idle-timeout (between bytes),
its slot is freed, and the refusals are counted."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from pathlib import Path

from tests.security.helpers import sample
from tests.support.stack import running_stack
from tests.support.timeouts import scaled

HEAD = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
    b"content-length: 1000\r\n\r\n"
)


def _slow_client(port: int, gap: float, results: list[tuple[bytes, float]]) -> None:
    """Sends the head, then one body byte every `gap` seconds until answered or 15 s."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=scaled(15)) as sock:
        sock.sendall(HEAD)
        sock.settimeout(gap)
        answer = b""
        while time.monotonic() - start < scaled(15):
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                try:
                    sock.sendall(b" ")
                except OSError:
                    break
                continue
            if not chunk:
                break
            answer += chunk
        results.append((answer, time.monotonic() - start))


def test_slow_bodies_are_answered_408_and_free_their_slots(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        stack.start_sim()
        stack.start_serve(
            "--max-connections", "20", "--body-timeout", "2", "--body-idle-timeout", "0.7"
        )
        results: list[tuple[bytes, float]] = []
        # Half trickle a byte every 0.3 s (only the total bound stops them), half stall.
        clients = [
            threading.Thread(target=_slow_client, args=(stack.port, gap, results))
            for gap in [0.3] * 10 + [5.0] * 10
        ]
        for client in clients:
            client.start()
        for client in clients:
            client.join(scaled(20))
        assert len(results) == 20
        for answer, seconds in results:
            assert answer.startswith(b"HTTP/1.1 408"), answer
            assert seconds < scaled(5)
        trickled = sorted(seconds for _answer, seconds in results)[10:]
        stalled = sorted(seconds for _answer, seconds in results)[:10]
        assert all(s >= 1.9 for s in trickled)  # the total bound, not the gap, stopped them
        assert all(s < 1.5 for s in stalled)  # the gap bound stopped these
        # The slots are free again: a normal request goes through.
        body = b'{"model":"sim-small","messages":[{"role":"user","content":"hi"}],"max_tokens":3}'
        request = urllib.request.Request(
            stack.http_url + "/v1/chat/completions",
            body,
            {"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=scaled(10)) as response:
            assert response.status == 200
        metrics = stack.metrics_text()
        assert sample(metrics, "sidecar_limit_hits_total", limit="body_timeout") == 20

"""Stream lifecycle over real processes: heartbeats, drain on SIGTERM, the OpenAI HTTP path."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import signal
import socket
import threading
import time
from pathlib import Path

import openai
import pytest
from websockets.asyncio.client import connect

from tests.e2e.ledger import session_rows, stream_rows, wait_for_rows
from tests.e2e.wsclient import Client, chat
from tests.support.ports import wait_for_port
from tests.support.stack import running_stack
from tests.support.timeouts import scaled


def test_heartbeat_rtt_per_session_in_ledger_and_metrics(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        stack.start_sim()
        stack.start_serve("--heartbeat-interval", "0.2", "--heartbeat-timeout", "2")

        async def idle_a_while() -> None:
            client = await Client.connect(stack.ws_url)
            assert client.hello["heartbeat_s"] == 0.2
            await asyncio.sleep(1.5)  # the websockets client answers protocol pings by itself
            await client.close()

        asyncio.run(idle_a_while())
        deadline = time.monotonic() + scaled(5)
        while time.monotonic() < deadline:
            sessions = [s for s in session_rows(stack.db_url) if s["ended_at"] is not None]
            if sessions:
                break
            time.sleep(0.1)
        (session,) = sessions
        assert 0 < session["heartbeat_rtt_p50_s"] <= session["heartbeat_rtt_max_s"] < 0.5
        assert session["heartbeats_missed"] == 0
        metrics = stack.metrics_text()
        count = next(
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("sidecar_heartbeat_rtt_seconds_count")
        )
        assert count >= 4  # about one pong per 0.2 s over 1.5 s


def test_sigterm_drains_running_streams_and_exits_zero(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        stack.start_sim("--tokens-per-second", "20")
        serve = stack.start_serve("--drain-timeout", "1.5")

        async def load() -> list[str]:
            clients = [await Client.connect(stack.ws_url) for _ in range(4)]
            for i, client in enumerate(clients):
                await client.generate("short", chat(3))  # finishes inside the drain window
                await client.generate(f"long{i}", chat(400))  # cannot finish: ends as shutdown
            await asyncio.sleep(0.3)
            serve.popen.send_signal(signal.SIGTERM)
            ends = []
            for i, client in enumerate(clients):
                ends.append((await client.read_until_end("short"))[-1]["type"])
                last = (await client.read_until_end(f"long{i}"))[-1]
                ends.append(str(last.get("code")))
            for client in clients:
                client.abort()  # the sidecar has gone; drop our side without a handshake
            return ends

        ends = asyncio.run(load())
        assert sorted(ends) == ["done"] * 4 + ["shutdown"] * 4
        assert serve.popen.wait(scaled(10)) == 0, serve.output()
        rows = stream_rows(stack.db_url)
        assert len(rows) == 8
        outcomes = sorted(r["outcome"] for r in rows)
        assert outcomes == ["completed"] * 4 + ["shutdown"] * 4, outcomes
        assert all(r["ended_at"] is not None for r in rows)
        assert stack.sim_stats()["active"] == 0


def test_openai_client_through_the_http_passthrough(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        stack.start_sim("--tokens-per-second", "500")
        stack.start_serve()
        prompt = [{"role": "user", "content": "Say something"}]
        direct = openai.OpenAI(base_url=stack.sim_url + "/v1", api_key="x", max_retries=0)
        via = openai.OpenAI(base_url=stack.http_url + "/v1", api_key="x", max_retries=0)

        def streamed(client: openai.OpenAI) -> tuple[str, list[object]]:
            chunks = list(
                client.chat.completions.create(
                    model="sim-small",
                    messages=prompt,
                    max_tokens=12,
                    stream=True,  # type: ignore[arg-type]
                )
            )
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            return text, [c.usage for c in chunks]

        text_direct, _ = streamed(direct)
        text_via, usages = streamed(via)
        assert text_via == text_direct and len(text_via.split()) == 12
        assert all(u is None for u in usages)  # the usage chunk the sidecar injected is stripped

        whole = via.chat.completions.create(model="sim-small", messages=prompt, max_tokens=5)  # type: ignore[arg-type]
        assert (
            whole.choices[0].message.content
            == text_direct[: len(whole.choices[0].message.content or "")]
        )
        assert whole.usage is not None and whole.usage.completion_tokens == 5
        direct.close()
        via.close()

        # Cut a streaming request off mid-answer: the upstream must be aborted.
        conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
        body = {"model": "sim-small", "messages": prompt, "max_tokens": 5000, "stream": True}
        headers = {"Content-Type": "application/json"}
        conn.request("POST", "/v1/chat/completions", json.dumps(body), headers)
        response = conn.getresponse()
        assert response.status == 200
        for _ in range(10):
            assert response.readline().startswith((b"data: ", b"\n"))
        response.close()
        conn.close()  # the client goes away mid-answer
        rows = wait_for_rows(stack.db_url, 3)  # streamed, whole, cut off (direct calls bypass us)
        cut = [r for r in rows if r["outcome"] == "client_gone"]
        assert len(cut) == 1 and cut[0]["ingress"] == "http"
        assert 0 < cut[0]["generated_tokens"] < 5000
        deadline = time.monotonic() + scaled(5)
        while stack.sim_stats()["active"] and time.monotonic() < deadline:
            time.sleep(0.05)
        upstream = stack.sim_stats()["by_request"][cut[0]["id"]]
        assert upstream["outcome"] == "aborted"
        assert {r["outcome"] for r in rows} == {"completed", "client_gone"}


def test_a_client_that_stops_reading_is_cut_off_not_buffered(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        stack.start_sim("--ttft", "0.01", "--tokens-per-second", "5000")
        stack.start_serve("--send-buffer-bytes", "8192", "--max-buffered-bytes", "65536")

        async def stop_reading() -> None:
            sock = socket.create_connection(("127.0.0.1", stack.port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            # The websockets client stops reading from the socket once 16 frames wait unread.
            ws = await connect(stack.ws_url, sock=sock, max_queue=4)
            await ws.recv()  # hello
            await ws.send(json.dumps({"type": "generate", "id": "r", "body": chat(1_000_000)}))
            await asyncio.sleep(scaled(4))  # never read again
            ws.transport.abort()

        asyncio.run(stop_reading())
        (row,) = wait_for_rows(stack.db_url, 1)
        assert row["outcome"] == "client_too_slow"
        assert row["wasted_tokens"] > 0 and row["generated_tokens"] < 1_000_000
        (session,) = session_rows(stack.db_url)
        assert session["disconnect_reason"] == "client_too_slow"
        assert 'sidecar_disconnects_total{reason="client_too_slow"} 1.0' in stack.metrics_text()


def test_resume_after_reconnect_delivers_every_delta_once(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        stack.start_sim("--ttft", "0.01", "--tokens-per-second", "100")
        stack.start_serve("--on-disconnect", "grace", "--resume-grace", "10")

        async def drop_and_resume() -> list[int]:
            client = await Client.connect(stack.ws_url)
            token = client.hello["resume_token"]
            await client.generate("r", chat(150))
            seqs: list[int] = []
            while len(seqs) < 20:
                frame = await client.next("r")
                if frame["type"] == "delta":
                    seqs.append(frame["seq"])
            client.abort()  # the network drops mid-answer
            await asyncio.sleep(0.5)  # generation goes on meanwhile
            again = await Client.connect(f"{stack.ws_url}?resume_token={token}")
            assert again.hello["session"] == client.hello["session"]
            await again.send({"type": "resume", "id": "r", "after_seq": seqs[-1]})
            frames = await again.read_until_end("r")
            seqs.extend(f["seq"] for f in frames if f["type"] == "delta")
            await again.close()
            return seqs

        seqs = asyncio.run(drop_and_resume())
        assert seqs == list(range(1, 151))  # every delta exactly once, in order
        (row,) = wait_for_rows(stack.db_url, 1)
        assert row["outcome"] == "completed"
        assert row["generated_tokens"] == 150 and row["wasted_tokens"] == 0
        (session,) = session_rows(stack.db_url)
        assert session["streams"] == 1


def test_resume_window_expiry_ends_streams_as_client_gone(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        stack.start_sim("--ttft", "0.01", "--tokens-per-second", "100")
        stack.start_serve("--on-disconnect", "grace", "--resume-grace", "1")

        async def drop() -> None:
            client = await Client.connect(stack.ws_url)
            await client.generate("r", chat(100_000))
            await client.next("r")
            await client.next("r")
            client.abort()

        asyncio.run(drop())
        (row,) = wait_for_rows(stack.db_url, 1)
        assert row["outcome"] == "client_gone"
        assert row["duration_s"] >= 1.0  # the upstream kept going through the grace window
        assert row["wasted_tokens"] > 50


def test_application_level_pings_both_ways(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        stack.start_sim()
        stack.start_serve("--app-ping-interval", "1")

        async def exchange() -> tuple[dict[str, object], dict[str, object]]:
            client = await Client.connect(stack.ws_url)
            from_sidecar = await client.next(None, timeout=5)  # the sidecar pings us
            await client.send({"type": "pong", "t": from_sidecar["t"]})
            await client.send({"type": "ping", "t": "mine"})  # and we ping it
            answer = await client.next(None)
            while answer["type"] != "pong":
                answer = await client.next(None)
            await client.close()
            return from_sidecar, answer

        ping, pong = asyncio.run(exchange())
        assert ping["type"] == "ping" and isinstance(ping["t"], int)
        assert pong == {"type": "pong", "t": "mine"}


def test_http_stream_headers_go_out_before_the_first_token(tmp_path: Path) -> None:
    """The client gets its 200 while the model still works on the first token, as from the model
    server directly, so reading the headers does not add to its time to first token."""
    with running_stack(tmp_path) as stack:
        stack.start_sim("--ttft", "1.0", "--tokens-per-second", "200")
        stack.start_serve()
        conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=scaled(10))
        body = {"model": "sim-small", "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 3, "stream": True}  # fmt: skip
        started = time.monotonic()
        conn.request("POST", "/v1/chat/completions", json.dumps(body))
        response = conn.getresponse()
        headers_after = time.monotonic() - started
        assert response.status == 200
        assert response.getheader("content-type") == "text/event-stream"
        text = response.read().decode()
        answered_after = time.monotonic() - started
        conn.close()
        assert headers_after < 0.5 <= 1.0 <= answered_after, (headers_after, answered_after)
        assert text.rstrip().endswith("data: [DONE]")


def _truncating_upstream(port: int, stop: threading.Event) -> None:
    """A model server that answers 200, streams one token, and ends the body without `[DONE]`
    or a finish reason (as one does when it crashes between chunks behind a proxy)."""
    chunk = b'data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n'
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
    with socket.create_server(("127.0.0.1", port)) as server:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn, contextlib.suppress(OSError):
                conn.settimeout(5)
                request = b""
                while b"\r\n\r\n" not in request:
                    data = conn.recv(65536)
                    if not data:
                        break  # a port probe, not a request
                    request += data
                else:
                    conn.sendall(head + b"Connection: close\r\n\r\n")
                    conn.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(chunk), chunk))


def test_http_stream_cut_short_by_the_model_server_ends_with_an_error_event(
    tmp_path: Path,
) -> None:
    """Once the 200 has gone out, the client learns of an upstream failure from an error event
    in the stream, which the OpenAI client raises, instead of an answer that just stops."""
    with running_stack(tmp_path) as stack:
        stop = threading.Event()
        upstream = threading.Thread(
            target=_truncating_upstream, args=(stack.sim_port, stop), daemon=True
        )
        upstream.start()
        try:
            wait_for_port("127.0.0.1", stack.sim_port, timeout=10)
            stack.start_serve()
            client = openai.OpenAI(base_url=stack.http_url + "/v1", api_key="x", max_retries=0)
            received: list[str] = []
            stream = client.chat.completions.create(
                model="m",
                messages=[{"role": "user", "content": "hi"}],
                stream=True,  # type: ignore[arg-type]
            )
            with pytest.raises(openai.APIError, match="closed the stream early"):
                received.extend(chunk.choices[0].delta.content or "" for chunk in stream)
            client.close()
            assert received == ["Hel"]  # what the model server did send got through first
            (row,) = wait_for_rows(stack.db_url, 1)
            assert (row["outcome"], row["error_code"]) == ("upstream_error", "upstream_truncated")
        finally:
            stop.set()
            upstream.join(5)

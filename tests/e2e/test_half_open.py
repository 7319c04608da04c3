"""A client that vanishes without a FIN: it runs in a network namespace the test creates, and
its packets are then dropped with iptables inside that namespace (this kernel has no netem).

Needs root; with CI=true a missing capability fails the test (tests/support/netns.py).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.e2e.ledger import session_rows, stream_rows
from tests.support.netns import NetNamespace
from tests.support.stack import running_stack
from tests.support.timeouts import scaled

CLIENT = """
import json, sys, time
from websockets.sync.client import connect
ws = connect(sys.argv[1], open_timeout=10)
print(json.loads(ws.recv())["type"], flush=True)
if sys.argv[2] == "stream":
    body = {"model": "sim-small", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 100000}
    ws.send(json.dumps({"type": "generate", "id": "r", "body": body}))
    while True:
        frame = json.loads(ws.recv())
        if frame["type"] == "delta":
            print(frame["seq"], flush=True)
else:
    time.sleep(120)
"""


async def _client_until(ns: NetNamespace, url: str, mode: str, lines: int) -> object:
    proc = await ns.spawn_python(
        "-c", CLIENT, url, mode, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    for _ in range(lines):
        line = await asyncio.wait_for(proc.stdout.readline(), scaled(15))
        assert line, (await proc.stderr.read()).decode() if proc.stderr else "client died"
    return proc


def _wait(predicate: object, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():  # type: ignore[operator]
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError("not detected in time")


def test_half_open_client_idle_and_streaming(netns: NetNamespace, tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        stack.host = netns.host_addr
        stack.start_sim("--tokens-per-second", "200")
        # Listen on the host end of the veth pair, not loopback, so the namespace can reach us.
        stack.start_serve(
            "--heartbeat-interval", "1", "--heartbeat-timeout", "1",
            "--tcp-user-timeout", "3",
        )  # fmt: skip
        url = stack.ws_url

        async def scenario(mode: str, lines: int) -> None:
            proc = await _client_until(netns, url, mode, lines)
            netns.drop_all()
            try:
                if mode == "idle":
                    took = _wait(
                        lambda: any(
                            s["disconnect_reason"] == "heartbeat_timeout"
                            for s in session_rows(stack.db_url)
                        ),
                        scaled(1 + 1 + 1 + 2),
                    )
                    assert took <= 1 + 1 + 1, f"idle half-open client found after {took:.1f}s"
                else:
                    took = _wait(
                        lambda: any(
                            r["outcome"] == "client_gone" for r in stream_rows(stack.db_url)
                        ),
                        scaled(3 + 1 + 2),
                    )
                    assert took <= 3 + 1, f"streaming half-open client found after {took:.1f}s"
            finally:
                netns.restore()
                proc.kill()  # type: ignore[attr-defined]
                await proc.wait()  # type: ignore[attr-defined]

        asyncio.run(scenario("idle", 1))
        asyncio.run(scenario("stream", 20))

        (row,) = stream_rows(stack.db_url)
        assert row["outcome"] == "client_gone"
        assert row["wasted_tokens"] == row["generated_tokens"] - row["delivered_tokens"]
        assert row["wasted_tokens"] > 0  # tokens written into a dead connection are not delivered
        _wait(lambda: stack.sim_stats()["active"] == 0, scaled(5))
        upstream = stack.sim_stats()["by_request"][row["id"]]
        assert upstream["outcome"] == "aborted"
        # Only tokens on the wire while the upstream was being closed go unseen: one at 200
        # tokens/s, two when a loaded machine delays the simulator's noticing by 5 ms more.
        assert upstream["generated"] - row["generated_tokens"] in (0, 1, 2)


HTTP_CLIENT = """
import http.client, json, sys
conn = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=60)
body = {"model": "sim-small", "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 100000, "stream": True}
conn.request("POST", "/v1/chat/completions", json.dumps(body), {"content-type": "application/json"})
response = conn.getresponse()
seen = 0
for line in response:
    if line.startswith(b"data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
        seen += 1
        print(seen, flush=True)
"""


async def _read_counts(stream: asyncio.StreamReader, quiet: float, last: int) -> int:
    """The client's last printed count once it has printed nothing for `quiet` seconds."""
    while True:
        try:
            line = await asyncio.wait_for(stream.readline(), quiet)
        except TimeoutError:
            return last
        if not line:
            return last
        last = int(line)


def test_half_open_http_client_is_not_charged_for_what_it_never_received(
    netns: NetNamespace, tmp_path: Path
) -> None:
    """Tokens written into a connection whose client lost its network count as wasted, not
    delivered: the sidecar keeps writing until TCP gives up (here 3 s, ~600 tokens)."""
    with running_stack(tmp_path) as stack:
        stack.host = netns.host_addr
        stack.start_sim("--tokens-per-second", "200")
        stack.start_serve("--tcp-user-timeout", "3")

        async def scenario() -> int:
            proc = await netns.spawn_python(
                "-c", HTTP_CLIENT, stack.host, str(stack.port),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            assert proc.stdout is not None
            try:
                seen = 0
                while seen < 50:
                    line = await asyncio.wait_for(proc.stdout.readline(), scaled(15))
                    assert line, (await proc.stderr.read()).decode() if proc.stderr else "died"
                    seen = int(line)
                netns.drop_all()
                seen = await _read_counts(
                    proc.stdout, scaled(1.0), seen
                )  # what was already on its side
                _wait(
                    lambda: any(r["outcome"] == "client_gone" for r in stream_rows(stack.db_url)),
                    scaled(3 + 1 + 3),
                )
                return seen
            finally:
                netns.restore()
                proc.kill()
                await proc.wait()

        seen = asyncio.run(scenario())
        (row,) = stream_rows(stack.db_url)
        assert row["ingress"] == "http" and row["outcome"] == "client_gone"
        # What the client's TCP acknowledged; a last segment whose ACK was dropped is not counted.
        assert seen - 5 <= row["delivered_tokens"] <= seen, (row["delivered_tokens"], seen)
        assert row["generated_tokens"] - seen >= 200, "tokens went on being written after the drop"
        assert row["wasted_tokens"] == row["generated_tokens"] - row["delivered_tokens"]

"""Every refusal at the edge, against a real `sidecar serve` with auth and limits on.

Each test checks the documented status or close code and error body or frame, the counter that
went up, and that a well-behaved client on the same sidecar is served correctly meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from sidecar.ledger import db
from sidecar.security.apikeys import ApiKeyStore
from tests.e2e.wsclient import Client, chat
from tests.security.helpers import (
    AUDIENCE,
    ISSUER,
    SECRET,
    RsaKeys,
    hs_token,
    refused,
    rows_until,
    sample,
)
from tests.support.stack import Stack, running_stack, sidecar_cmd
from tests.support.timeouts import scaled

pytestmark = pytest.mark.e2e

ORIGIN = "https://app.example"


@dataclass
class Edge:
    stack: Stack
    key: str  # tenant "acme"
    other_key: str  # tenant "globex"
    revoke_me: tuple[str, str]  # (id, key), tenant "acme"
    revoke_me_http: tuple[str, str]  # (id, key), tenant "acme"
    rsa: RsaKeys

    @property
    def url(self) -> str:
        return self.stack.ws_url

    def metric(self, name: str, **labels: str) -> float:
        return sample(self.stack.metrics_text(), name, **labels)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    tmp = tmp_path_factory.mktemp("edge")
    rsa = RsaKeys()
    jwks = rsa.jwks(tmp / "jwks.json")
    with running_stack(tmp) as stack:
        store = ApiKeyStore(db.make_engine(stack.db_url))
        key = store.create("acme")[1]
        other = store.create("globex")[1]
        info, doomed = store.create("acme", "to revoke")
        info_http, doomed_http = store.create("acme", "to revoke over HTTP")
        stack.start_sim("--ttft", "0.01", "--tokens-per-second", "400")
        stack.start_serve(
            "--auth", "apikey", "--auth", "jwt",
            "--jwt-jwks", str(jwks),
            "--jwt-issuer", ISSUER,
            "--jwt-audience", AUDIENCE,
            "--jwt-leeway", "0",
            "--key-refresh", "0.5",
            "--allowed-origin", ORIGIN,
            "--max-connections", "8",
            "--max-connections-per-tenant", "3",
            "--max-messages-per-second", "5",
            "--max-frame-bytes", "4096",
            "--max-streams-per-connection", "2",
            env={"SIDECAR_JWT_SECRET": SECRET},
        )  # fmt: skip
        yield Edge(stack, key, other, (info.id, doomed), (info_http.id, doomed_http), rsa)


def bearer(token: str) -> dict[str, Any]:
    return {"additional_headers": {"Authorization": f"Bearer {token}"}}


async def served(url: str, token: str, text: str = "hello there") -> dict[str, Any]:
    """A well-behaved client: one full stream; returns the `done` frame."""
    client = await Client.connect(url, **bearer(token))
    await client.generate("ok", chat(5, text=text))
    frames = await client.read_until_end("ok")
    await client.close()
    assert frames[-1]["type"] == "done", frames[-1]
    assert [f["seq"] for f in frames if f["type"] == "delta"] == [1, 2, 3, 4, 5]
    return frames[-1]


async def with_bystander(edge: Edge, attack: Any) -> Any:
    """Run `attack` while a good client streams; the good client must be untouched."""
    client = await Client.connect(edge.url, **bearer(edge.other_key))
    await client.generate("by", chat(40))
    result = await attack
    frames = await client.read_until_end("by")
    assert frames[-1]["type"] == "done"
    assert len([f for f in frames if f["type"] == "delta"]) == 40
    await client.close()
    return result


CASES = {
    "missing_credential": ({}, 401),
    "invalid_api_key": (bearer("sk_sc_0123456789abcdef_" + "x" * 43), 401),
    "malformed_token": (bearer("not-a-token"), 401),
}


@pytest.mark.parametrize("reason", sorted(CASES))
def test_bad_credentials_are_refused_before_the_upgrade(edge: Edge, reason: str) -> None:
    kwargs, status = CASES[reason]
    before = edge.metric("sidecar_auth_failures_total", reason=reason)
    got, body, headers = asyncio.run(with_bystander(edge, refused(edge.url, **kwargs)))
    assert got == status
    assert body["error"]["code"] == reason and body["error"]["message"]
    assert headers["www-authenticate"].startswith('Bearer realm="sidecar"')
    assert edge.metric("sidecar_auth_failures_total", reason=reason) == before + 1


def test_jwt_refusals(edge: Edge) -> None:
    rsa = edge.rsa
    other = RsaKeys("k1")  # same kid, different key: a forged signature
    tokens = {
        "expired_token": rsa.token(exp=int(time.time()) - 120),
        "invalid_audience": rsa.token(aud="someone-else"),
        "invalid_issuer": rsa.token(iss="https://evil.test"),
        "invalid_signature": other.token(),
        "unknown_key": RsaKeys("k9").token(),
        "no_tenant": rsa.token(tenant=None),
    }
    tokens["invalid_signature_hs"] = hs_token("w" * 40)
    for reason, token in tokens.items():
        code = reason.removesuffix("_hs")
        before = edge.metric("sidecar_auth_failures_total", reason=code)
        status, body, _ = asyncio.run(refused(edge.url, **bearer(token)))
        assert (status, body["error"]["code"]) == (403 if code == "no_tenant" else 401, code)
        assert edge.metric("sidecar_auth_failures_total", reason=code) == before + 1, reason
    # Valid tokens of both kinds are served, billed to the tenant of their claim.
    asyncio.run(served(edge.url, rsa.token(tenant="rs-tenant")))
    asyncio.run(served(edge.url, hs_token(tenant="hs-tenant")))
    want = {"rs-tenant", "hs-tenant"}
    rows = rows_until(edge.stack.db_url, lambda rows: want <= {r["tenant"] for r in rows})
    assert want <= {r["tenant"] for r in rows}


def test_revoked_key_is_refused_and_other_keys_still_work(edge: Edge) -> None:
    key_id, key = edge.revoke_me
    asyncio.run(served(edge.url, key))

    async def open_stream_then_revoke() -> tuple[dict[str, Any], int | None]:
        # A connection the key admitted, with an answer still streaming (10 s at 400 tok/s).
        client = await Client.connect(edge.url, **bearer(key))
        await client.generate("long", chat(4000))
        assert (await client.next("long"))["type"] == "start"
        cancels.append(edge.metric("sidecar_upstream_cancel_seconds_count"))
        out = await asyncio.to_thread(
            subprocess.run,
            [*sidecar_cmd("keys", "revoke", key_id), "--db", edge.stack.db_url],
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip() == f"revoked {key_id}"
        frame = await client.next("long")
        while frame["type"] == "delta":
            frame = await client.next("long", timeout=5.0)  # --key-refresh 0.5
        await asyncio.wait_for(client.ws.wait_closed(), scaled(5))
        await client.close()
        return frame, client.ws.close_code

    cancels: list[float] = []
    frame, close_code = asyncio.run(open_stream_then_revoke())
    assert (frame["type"], frame.get("code")) == ("error", "revoked_api_key")
    assert close_code == 1008
    rows = rows_until(edge.stack.db_url, lambda rs: any(r["request_id"] == "long" for r in rs))
    row = next(r for r in rows if r["request_id"] == "long")
    assert (row["outcome"], row["error_code"]) == ("rejected", "revoked_api_key")
    assert 0 < row["generated_tokens"] < 4000  # the model server was stopped, not left running
    # ... by the revocation itself, not later by a failed write to the closed connection.
    assert edge.metric("sidecar_upstream_cancel_seconds_count") == cancels[0] + 1
    assert edge.metric("sidecar_disconnects_total", reason="key_revoked") == 1

    status, body, _ = asyncio.run(with_bystander(edge, refused(edge.url, **bearer(key))))
    assert (status, body["error"]["code"]) == (401, "revoked_api_key")
    assert edge.metric("sidecar_auth_failures_total", reason="revoked_api_key") >= 1
    asyncio.run(served(edge.url, edge.key))


def test_revoking_a_key_ends_its_http_answers_in_flight(edge: Edge) -> None:
    key_id, key = edge.revoke_me_http
    client = openai.OpenAI(base_url=edge.stack.http_url + "/v1", api_key=key, max_retries=0)
    stream = client.chat.completions.create(
        model="sim-small",
        messages=[{"role": "user", "content": "a long answer"}],
        max_tokens=4000,  # 10 s at 400 tokens/s
        stream=True,
    )
    chunks = iter(stream)
    assert next(chunks).choices  # streaming
    cancels = edge.metric("sidecar_upstream_cancel_seconds_count")
    out = subprocess.run(
        [*sidecar_cmd("keys", "revoke", key_id), "--db", edge.stack.db_url],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == f"revoked {key_id}"
    started = time.monotonic()
    with pytest.raises(openai.APIError, match="API key was revoked"):
        for _chunk in chunks:  # the error event the sidecar sends ends the stream
            assert time.monotonic() - started < scaled(5), "not ended (--key-refresh 0.5)"
    stream.close()

    def revoked(rows: list[dict[str, Any]]) -> bool:
        return any(r["ingress"] == "http" and r["error_code"] == "revoked_api_key" for r in rows)

    rows = rows_until(edge.stack.db_url, revoked)
    row = next(r for r in rows if r["ingress"] == "http" and r["error_code"] == "revoked_api_key")
    assert row["outcome"] == "rejected"
    assert 0 < row["generated_tokens"] < 4000  # the model server was stopped
    assert edge.metric("sidecar_upstream_cancel_seconds_count") == cancels + 1
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(
            model="sim-small", messages=[{"role": "user", "content": "again"}], max_tokens=3
        )


def test_a_connection_whose_token_expires_takes_no_new_streams_and_then_closes(
    edge: Edge,
) -> None:
    exp = int(time.time()) + 3

    async def run() -> tuple[dict[str, Any], dict[str, Any], int | None]:
        client = await Client.connect(edge.url, **bearer(hs_token(tenant="expiring", exp=exp)))
        await client.generate("long", chat(1600))  # 4 s at 400 tokens/s: past the expiry
        assert (await client.next("long"))["type"] == "start"
        await asyncio.sleep(max(0.0, exp - time.time()) + 0.3)
        await client.generate("late", chat(3))
        late = await client.next("late")
        last = (await client.read_until_end("long"))[-1]
        await asyncio.wait_for(client.ws.wait_closed(), scaled(5))
        await client.close()
        return late, last, client.ws.close_code

    refusals = edge.metric("sidecar_auth_failures_total", reason="expired_token")
    late, last, close_code = asyncio.run(run())
    assert (late["type"], late["code"]) == ("error", "expired_token")
    assert last["type"] == "done"  # the stream running at the expiry was let finish
    assert close_code == 1008  # then the connection closed, as the gate now refuses the token
    assert edge.metric("sidecar_disconnects_total", reason="token_expired") == 1
    assert edge.metric("sidecar_auth_failures_total", reason="expired_token") == refusals + 1


def test_browser_credentials_subprotocol_and_query(edge: Edge) -> None:
    async def run() -> None:
        # The token as a subprotocol entry; the sidecar echoes `sidecar.v1`, never the token.
        ws = await connect(
            edge.url, subprotocols=["sidecar.v1", f"bearer.{edge.key}"], origin=ORIGIN
        )
        assert ws.subprotocol == "sidecar.v1"
        assert edge.key not in str(ws.response.headers)
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello"
        await ws.close()
        # The token as a query parameter; the tenant the client asks for is ignored.
        client = await Client.connect(f"{edge.url}?token={edge.key}&tenant=mallory")
        await client.generate("q", chat(3))
        assert (await client.read_until_end("q"))[-1]["type"] == "done"
        await client.close()

    asyncio.run(run())
    rows = rows_until(edge.stack.db_url, lambda rows: any(r["request_id"] == "q" for r in rows))
    assert [r["tenant"] for r in rows if r["request_id"] == "q"] == ["acme"]


def test_tenant_header_is_ignored_with_auth(edge: Edge) -> None:
    async def run() -> None:
        client = await Client.connect(
            edge.url,
            additional_headers={"Authorization": f"Bearer {edge.key}", "X-Sidecar-Tenant": "x"},
        )
        await client.generate("hdr", chat(2))
        await client.read_until_end("hdr")
        await client.close()

    asyncio.run(run())
    rows = rows_until(edge.stack.db_url, lambda rows: any(r["request_id"] == "hdr" for r in rows))
    assert [r["tenant"] for r in rows if r["request_id"] == "hdr"] == ["acme"]


def test_disallowed_origin(edge: Edge) -> None:
    before = edge.metric("sidecar_auth_failures_total", reason="origin_not_allowed")
    attack = refused(edge.url, origin="https://evil.example", **bearer(edge.key))
    status, body, _ = asyncio.run(with_bystander(edge, attack))
    assert (status, body["error"]["code"]) == (403, "origin_not_allowed")
    assert edge.metric("sidecar_auth_failures_total", reason="origin_not_allowed") == before + 1


def test_http_routes_need_a_credential(edge: Edge) -> None:
    import urllib.error
    import urllib.request

    url = edge.stack.http_url + "/v1/chat/completions"
    data = json.dumps(chat(3)).encode()
    request = urllib.request.Request(url, data, {"content-type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=scaled(5))
    assert info.value.code == 401
    assert json.load(info.value)["error"]["code"] == "missing_credential"
    request.add_header("Authorization", f"Bearer {edge.other_key}")
    with urllib.request.urlopen(request, timeout=scaled(5)) as response:
        assert json.load(response)["usage"]["completion_tokens"] == 3


def test_oversized_frame_closes_with_1009(edge: Edge) -> None:
    async def attack() -> int | None:
        client = await Client.connect(edge.url, **bearer(edge.key))
        await client.send("x" * 5000)  # --max-frame-bytes 4096
        try:
            await asyncio.wait_for(client.ws.wait_closed(), scaled(5))
        finally:
            await client.close()
        assert client.ws.close_code is not None
        return client.ws.close_code

    before = edge.metric("sidecar_limit_hits_total", limit="frame_size")
    assert asyncio.run(with_bystander(edge, attack())) == 1009
    assert edge.metric("sidecar_limit_hits_total", limit="frame_size") == before + 1


async def flood(url: str, token: str, messages: list[dict[str, Any]]) -> tuple[list[Any], Any]:
    """Send every message at once after the greeting; (every frame that came back, close code)."""
    ws = await connect(url, **bearer(token))
    await ws.recv()  # hello, or session.created
    frames: list[dict[str, Any]] = []
    try:
        for message in messages:
            await ws.send(json.dumps(message))
        async for raw in ws:  # 1008 ends this with ConnectionClosed: keep what came
            frames.append(json.loads(raw))  # noqa: PERF401
    except ConnectionClosed:
        pass
    return frames, ws.close_code


def test_over_rate_client_gets_errors_then_1008(edge: Edge) -> None:
    attack = flood(edge.url, edge.key, [{"type": "ping", "t": i} for i in range(40)])
    before = edge.metric("sidecar_limit_hits_total", limit="message_rate")
    frames, code = asyncio.run(with_bystander(edge, attack))
    pongs = [f for f in frames if f["type"] == "pong"]
    limited = [f for f in frames if f.get("code") == "rate_limited"]
    assert 5 <= len(pongs) < 40 and limited and code == 1008
    assert edge.metric("sidecar_limit_hits_total", limit="message_rate") > before


def realtime_url(edge: Edge) -> str:
    return edge.url.replace("/v1/stream", "/v1/realtime?model=sim-small")


def test_over_rate_realtime_client_gets_realtime_error_events_then_1008(edge: Edge) -> None:
    """The same limit on /v1/realtime, told in the Realtime API's own error shape (which its
    clients parse; protocol v1's frame is not one)."""

    attack = flood(realtime_url(edge), edge.key, [{"type": "input_audio_buffer.clear"}] * 40)
    before = edge.metric("sidecar_limit_hits_total", limit="message_rate")
    frames, code = asyncio.run(with_bystander(edge, attack))
    errors = [f for f in frames if f["type"] == "error"]
    assert all(isinstance(f.get("error"), dict) for f in errors), errors  # no v1-shaped frame
    limited = [f["error"] for f in errors if f["error"]["code"] == "rate_limited"]
    assert limited and code == 1008
    assert all(e["type"] == "invalid_request_error" for e in limited)
    assert edge.metric("sidecar_limit_hits_total", limit="message_rate") > before


def test_realtime_audio_appends_have_the_streaming_budget(edge: Edge) -> None:
    """A voice client sends its microphone in 20-100 ms frames: 40 appends at once pass under
    `--max-messages-per-second 5` (they have the acks' budget, 250/s), and control messages
    after them still have their own."""

    async def talk() -> tuple[list[dict[str, Any]], bool]:
        ws = await connect(realtime_url(edge), **bearer(edge.key))
        await ws.recv()  # session.created
        append = {"type": "input_audio_buffer.append", "audio": "AAAA" * 240}  # 20 ms, 8 kHz
        for _ in range(40):
            await ws.send(json.dumps(append))
        await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
        frames: list[dict[str, Any]] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(scaled(1)):
                frames.extend([json.loads(await ws.recv()) for _ in range(100)])
        still_open = ws.close_code is None
        await ws.close()
        return frames, still_open

    frames, still_open = asyncio.run(with_bystander(edge, talk()))
    limited = [f for f in frames if f["type"] == "error" and f["error"]["code"] == "rate_limited"]
    assert limited == [] and still_open


def test_oversized_realtime_frame_closes_with_1009(edge: Edge) -> None:
    async def attack() -> int | None:
        ws = await connect(realtime_url(edge), **bearer(edge.key))
        await ws.recv()  # session.created
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": "A" * 5000}))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), scaled(5))
        return ws.close_code

    before = edge.metric("sidecar_limit_hits_total", limit="frame_size")
    assert asyncio.run(with_bystander(edge, attack())) == 1009
    assert edge.metric("sidecar_limit_hits_total", limit="frame_size") == before + 1


def test_too_many_streams(edge: Edge) -> None:
    async def attack() -> dict[str, Any]:
        client = await Client.connect(edge.url, **bearer(edge.key))
        for name in ("a", "b", "c"):  # --max-streams-per-connection 2
            await client.generate(name, chat(30))
        frame = await client.next("c")
        for name in ("a", "b"):
            assert (await client.read_until_end(name))[-1]["type"] == "done"
        await client.close()
        return frame

    frame = asyncio.run(with_bystander(edge, attack()))
    assert frame["type"] == "error" and frame["code"] == "too_many_streams"


def test_too_many_streams_is_counted(edge: Edge) -> None:
    assert edge.metric("sidecar_limit_hits_total", limit="streams_per_connection") >= 1


def test_too_many_connections_per_tenant_and_in_total(edge: Edge) -> None:
    async def run() -> None:
        held = [await Client.connect(edge.url, **bearer(edge.key)) for _ in range(3)]
        status, body, _ = await refused(edge.url, **bearer(edge.key))  # 4th of tenant acme
        assert (status, body["error"]["code"]) == (429, "too_many_tenant_connections")
        # Another tenant is unaffected, up to the total of 8.
        held += [await Client.connect(edge.url, **bearer(edge.other_key)) for _ in range(3)]
        held += [await Client.connect(edge.url, **bearer(hs_token(tenant=f"t{i}"))) for i in (1, 2)]
        status, body, headers = await refused(edge.url, **bearer(hs_token(tenant="t3")))
        assert (status, body["error"]["code"]) == (503, "too_many_connections")
        assert headers["retry-after"] == "1"
        for client in held:
            await client.close()
        await asyncio.sleep(scaled(0.3))
        await served(edge.url, edge.key)  # slots are released

    per_tenant = edge.metric("sidecar_limit_hits_total", limit="connections_per_tenant")
    total = edge.metric("sidecar_limit_hits_total", limit="connections_total")
    asyncio.run(run())
    assert edge.metric("sidecar_limit_hits_total", limit="connections_per_tenant") == per_tenant + 1
    assert edge.metric("sidecar_limit_hits_total", limit="connections_total") == total + 1

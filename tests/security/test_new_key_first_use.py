"""F8: a brand-new API key is accepted on its first, concurrent uses.

Before: the cache refresh that an unknown key triggers was skipped when another had run less
than a second earlier (and requests arriving while it ran did not wait for it), so a key used
right after `sidecar keys create` was refused with 401 for about a second.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from sidecar.ledger import db
from sidecar.security.apikeys import ApiKeyStore
from sidecar.security.edge import Edge, EdgeSettings

CONCURRENT = 30


async def ok_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def status_of(gate: Any, key: str) -> int:
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/v1/models",
        "headers": [(b"authorization", f"Bearer {key}".encode())],
        "query_string": b"",
        "client": ("127.0.0.1", 5000),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await gate(scope, receive, send)
    return int(sent[0]["status"])


def test_a_new_key_is_accepted_on_concurrent_first_use(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    db.upgrade(url)
    engine = db.make_engine(url)
    store = ApiKeyStore(engine)

    async def run() -> tuple[list[int], list[int], float]:
        edge = Edge(EdgeSettings(auth=("apikey",), key_refresh=60.0), engine, CollectorRegistry())
        await edge.start()
        gate = edge.gate(ok_app)
        try:
            await edge.refresh()  # a refresh just ran: the next may only start in a second
            key = store.create("acme")[1]  # created after it: unknown to the cache
            started = time.monotonic()
            first = await asyncio.gather(*(status_of(gate, key) for _ in range(CONCURRENT)))
            waited = time.monotonic() - started
            made_up = key[:-4] + "AAAA"
            refused = await asyncio.gather(*(status_of(gate, made_up) for _ in range(3)))
            return list(first), list(refused), waited
        finally:
            await edge.aclose()

    first, refused, waited = asyncio.run(run())
    assert first == [200] * CONCURRENT
    assert waited < 5.0  # one shared read, at most a second after the previous one
    assert refused == [401, 401, 401]  # unknown keys still are refused
    engine.dispose()


def test_unknown_keys_read_the_database_at_most_once_a_second(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    db.upgrade(url)
    engine = db.make_engine(url)

    async def run() -> int:
        edge = Edge(EdgeSettings(auth=("apikey",), key_refresh=60.0), engine, CollectorRegistry())
        assert edge.store is not None
        reads = 0
        snapshot = edge.store.snapshot

        def counted() -> list[tuple[str, str, str, bool]]:
            nonlocal reads
            reads += 1
            return snapshot()

        edge.store.snapshot = counted  # type: ignore[method-assign]
        gate = edge.gate(ok_app)
        key = "sk_sc_0123456789abcdef_" + "x" * 43
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:  # a client spraying made-up keys for 1.5 s
            assert await status_of(gate, key) == 401
        await edge.aclose()
        return reads

    assert asyncio.run(run()) <= 3
    engine.dispose()

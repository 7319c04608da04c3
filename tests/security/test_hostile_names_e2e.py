"""F1 end to end: a 10,000-character or NUL-bearing model name, sent over protocol v1 and over
HTTP to a real `sidecar serve`, must not stop the ledger for everyone else, on SQLite and on a
real PostgreSQL. Before the fix PostgreSQL refused the batch, the writer took that for an
outage and every tenant's rows waited behind it forever; SQLite stored the 10 KB name.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.e2e.ledger import wait_for_rows
from tests.e2e.wsclient import Client, chat
from tests.ledger.conftest import BACKENDS, _new_url
from tests.security.helpers import sample
from tests.support.stack import Stack, running_stack
from tests.unit.test_writer import stream

pytestmark = pytest.mark.e2e

LONG = "m" * 10_000


@pytest.fixture(params=BACKENDS)
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    url = _new_url(request.param, request, tmp_path)
    with running_stack(tmp_path, url) as stack:
        stack.start_sim("--ttft", "0.01", "--tokens-per-second", "500")
        stack.start_serve()
        yield stack


def post(stack: Stack, body: dict[str, Any], tenant: str) -> int:
    request = urllib.request.Request(
        stack.http_url + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "x-sidecar-tenant": tenant},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
        return int(response.status)


async def over_websocket(stack: Stack) -> None:
    client = await Client.connect(stack.ws_url + "?tenant=mallory")
    await client.generate("long", chat(3, model=LONG))
    await client.generate("nul", chat(3, model="evil\x00model"))
    for stream_id in ("long", "nul"):
        assert (await client.read_until_end(stream_id))[-1]["type"] == "done"
    await client.close()


def readyz(stack: Stack) -> dict[str, Any]:
    with urllib.request.urlopen(stack.admin_url + "/readyz", timeout=5) as response:
        return dict(json.load(response))


def test_hostile_model_names_do_not_stop_the_ledger(stack: Stack) -> None:
    asyncio.run(over_websocket(stack))
    assert post(stack, chat(3, model=LONG), "mallory") == 200
    assert post(stack, chat(3, model="nul\x00name"), "mallory") == 200
    for n in range(5):  # everyone else, after the hostile requests
        assert post(stack, chat(3, model="sim-small"), f"tenant-{n}") == 200
    rows = wait_for_rows(stack.db_url, 9)
    models = sorted(r["model"] for r in rows if r["tenant"] == "mallory")
    assert models == sorted(["m" * 127 + "…", "m" * 127 + "…", "evilmodel", "nulname"])
    assert sorted(r["tenant"] for r in rows if r["tenant"] != "mallory") == [
        f"tenant-{n}" for n in range(5)
    ]
    assert readyz(stack)["status"] == "ready"  # nothing spooled, nothing set aside
    text = stack.metrics_text()
    assert sample(text, "sidecar_ledger_spooled_rows") == 0
    # The label is the ledger's name, bounded the same way (not the 10 KB the client sent).
    assert LONG not in text and "\x00" not in text


@pytest.fixture(params=BACKENDS)
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _new_url(request.param, request, tmp_path)


def test_a_restart_replays_a_spool_with_a_refused_row(ledger_url: str, tmp_path: Path) -> None:
    """A previous run spooled 50 rows and one the database refuses (here: no model at all)."""
    good = [{**stream(n), "instance_id": "edge-1"} for n in range(50)]
    bad = {**stream(999), "instance_id": "edge-1", "model": None}
    lines = [{"t": "streams", "f": True, "v": v} for v in [*good[:25], bad, *good[25:]]]
    spool = tmp_path / "sidecar-spool-edge-1.jsonl"
    spool.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    with running_stack(tmp_path, ledger_url) as stack:
        stack.start_sim()
        stack.start_serve("--instance-id", "edge-1")
        rows = wait_for_rows(stack.db_url, 50)
        assert sorted(r["id"] for r in rows) == sorted(f"s{n}" for n in range(50))
        assert not spool.exists()
        dead = (tmp_path / "sidecar-spool-edge-1.dead-letter.jsonl").read_bytes().splitlines()
        assert [orjson.loads(line)["v"]["id"] for line in dead] == ["s999"]
        assert readyz(stack) == {"status": "degraded", "reason": "ledger_dead_letters"}
        text = stack.metrics_text()
        assert sample(text, "sidecar_ledger_dead_letter_rows_total") == 1

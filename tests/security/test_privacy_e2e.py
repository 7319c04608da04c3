"""Privacy by default: after a run, neither the prompt text nor any key is in the ledger, the
span export (console exporter, captured from the process output) or the logs."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from sidecar.ledger import db
from sidecar.security.apikeys import PREFIX, ApiKeyStore, key_id_of
from tests.e2e.wsclient import Client, chat
from tests.security.helpers import refused, rows_until
from tests.support.stack import running_stack
from tests.support.timeouts import scaled

pytestmark = pytest.mark.e2e

PROMPT = "PURPLE-ELEPHANT-7731 my medical history is"
UPSTREAM_KEY = "upstream-key-ZQ81-never-shown"


def test_no_prompt_and_no_key_in_ledger_spans_or_logs(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        key = ApiKeyStore(db.make_engine(stack.db_url)).create("private")[1]
        stack.start_sim("--ttft", "0.01", "--tokens-per-second", "400")
        serve = stack.start_serve(
            "--auth", "apikey", "--trace-console", "--upstream-api-key", UPSTREAM_KEY
        )

        async def run() -> None:
            # The key in the query string and as a subprotocol: the likeliest places to leak.
            client = await Client.connect(f"{stack.ws_url}?token={key}")
            await client.generate("p1", chat(3, text=PROMPT))
            assert (await client.read_until_end("p1"))[-1]["type"] == "done"
            await client.send(json.dumps({"type": "generate", "id": "bad", "body": PROMPT}))
            assert (await client.next("bad"))["type"] == "error"
            await client.close()
            client = await Client.connect(
                stack.ws_url, subprotocols=["sidecar.v1", f"bearer.{key}"]
            )
            await client.generate("p2", chat(3, text=PROMPT))
            await client.read_until_end("p2")
            await client.close()
            await refused(stack.ws_url + "?token=" + key[:-3] + "abc")  # a near-miss key

        asyncio.run(run())
        request = urllib.request.Request(
            f"{stack.http_url}/v1/chat/completions?api_key={key}",
            json.dumps(chat(3, text=PROMPT)).encode(),
            {"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=scaled(5)) as response:
            assert json.load(response)["choices"][0]["message"]["content"]
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(
                urllib.request.Request(
                    f"{stack.http_url}/v1/chat/completions",
                    json.dumps(chat(3, text=PROMPT)).encode(),
                    {"authorization": f"Bearer {UPSTREAM_KEY}"},  # the wrong key, echoed nowhere
                ),
                timeout=scaled(5),
            )
        rows = rows_until(stack.db_url, lambda rows: len(rows) >= 3)
        assert {r["tenant"] for r in rows} == {"private"}
        serve.stop()  # flushes the span processor

        output = serve.output()
        assert "gen_ai.request.model" in output, "spans were exported"  # not a vacuous search
        artifacts = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
        artifacts.pop("simulate.log", None)  # the upstream legitimately receives its key
        assert "ledger.db" in artifacts and "serve.log" in artifacts
        needles = {"prompt": PROMPT, "short prompt": "PURPLE-ELEPHANT", "api key": key,
                   "key secret": _secret_of(key), "upstream key": UPSTREAM_KEY}  # fmt: skip
        for name, data in artifacts.items():
            text = data.decode("latin-1")
            for what, needle in needles.items():
                assert needle not in text, f"{what} found in {name}"


def _secret_of(key: str) -> str:
    """`sk_sc_<id>_<secret>`; the secret may itself contain `_` (URL-safe base64)."""
    key_id = key_id_of(key)
    assert key_id is not None
    secret = key.removeprefix(f"{PREFIX}{key_id}_")
    assert len(secret) >= 40, secret
    return secret

"""Every route through a real sidecar with its official client, against the simulator's exact
token counts: Responses and embeddings and the model list with `openai`, Messages with
`anthropic`; streams cut short; and protocol v1 `generate` naming the Responses and Messages
routes. One stack serves the module (processes are slow to start on a 2-core machine)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from sidecar.ledger import db
from tests.e2e.ledger import stream_rows
from tests.e2e.wsclient import Client
from tests.support.stack import Stack, running_stack, sidecar_cmd
from tests.support.timeouts import scaled

MODEL = "sim-small"
PRICES = """
[[price]]
model = "sim-small"
input_per_mtok = "0.20"
output_per_mtok = "0.60"
effective_from = 2026-01-01

[[price]]
model = "sim-embed"
input_per_mtok = "0.02"
output_per_mtok = "0"
effective_from = 2026-01-01
"""
NUSD_PER_TOKEN = {"sim-small": (200, 600), "sim-embed": (20, 0)}  # input, output


def tokens(text: str) -> int:
    """The simulator's prompt count: characters / 4, rounded, at least 1."""
    return max(1, round(len(text) / 4))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("routes")
    (tmp / "prices.toml").write_text(PRICES)
    with running_stack(tmp) as stack:
        stack.start_sim("--ttft", "0.02", "--tokens-per-second", "200")
        stack.start_serve("--prices", str(tmp / "prices.toml"), "--heartbeat-interval", "5")
        yield stack


def row_for(stack: Stack, path: str, seen: set[str], timeout: float = 10.0) -> dict[str, Any]:
    """The one finished ledger row of `path` not in `seen` (rows are written in batches)."""
    deadline = time.monotonic() + scaled(timeout)
    while True:
        rows = [
            r
            for r in stream_rows(stack.db_url)
            if r["path"] == path and r["outcome"] is not None and r["id"] not in seen
        ]
        if rows or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(rows) == 1, rows
    seen.add(rows[0]["id"])
    return rows[0]


def upstream_of(stack: Stack, row: dict[str, Any]) -> dict[str, Any]:
    """What the simulator did for this row's request, once it has ended."""
    deadline = time.monotonic() + scaled(5)
    while True:
        upstream: dict[str, Any] = stack.sim_stats()["by_request"][row["id"]]
        if upstream["outcome"] != "active" or time.monotonic() > deadline:
            return upstream
        time.sleep(0.05)


def assert_priced(row: dict[str, Any]) -> None:
    price_in, price_out = NUSD_PER_TOKEN[row["model"]]
    assert row["prompt_cost_nusd"] == row["prompt_tokens"] * price_in
    assert row["generated_cost_nusd"] == row["generated_tokens"] * price_out
    assert row["wasted_cost_nusd"] == row["wasted_tokens"] * price_out


def assert_exact(stack: Stack, row: dict[str, Any], prompt: int, generated: int) -> None:
    """A completed stream: the ledger has what the simulator says it generated."""
    assert row["outcome"] == "completed" and row["ingress"] == "http"
    assert row["count_source"] == "usage"
    assert (row["prompt_tokens"], row["generated_tokens"]) == (prompt, generated)
    assert row["delivered_tokens"] == generated and row["wasted_tokens"] == 0
    upstream = upstream_of(stack, row)  # the sidecar sends its stream id as X-Request-Id
    assert (upstream["prompt_tokens"], upstream["generated"]) == (prompt, generated)
    assert upstream["outcome"] == "completed"
    assert_priced(row)


def assert_cut(stack: Stack, row: dict[str, Any], cap: int) -> None:
    """A stream its client left: the upstream was stopped; what it generated is on the row
    (but for the one token that may be on the wire while the upstream is closed)."""
    assert row["outcome"] == "client_gone" and row["count_source"] == "counted"
    assert 3 <= row["generated_tokens"] < cap
    assert row["delivered_tokens"] <= row["generated_tokens"]
    assert row["wasted_tokens"] == row["generated_tokens"] - row["delivered_tokens"]
    upstream = upstream_of(stack, row)
    assert upstream["outcome"] == "aborted"
    assert upstream["generated"] - row["generated_tokens"] in (0, 1)
    assert_priced(row)


def test_responses_with_the_openai_client(stack: Stack) -> None:
    seen = {r["id"] for r in stream_rows(stack.db_url)}
    via = openai.OpenAI(base_url=stack.http_url + "/v1", api_key="x", max_retries=0)
    direct = openai.OpenAI(base_url=stack.sim_url + "/v1", api_key="x", max_retries=0)
    prompt = "Tell me about the sidecar"

    events = list(via.responses.create(model=MODEL, input=prompt, max_output_tokens=9, stream=True))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    last = events[-1]
    assert last.type == "response.completed" and last.response.usage is not None
    assert last.response.usage.output_tokens == 9 and last.response.output_text == text
    assert [e.sequence_number for e in events] == list(range(len(events)))  # nothing dropped
    assert_exact(stack, row_for(stack, "/v1/responses", seen), tokens(prompt), 9)

    whole = via.responses.create(model=MODEL, input=prompt, max_output_tokens=5)
    assert whole.status == "completed" and whole.output_text == text[: len(whole.output_text)]
    assert whole.usage is not None and whole.usage.output_tokens == 5
    assert whole.usage.input_tokens == tokens(prompt)
    assert_exact(stack, row_for(stack, "/v1/responses", seen), tokens(prompt), 5)
    expected = direct.responses.create(model=MODEL, input=prompt, max_output_tokens=5)
    assert whole.output_text == expected.output_text  # as the model server answers it

    # Cut off after three deltas: the upstream is stopped, the row says what it generated.
    stream = via.responses.create(model=MODEL, input=prompt, max_output_tokens=4000, stream=True)
    deltas = 0
    for event in stream:
        deltas += event.type == "response.output_text.delta"
        if deltas == 3:
            break
    stream.close()
    assert_cut(stack, row_for(stack, "/v1/responses", seen), 4000)
    via.close()
    direct.close()


def test_messages_with_the_anthropic_client(stack: Stack) -> None:
    seen = {r["id"] for r in stream_rows(stack.db_url)}
    client = anthropic.Anthropic(base_url=stack.http_url, api_key="x", max_retries=0)
    system, prompt = "Be brief.", "What does the sidecar count?"
    messages: Any = [{"role": "user", "content": prompt}]
    expected_prompt = tokens(system + prompt)

    with client.messages.stream(
        model=MODEL, max_tokens=7, system=system, messages=messages
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert final.usage.input_tokens == expected_prompt and final.usage.output_tokens == 7
    assert final.stop_reason == "max_tokens" and final.content[0].text == text  # type: ignore[union-attr]
    row = row_for(stack, "/v1/messages", seen)
    assert_exact(stack, row, expected_prompt, 7)
    assert row["finish_reason"] == "length"

    whole = client.messages.create(model=MODEL, max_tokens=4, system=system, messages=messages)
    assert whole.type == "message" and whole.usage.output_tokens == 4
    assert whole.content[0].text == text[: len(whole.content[0].text)]  # type: ignore[union-attr]
    assert_exact(stack, row_for(stack, "/v1/messages", seen), expected_prompt, 4)

    with client.messages.stream(model=MODEL, max_tokens=4000, messages=messages) as stream:
        for i, _ in enumerate(stream.text_stream):
            if i == 2:
                break
    assert_cut(stack, row_for(stack, "/v1/messages", seen), 4000)
    client.close()


def test_embeddings_are_one_row_of_input_tokens(stack: Stack) -> None:
    seen = {r["id"] for r in stream_rows(stack.db_url)}
    client = openai.OpenAI(base_url=stack.http_url + "/v1", api_key="x", max_retries=0)
    inputs = ["the first text to embed", "a second, longer text to embed here", "x"]
    answer = client.embeddings.create(model="sim-embed", input=inputs, dimensions=8)
    assert [len(d.embedding) for d in answer.data] == [8, 8, 8]
    expected = sum(tokens(text) for text in inputs)
    assert answer.usage.prompt_tokens == expected
    row = row_for(stack, "/v1/embeddings", seen)
    assert row["outcome"] == "completed" and row["count_source"] == "usage"
    assert (row["prompt_tokens"], row["generated_tokens"], row["wasted_tokens"]) == (
        expected,
        0,
        0,
    )
    assert row["prompt_cost_nusd"] == expected * 20 and row["generated_cost_nusd"] == 0
    direct = openai.OpenAI(base_url=stack.sim_url + "/v1", api_key="x", max_retries=0)
    same = direct.embeddings.create(model="sim-embed", input=inputs, dimensions=8)
    assert [d.embedding for d in same.data] == [d.embedding for d in answer.data]
    client.close()
    direct.close()


def test_models_and_other_routes_pass_through_unaccounted(stack: Stack) -> None:
    before = len(stream_rows(stack.db_url))
    client = openai.OpenAI(base_url=stack.http_url + "/v1", api_key="x", max_retries=0)
    assert [m.id for m in client.models.list()] == [MODEL]
    with pytest.raises(openai.NotFoundError):
        client.files.list()  # the simulator serves no files: its 404 comes through as it is
    client.close()
    metrics = stack.metrics_text()
    assert 'sidecar_unaccounted_requests_total{route="/v1/models"} 1.0' in metrics
    assert 'sidecar_unaccounted_requests_total{route="/v1/files"} 1.0' in metrics
    assert len(stream_rows(stack.db_url)) == before  # no ledger row for either


def test_passthrough_routes_limits_what_reaches_the_model_server_with_its_key(
    stack: Stack, tmp_path: Path
) -> None:
    """`--passthrough-routes models,other`: the model list and unknown paths pass; files (even
    a 5 MB upload, refused before its body is read) get 403 `route_not_allowed`, counted;
    accounted routes are not affected."""
    db_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    db.upgrade(db_url)
    limited = Stack(tmp_path, db_url, sim_port=stack.sim_port)
    try:
        limited.start_serve("--passthrough-routes", "models,other")
        client = openai.OpenAI(base_url=limited.http_url + "/v1", api_key="x", max_retries=0)
        assert [m.id for m in client.models.list()] == [MODEL]
        with pytest.raises(openai.PermissionDeniedError) as refused:
            client.files.list()
        assert refused.value.type == "route_not_allowed"
        assert "does not pass /v1/files requests" in refused.value.message
        started = time.monotonic()
        with pytest.raises(openai.PermissionDeniedError):
            client.files.create(file=("big.jsonl", b"x" * 5_000_000), purpose="batch")
        assert time.monotonic() - started < scaled(5)
        with pytest.raises(openai.NotFoundError):  # passed: the simulator's own 404
            client.get("/no-such-family", cast_to=object)
        chat = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=3
        )
        assert chat.usage is not None and chat.usage.completion_tokens == 3
        client.close()
        metrics = limited.metrics_text()
        assert 'sidecar_passthrough_refused_requests_total{route="/v1/files"} 2.0' in metrics
        assert 'sidecar_unaccounted_requests_total{route="/v1/models"} 1.0' in metrics
        assert 'sidecar_unaccounted_requests_total{route="other"} 1.0' in metrics
        assert 'sidecar_unaccounted_requests_total{route="/v1/files"}' not in metrics
    finally:
        limited.stop_all()


def test_a_bad_passthrough_routes_value_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        sidecar_cmd("serve", "--passthrough-routes", "models,fils"),
        capture_output=True,
        text=True,
        timeout=scaled(30),
        check=False,
    )
    assert result.returncode == 2
    assert "fils is not an API family" in result.stderr
    assert "Traceback" not in result.stderr


def test_protocol_v1_generate_names_responses_and_messages(stack: Stack) -> None:
    seen = {r["id"] for r in stream_rows(stack.db_url)}
    bodies = {
        "/v1/responses": {"model": MODEL, "input": "Hello there", "max_output_tokens": 6},
        "/v1/messages": {
            "model": MODEL,
            "max_tokens": 6,
            "messages": [{"role": "user", "content": "Hello there"}],
        },
    }

    async def run() -> dict[str, list[dict[str, Any]]]:
        client = await Client.connect(stack.ws_url)
        frames: dict[str, list[dict[str, Any]]] = {}
        for path, body in bodies.items():
            await client.send({"type": "generate", "id": path, "path": path, "body": body})
            frames[path] = await client.read_until_end(path)
        # Leave a long Messages answer after acknowledging three deltas: three delivered.
        body = {**bodies["/v1/messages"], "max_tokens": 4000}
        await client.send({"type": "generate", "id": "cut", "path": "/v1/messages", "body": body})
        deltas = 0
        while deltas < 3:
            deltas += (await client.next("cut"))["type"] == "delta"
        await client.send({"type": "ack", "id": "cut", "seq": 3})
        await asyncio.sleep(0.2)  # deltas keep arriving, unread
        client.abort()
        return frames

    frames = asyncio.run(run())
    for path in bodies:
        deltas = [f for f in frames[path] if f["type"] == "delta"]
        assert [f["seq"] for f in deltas] == list(range(1, 7)), path
        assert frames[path][-1]["type"] == "done", path
        assert frames[path][-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 6}, path
        row = row_for(stack, path, seen)
        assert row["ingress"] == "ws" and row["outcome"] == "completed"
        assert (row["prompt_tokens"], row["generated_tokens"]) == (3, 6)
    cut = row_for(stack, "/v1/messages", seen)
    assert cut["ingress"] == "ws" and cut["outcome"] == "client_gone"
    assert cut["delivered_tokens"] == 3 and cut["wasted_tokens"] == cut["generated_tokens"] - 3
    assert cut["wasted_tokens"] > 0
    assert upstream_of(stack, cut)["outcome"] == "aborted"


def test_report_splits_by_route(stack: Stack) -> None:
    report = subprocess.run(
        sidecar_cmd("report", "--db", stack.db_url, "--by", "route", "--format", "json"),
        capture_output=True,
        check=True,
        cwd=stack.tmp,
        timeout=scaled(30),
    )
    rows = {r["route"]: r for r in json.loads(report.stdout)["rows"]}
    assert set(rows) <= {"/v1/responses", "/v1/messages", "/v1/embeddings"}
    assert rows  # whichever route tests ran before this one in the module
    total = sum(r["streams"] for r in rows.values())
    assert total == len([r for r in stream_rows(stack.db_url) if r["outcome"] is not None])


def test_unknown_paths_outside_v1_are_not_found(stack: Stack) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(stack.http_url + "/admin/secret", timeout=5)
    assert refused.value.code == 404
    refused.value.close()


def test_failures_mid_stream_reach_each_client_in_its_own_shape(stack: Stack) -> None:
    seen = {r["id"] for r in stream_rows(stack.db_url)}
    fault = {"sim_fault": {"error_after_tokens": 2}}
    anthropic_client = anthropic.Anthropic(base_url=stack.http_url, api_key="x", max_retries=0)
    messages: Any = [{"role": "user", "content": "Hi"}]
    texts = []
    stream = anthropic_client.messages.stream(
        model=MODEL, max_tokens=50, messages=messages, extra_body=fault
    )
    with pytest.raises(anthropic.APIStatusError, match="mid-stream"), stream as events:
        texts.extend(events.text_stream)
    assert len(texts) == 2  # the deltas before the error reached the client
    row = row_for(stack, "/v1/messages", seen)
    assert row["outcome"] == "upstream_error" and row["error_code"] == "upstream_error"
    assert row["generated_tokens"] == 2
    anthropic_client.close()

    openai_client = openai.OpenAI(base_url=stack.http_url + "/v1", api_key="x", max_retries=0)
    events = list(
        openai_client.responses.create(
            model=MODEL, input="Hi", max_output_tokens=50, stream=True, extra_body=fault
        )
    )
    assert events[-1].type == "error" and "mid-stream" in events[-1].message
    assert events[-1].sequence_number == events[-2].sequence_number + 1
    row = row_for(stack, "/v1/responses", seen)
    assert row["outcome"] == "upstream_error" and row["generated_tokens"] == 2
    with pytest.raises(openai.InternalServerError):
        openai_client.responses.create(
            model=MODEL, input="Hi", max_output_tokens=50, extra_body=fault
        )
    assert row_for(stack, "/v1/responses", seen)["outcome"] == "upstream_error"
    openai_client.close()

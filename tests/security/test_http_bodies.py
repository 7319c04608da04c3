"""Arbitrary JSON bodies on every accounted HTTP route never become an internal error.

Each route's own keys (model, messages, input, prompt, max_tokens, stream, n, tools, ...) with
values of any JSON type and shape, sent through the sidecar's app in this process to the
simulator: every answer is a client error (4xx), the model server's answer passed on, or a
relayed stream; never a 500, never an exception out of the app, and the internal-error counter
stays at zero. The defects users found last were on such paths (a list where a string was
expected)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sidecar.ingress.app import ClientApp
from sidecar.ledger.writer import Row
from sidecar.upstream.routes import ROUTES
from tests.unit.sim_server import simulator
from tests.unit.test_realtime_session import context

KEYS = (
    "model", "messages", "input", "prompt", "system", "max_tokens", "max_completion_tokens",
    "max_output_tokens", "stream", "stream_options", "n", "best_of", "tools", "user",
    "encoding_format", "dimensions", "instructions", "temperature",
)  # fmt: skip
# Smaller than test_properties' json_values: 40 bodies a batch must stay within hypothesis's
# data budget.
values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)
messages = st.lists(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "x"]), "content": values}),
    max_size=3,
)
bodies = st.dictionaries(st.sampled_from(KEYS), values, max_size=7) | st.fixed_dictionaries(
    {"model": st.just("m"), "messages": messages, "input": values, "prompt": values},
    optional={key: values for key in ("max_tokens", "stream", "n", "stream_options", "tools")},
)
requests = st.lists(st.tuples(st.sampled_from(sorted(ROUTES)), bodies), min_size=40, max_size=40)


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(requests)
def test_any_json_body_on_any_route_is_answered_without_an_internal_error(
    batch: list[tuple[str, dict[str, Any]]],
) -> None:
    rows: list[Row] = []

    async def run() -> tuple[list[int], float]:  # the 40 requests at once
        # Answers of at most 6 tokens: a huge max_tokens is a long answer, not a defect.
        async with simulator(ttft=0.0, tokens_per_second=5000.0, output_tokens="6") as sim:
            ctx = context(sim.url, InMemorySpanExporter(), rows)
            await ctx.upstream.start()
            app = ClientApp(ctx)
            answers = [_post(app, path, body) for path, body in batch]
            statuses = await asyncio.wait_for(asyncio.gather(*answers), 20)
            await ctx.upstream.close()
            return statuses, ctx.metrics.internal_errors._value.get()

    statuses, internal_errors = asyncio.run(run())
    assert internal_errors == 0
    assert all(status != 500 for status in statuses), list(zip(statuses, batch, strict=True))


async def _post(app: ClientApp, path: str, body: dict[str, Any]) -> int:
    pending = [{"type": "http.request", "body": json.dumps(body).encode()}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop()
        await asyncio.sleep(3600)  # the client stays until the answer ends
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(b"content-type", b"application/json")],
        "query_string": b"",
    }
    await app(scope, receive, send)
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert len(starts) == 1, sent[:3]
    return int(starts[0]["status"])

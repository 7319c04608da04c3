"""F4 and F6 as pure logic: every field that multiplies output counts against
`--max-tokens-limit`, and the daily budget reserves at admission and settles at the end."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from sidecar.security.edge import Edge, EdgeSettings
from sidecar.security.limits import DailyBudget, Refusal
from sidecar.security.output import Output, cap_output, prompt_estimate, requested_output

DAY = 86400.0 * 20000


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, Output(None, 1)),
        ({"max_tokens": 10}, Output(10, 1)),
        ({"max_completion_tokens": 30, "max_tokens": 10}, Output(30, 1)),
        ({"max_output_tokens": 7, "input": "hi"}, Output(7, 1)),
        ({"max_tokens": 10, "n": 4}, Output(10, 4)),
        ({"max_tokens": 10, "n": 2, "best_of": 5}, Output(10, 5)),
        ({"max_tokens": 10, "prompt": ["a", "b", "c"]}, Output(10, 3)),
        ({"max_tokens": 10, "prompt": [[1, 2], [3]], "n": 2}, Output(10, 4)),
        ({"max_tokens": 10, "prompt": [1, 2, 3]}, Output(10, 1)),  # one tokenised prompt
        ({"max_tokens": 10, "prompt": "one"}, Output(10, 1)),
        ({"max_tokens": None, "n": None}, Output(None, 1)),
    ],
)
def test_requested_output(body: dict[str, Any], expected: Output) -> None:
    assert requested_output(body) == expected


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"n": 0}, "invalid_request"),
        ({"best_of": "3"}, "invalid_request"),
        ({"max_output_tokens": -1}, "invalid_max_tokens"),
        ({"max_tokens": True}, "invalid_max_tokens"),
    ],
)
def test_invalid_fields_are_refused(body: dict[str, Any], code: str) -> None:
    refused = requested_output(body)
    assert isinstance(refused, Refusal) and refused.code == code and refused.status == 400


@pytest.mark.parametrize(
    "body",
    [
        {"max_tokens": 100, "n": 2},
        {"max_tokens": 100, "best_of": 2},
        {"max_tokens": 60, "prompt": ["a", "b"]},
        {"max_completion_tokens": 101},
        {"max_output_tokens": 101, "input": "x"},
        {"n": 101},
        {"prompt": ["p"] * 101},
    ],
)
def test_multiplied_output_beyond_the_limit_is_refused(body: dict[str, Any]) -> None:
    refused = cap_output(body, 100)
    assert isinstance(refused, Refusal) and refused.code == "max_tokens_exceeded"


def test_an_unset_maximum_shares_the_limit_across_choices_and_prompts() -> None:
    assert cap_output({"messages": [], "n": 4}, 100) == (
        {"messages": [], "n": 4, "max_tokens": 25},
        100,
    )
    assert cap_output({"prompt": ["a", "b", "c"]}, 100) == (
        {"prompt": ["a", "b", "c"], "max_tokens": 33},
        99,
    )
    assert cap_output({"input": "hi"}, 100) == ({"input": "hi", "max_output_tokens": 100}, 100)
    assert cap_output({"max_tokens": 10, "n": 10}, 100) == ({"max_tokens": 10, "n": 10}, 100)
    # No limit: nothing changes, and the output is known only when the request sets it.
    assert cap_output({"max_tokens": 10, "n": 3}, 0) == ({"max_tokens": 10, "n": 3}, 30)
    assert cap_output({"n": "bad"}, 0) == ({"n": "bad"}, None)


def test_prompt_estimate() -> None:
    chat = {"messages": [{"role": "user", "content": "x" * 40}, {"content": [{"text": "y" * 8}]}]}
    assert prompt_estimate(chat, 4.0) == 12
    assert prompt_estimate({"prompt": ["a" * 8, "b" * 8]}, 4.0) == 4
    assert prompt_estimate({"prompt": [1, 2, 3, 4, 5]}, 4.0) == 5
    assert prompt_estimate({"input": [{"content": "z" * 20}]}, 4.0) == 5
    assert prompt_estimate({"messages": None, "model": "m" * 100}, 4.0) == 0


def test_reservations_bound_concurrent_admissions() -> None:
    budget = DailyBudget(1000)
    admitted = []
    for n in range(60):  # 60 streams arrive before any ends
        if budget.allows("t", DAY):
            budget.reserve(f"s{n}", "t", 103)
            admitted.append(f"s{n}")
    assert len(admitted) == 10  # 10 × 103 ≥ 1000
    assert budget.remaining("t", DAY) == 0 and budget.allows("u", DAY)
    for stream in admitted:
        budget.settle(stream, "t", 50, DAY)  # each really cost 50
    assert budget.reserved == {} and budget.holds == {}
    assert budget.spent == {"t": 500} and budget.allows("t", DAY)
    budget.settle("never-reserved", "t", 10, DAY)  # a charge without a reservation
    assert budget.spent == {"t": 510}


def test_reservations_outlive_the_day_they_were_made_on() -> None:
    budget = DailyBudget(100)
    budget.reserve("s1", "t", 90)
    assert budget.allows("t", DAY) and budget.remaining("t", DAY) == 10
    budget.settle("s1", "t", 40, DAY + 86400)  # ended after midnight: charged to the new day
    assert budget.spent == {"t": 40} and budget.reserved == {}


def test_edge_reserves_and_settles() -> None:
    registry = CollectorRegistry()
    edge = Edge(EdgeSettings(max_tokens_limit=100, tenant_daily_token_budget=1000), None, registry)
    body = {"messages": [{"role": "user", "content": "hello there"}]}  # 11 chars: 3 tokens
    results = [edge.admit(body, "t", DAY, stream=f"s{n}") for n in range(60)]
    admitted = [r for r in results if not isinstance(r, Refusal)]
    assert len(admitted) == 10 and admitted[0]["max_tokens"] == 100
    assert edge.budget.reserved == {"t": 1030}
    assert registry.get_sample_value("sidecar_limit_hits_total", {"limit": "daily_budget"}) == 50
    for n in range(10):
        edge.charge("t", 3, 7, DAY, stream=f"s{n}")
    assert edge.budget.reserved == {} and edge.budget.spent == {"t": 100}
    # Without `stream` nothing is reserved (callers that only charge at the end).
    assert not isinstance(edge.admit(body, "u", DAY), Refusal) and "u" not in edge.budget.reserved


def test_requests_that_generate_nothing_reserve_their_prompt_only() -> None:
    edge = Edge(EdgeSettings(max_tokens_limit=100, tenant_daily_token_budget=1000), None, None)
    embed = {"model": "e", "input": ["12345678", "abcd"]}  # 12 characters: 3 tokens
    assert edge.admit(embed, "t", DAY, stream="e1", generates=False) == embed  # no cap added
    assert edge.budget.reserved == {"t": 3}
    # The Anthropic Messages API's `max_tokens` and its `system` text are what a stream costs.
    messages = {"system": "abcdefgh", "messages": [{"role": "user", "content": "abcd"}]}
    assert edge.admit({**messages, "max_tokens": 50}, "t", DAY, stream="m1") is not None
    assert edge.budget.reserved == {"t": 3 + 3 + 50}

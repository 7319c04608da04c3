"""Backoff with full jitter and the client's message budget (pure)."""

from __future__ import annotations

import pytest

from sidecar.client.policy import Backoff, MessageBudget


def test_full_jitter_is_uniform_below_an_exponential_ceiling() -> None:
    backoff = Backoff(base=0.25, cap=8.0)
    assert [backoff.delay(n, 0.999999) for n in range(7)] == pytest.approx(
        [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0], rel=1e-5
    )
    assert backoff.delay(3, 0.0) == 0.0
    assert backoff.delay(2, 0.5) == 0.5
    assert backoff.delay(10**6, 0.5) == 4.0  # no overflow, capped


def test_budget_lets_acks_wait_and_control_messages_go() -> None:
    budget = MessageBudget(per_second=2, now=0.0)
    assert [budget.try_take(0.0) for _ in range(3)] == [True, True, False]
    budget.spend(0.0)  # a control message goes even with no token left
    assert not budget.try_take(0.4)
    assert budget.try_take(0.5)  # refilled at 2 per second
    assert not budget.try_take(0.5)


def test_budget_zero_means_unlimited() -> None:
    budget = MessageBudget(per_second=0, now=0.0)
    assert all(budget.try_take(0.0) for _ in range(1000))

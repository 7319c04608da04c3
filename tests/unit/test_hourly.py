"""GPU-hour allocation (docs/accounting.md, "Self-hosted servers"): exact arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction

import pytest

from sidecar.accounting.hourly import HourlyBook, HourlyPrice, Usage, allocate


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, 22, hour, minute, tzinfo=UTC)


GPU = HourlyPrice(
    scope="instance",
    target="gpu-1",
    usd_per_hour=Decimal("3.60"),
    effective_from=at(0),
    capacity_tokens_per_hour=36_000,
    prompt_weight=Decimal("0.25"),
)


def usage(group: str, hour: int, prompt: int, generated: int, wasted: int, **kw: str) -> Usage:
    return Usage(
        group=(group,),
        instance=kw.get("instance", "gpu-1"),
        model=kw.get("model", "llama"),
        hour=at(hour),
        streams=1,
        prompt_tokens=prompt,
        generated_tokens=generated,
        wasted_tokens=wasted,
    )


# The worked example of docs/accounting.md.
EXAMPLE = [
    usage("A", 10, 4_000, 2_000, 500),  # weight 4,000 × 0.25 + 2,000 = 3,000
    usage("B", 10, 8_000, 7_000, 0),  # weight 9,000
    usage("C", 12, 40_000, 30_000, 10_000),  # weight 40,000: more than the capacity
]


def test_the_documented_example() -> None:
    result = allocate(HourlyBook([GPU]), EXAMPLE, at(10), at(13))
    a, b, c = (result.shares[(name,)] for name in "ABC")
    # 10:00: 12,000 of 36,000 used; $3.60 / 36,000 = $0.0001 per weighted token
    assert (a.cost, a.wasted_cost) == (Fraction("0.30"), Fraction("0.05"))
    assert (b.cost, b.wasted_cost) == (Fraction("0.90"), 0)
    # 12:00: over capacity, so the hour is shared by use: $3.60 / 40,000 = $0.00009
    assert (c.cost, c.wasted_cost) == (Fraction("3.60"), Fraction("0.90"))
    assert [(i.hour, i.cost) for i in result.idle] == [
        (at(10), Fraction("2.40")),  # the capacity nobody used
        (at(11), Fraction("3.60")),  # an hour without a stream
    ]
    total = a.cost + b.cost + c.cost + sum(i.cost for i in result.idle)
    assert total == Fraction("10.80")  # three hours at $3.60: every dollar is accounted


def test_a_period_that_ends_mid_hour_pays_for_part_of_it() -> None:
    result = allocate(HourlyBook([GPU]), EXAMPLE[2:], at(12), at(12, 30))
    assert result.shares[("C",)].cost == Fraction("1.80")
    assert result.idle == []


def test_without_capacity_the_hour_is_shared_by_use_exactly() -> None:
    pool = HourlyPrice("model", "llama", Decimal(1), at(0))
    usages = [usage("x", 10, 0, 1, 0, instance="other"), usage("y", 10, 0, 2, 1, instance="o")]
    result = allocate(HourlyBook([pool]), usages, at(10), at(11))
    assert result.shares[("x",)].cost == Fraction(1, 3)
    assert result.shares[("y",)].cost == Fraction(2, 3)
    assert result.shares[("y",)].wasted_cost == Fraction(1, 3)
    assert result.idle == []


def test_the_replica_price_wins_over_the_model_price_and_others_stay_unpriced() -> None:
    pool = HourlyPrice("model", "llama", Decimal(1), at(0))
    usages = [
        usage("replica", 10, 0, 100, 0),
        usage("fleet", 10, 0, 100, 0, instance="gpu-2"),
        usage("nobody", 10, 0, 100, 0, instance="gpu-9", model="other"),
    ]
    result = allocate(HourlyBook([GPU, pool]), usages, at(10), at(11))
    assert result.shares[("replica",)].cost == Fraction("0.01")  # 100 × $0.0001
    assert result.shares[("fleet",)].cost == 1
    assert ("nobody",) not in result.shares


def test_a_new_hourly_price_applies_from_its_hour() -> None:
    cheaper = HourlyPrice("instance", "gpu-1", Decimal("1.80"), at(11), 36_000, Decimal("0.25"))
    result = allocate(HourlyBook([GPU, cheaper]), [], at(10), at(12))
    assert [i.cost for i in result.idle] == [Fraction("3.60"), Fraction("1.80")]


def test_an_unbounded_period_is_refused() -> None:
    old = HourlyPrice("model", "m", Decimal(1), datetime(1970, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="hours of"):
        allocate(HourlyBook([old]), [], old.effective_from, at(0))

"""GPU-hour cost for self-hosted model servers: who used the hours that were paid for.

A self-hosted server costs money per hour whether or not anyone streams from it. An hourly
price names a pool — one model-server replica (the `instance` of the sidecar beside it) or every
replica serving a `model` — with its cost per hour and, optionally, its capacity in weighted
tokens per hour. The rule, per pool and UTC clock hour (clipped to the report's period):

* a stream's weight is `prompt_tokens × prompt_weight + generated_tokens` (prompt tokens are
  prefilled in batches, far cheaper per token than decoding; `prompt_weight` says how much);
* the hour's cost `C` is shared at `rate = C / max(capacity, used)` per weighted token, where
  `used` is the weight of the streams that started in that hour (without a capacity:
  `rate = C / used`): each stream pays `weight × rate`, and its wasted tokens `wasted × rate`;
* what nobody used, `C − used × rate`, is idle capacity, reported as its own line.

A stream counts in the instance pool when its instance has an hourly price in force, else in
its model's pool. Pure arithmetic on `Fraction`s: exact, rounded only for display.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Final, Literal

HOUR: Final = timedelta(hours=1)
MAX_HOURS: Final = 24 * 366 * 3  # per pool in one report: an unbounded period is a mistake

Scope = Literal["instance", "model"]
Pool = tuple[Scope, str]


@dataclass(frozen=True, slots=True)
class HourlyPrice:
    scope: Scope
    target: str  # an instance id or a model name
    usd_per_hour: Decimal
    effective_from: datetime  # on a whole UTC hour
    capacity_tokens_per_hour: int | None = None
    prompt_weight: Decimal = Decimal(1)

    @property
    def pool(self) -> Pool:
        return (self.scope, self.target)

    @property
    def key(self) -> str:
        return f"{self.scope}:{self.target}@{self.effective_from.isoformat()}"


@dataclass(frozen=True, slots=True)
class Usage:
    """Streams of one report group, one instance and one model that started in one hour."""

    group: tuple[object, ...]
    instance: str
    model: str
    hour: datetime
    streams: int
    prompt_tokens: int
    generated_tokens: int
    wasted_tokens: int


@dataclass(slots=True)
class Share:
    streams: int = 0
    cost: Fraction = Fraction(0)
    wasted_cost: Fraction = Fraction(0)


@dataclass(frozen=True, slots=True)
class Idle:
    pool: Pool
    hour: datetime
    cost: Fraction


@dataclass(slots=True)
class Allocation:
    shares: dict[tuple[object, ...], Share] = field(default_factory=dict)
    idle: list[Idle] = field(default_factory=list)


class HourlyBook:
    """Hourly prices by pool, looked up by instant."""

    def __init__(self, prices: Iterable[HourlyPrice] = ()) -> None:
        self._by_pool: dict[Pool, list[HourlyPrice]] = {}
        for price in prices:
            history = self._by_pool.setdefault(price.pool, [])
            history[:] = [p for p in history if p.effective_from != price.effective_from]
            bisect.insort(history, price, key=lambda p: p.effective_from)

    def __bool__(self) -> bool:
        return bool(self._by_pool)

    def __iter__(self) -> Iterator[HourlyPrice]:
        for pool in sorted(self._by_pool):
            yield from self._by_pool[pool]

    def price_at(self, pool: Pool, at: datetime) -> HourlyPrice | None:
        history = self._by_pool.get(pool, [])
        index = bisect.bisect_right(history, at, key=lambda p: p.effective_from)
        return history[index - 1] if index else None

    def pool_of(self, instance: str, model: str, hour: datetime) -> HourlyPrice | None:
        return self.price_at(("instance", instance), hour) or self.price_at(("model", model), hour)

    def segments(self, start: datetime, end: datetime) -> Iterator[tuple[HourlyPrice, datetime]]:
        """(price, hour) for every pool-hour in force within [start, end)."""
        for history in self._by_pool.values():
            for n, price in enumerate(history):
                stop = history[n + 1].effective_from if n + 1 < len(history) else end
                first = max(start, price.effective_from)
                hour = first.replace(minute=0, second=0, microsecond=0)
                last = min(stop, end)
                if (last - hour) / HOUR > MAX_HOURS:
                    raise ValueError(f"more than {MAX_HOURS} hours of {price.key}")
                while hour < last:
                    yield price, hour
                    hour += HOUR


def weight(price: HourlyPrice, prompt: int, generated: int) -> Fraction:
    return Fraction(prompt) * Fraction(price.prompt_weight) + generated


def allocate(
    book: HourlyBook, usages: Iterable[Usage], start: datetime, end: datetime
) -> Allocation:
    """Share every pool-hour in [start, end) among the streams that started in it (see the
    module docstring). `usages` must cover only streams that started within [start, end)."""
    by_pool_hour: dict[tuple[Pool, datetime], list[Usage]] = {}
    for usage in usages:
        price = book.pool_of(usage.instance, usage.model, usage.hour)
        if price is not None and start <= usage.hour + HOUR and usage.hour < end:
            by_pool_hour.setdefault((price.pool, usage.hour), []).append(usage)
    result = Allocation()
    for price, hour in book.segments(start, end):
        seconds = (min(hour + HOUR, end) - max(hour, start)).total_seconds()
        fraction = Fraction(round(seconds * 1_000_000), 3_600_000_000)
        cost = Fraction(price.usd_per_hour) * fraction
        members = by_pool_hour.pop((price.pool, hour), [])
        used = sum(
            (weight(price, u.prompt_tokens, u.generated_tokens) for u in members), Fraction(0)
        )
        capacity = price.capacity_tokens_per_hour
        denominator = used if capacity is None else max(used, capacity * fraction)
        rate = cost / denominator if denominator else Fraction(0)
        for usage in members:
            share = result.shares.setdefault(usage.group, Share())
            share.streams += usage.streams
            share.cost += weight(price, usage.prompt_tokens, usage.generated_tokens) * rate
            share.wasted_cost += usage.wasted_tokens * rate
        idle = cost - used * rate
        if idle:
            result.idle.append(Idle(price.pool, hour, idle))
    return result

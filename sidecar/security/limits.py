"""Limits at the edge, as pure state machines: every method takes `now` from the caller.

- `TokenBucket` / `MessageRate`: client messages per second on one connection. A message over
  the rate is dropped with an `error` frame (`rate_limited`); a client that keeps sending while
  limited (more than `burst` drops in a row) is closed with 1008.
- `ConnectionLimits`: concurrent connections in total and per tenant.
- `DailyBudget`: tokens (prompt + generated) per tenant per UTC day; a spent tenant's new
  streams are rejected (outcome `rejected`). A stream reserves what it may cost when admitted
  and settles with its true counts when it ends, so concurrent streams cannot overspend.
- `security/output.py`: the most output a request may ask for (`--max-tokens-limit`).
- `IdleTimer`: a connection with no client message and no running stream for too long.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up; starts full."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, now

    def take(self, now: float, cost: float = 1.0) -> bool:
        elapsed = now - self.stamp
        if elapsed > 0:  # a clock that steps back never refills
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


class Verdict(enum.Enum):
    ALLOW = "allow"
    DROP = "drop"  # answer with a `rate_limited` error frame, keep the connection
    CLOSE = "close"  # the client kept going: close with 1008


class MessageRate:
    """Per-connection message rate with a grace of `burst` dropped messages before closing."""

    __slots__ = ("bucket", "dropped", "max_dropped")

    def __init__(self, per_second: float, now: float, burst: float | None = None) -> None:
        burst = burst if burst is not None else max(1.0, math.ceil(per_second))
        self.bucket = TokenBucket(per_second, burst, now)
        self.max_dropped = int(burst)
        self.dropped = 0  # in a row

    def check(self, now: float) -> Verdict:
        if self.bucket.take(now):
            self.dropped = 0
            return Verdict.ALLOW
        self.dropped += 1
        return Verdict.CLOSE if self.dropped > self.max_dropped else Verdict.DROP


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request or connection is refused: HTTP status, machine code, human message."""

    status: int
    code: str
    message: str


class ConnectionLimits:
    """Concurrent connections (WebSocket sessions and in-flight HTTP relays), total and per
    tenant. `acquire` either counts the connection or returns a `Refusal`; `release` undoes it."""

    __slots__ = ("by_tenant", "per_tenant", "total", "total_max")

    def __init__(self, total_max: int, per_tenant: int) -> None:
        self.total_max, self.per_tenant = total_max, per_tenant
        self.total = 0
        self.by_tenant: dict[str, int] = {}

    def acquire(self, tenant: str) -> Refusal | None:
        if self.total_max and self.total >= self.total_max:
            return Refusal(503, "too_many_connections", "this sidecar is at its connection limit")
        held = self.by_tenant.get(tenant, 0)
        if self.per_tenant and held >= self.per_tenant:
            return Refusal(
                429, "too_many_tenant_connections", "your tenant is at its connection limit"
            )
        self.total += 1
        self.by_tenant[tenant] = held + 1
        return None

    def release(self, tenant: str) -> None:
        self.total = max(0, self.total - 1)
        held = self.by_tenant.get(tenant, 0) - 1
        if held > 0:
            self.by_tenant[tenant] = held
        else:
            self.by_tenant.pop(tenant, None)


def utc_day(wall: float) -> int:
    """Days since the epoch, in UTC."""
    return int(wall // 86400)


@dataclass(slots=True)
class DailyBudget:
    """Tokens per tenant per UTC day. 0 = unlimited. State is in memory; `seed` loads what the
    ledger already holds for today so that a restart does not hand out a fresh budget.

    Admission reserves a stream's worst case (its prompt estimate plus the most output it may
    cause) and `settle` replaces the reservation with the true count. A tenant is admitted
    while what it spent plus what its running streams reserved is under the budget, so a day
    ends at most one reservation (plus estimate errors) over it, however many streams start
    at once. Reservations belong to running streams and survive the day's roll-over.
    """

    tokens_per_day: int
    day: int = -1
    spent: dict[str, int] = field(default_factory=dict)
    reserved: dict[str, int] = field(default_factory=dict)  # tenant -> tokens held
    holds: dict[str, tuple[str, int]] = field(default_factory=dict)  # stream -> (tenant, tokens)

    def _roll(self, wall: float) -> None:
        day = utc_day(wall)
        if day != self.day:
            self.day, self.spent = day, {}

    def allows(self, tenant: str, wall: float) -> bool:
        if not self.tokens_per_day:
            return True
        self._roll(wall)
        committed = self.spent.get(tenant, 0) + self.reserved.get(tenant, 0)
        return committed < self.tokens_per_day

    def reserve(self, stream: str, tenant: str, tokens: int) -> None:
        """Hold `tokens` for a stream just admitted, until `settle(stream, ...)`."""
        if not self.tokens_per_day or stream in self.holds:
            return
        tokens = max(0, tokens)
        self.holds[stream] = (tenant, tokens)
        self.reserved[tenant] = self.reserved.get(tenant, 0) + tokens

    def settle(self, stream: str | None, tenant: str, tokens: int, wall: float) -> None:
        """A stream ended: release its reservation (if any) and charge what it really cost."""
        held = self.holds.pop(stream, None) if stream is not None else None
        if held is not None:
            left = self.reserved.get(held[0], 0) - held[1]
            if left > 0:
                self.reserved[held[0]] = left
            else:
                self.reserved.pop(held[0], None)
        self.charge(tenant, tokens, wall)

    def charge(self, tenant: str, tokens: int, wall: float) -> None:
        if not self.tokens_per_day or tokens <= 0:
            return
        self._roll(wall)
        self.spent[tenant] = self.spent.get(tenant, 0) + tokens

    def remaining(self, tenant: str, wall: float) -> int | None:
        if not self.tokens_per_day:
            return None
        self._roll(wall)
        committed = self.spent.get(tenant, 0) + self.reserved.get(tenant, 0)
        return max(0, self.tokens_per_day - committed)

    def seed(self, spent: dict[str, int], wall: float) -> None:
        self._roll(wall)
        for tenant, tokens in spent.items():
            self.spent[tenant] = self.spent.get(tenant, 0) + tokens


BUDGET_SPENT = Refusal(429, "budget_exhausted", "your tenant's daily token budget is spent")


class IdleTimer:
    """A connection is idle when the client sent nothing and no stream ran for `timeout` s."""

    __slots__ = ("last", "timeout")

    def __init__(self, timeout: float, now: float) -> None:
        self.timeout, self.last = timeout, now

    def touch(self, now: float) -> None:
        self.last = max(self.last, now)

    def expired(self, now: float, busy: bool) -> bool:
        if busy:
            self.last = max(self.last, now)
            return False
        return bool(self.timeout) and now - self.last >= self.timeout

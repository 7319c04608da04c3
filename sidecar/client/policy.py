"""Pure timing policies: reconnect backoff with full jitter, and the client's message budget."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: attempt n waits uniformly in
    [0, min(cap, base·2ⁿ)), so clients cut together do not all return together."""

    base: float = 0.25
    cap: float = 8.0
    max_attempts: int = 8  # reconnects before giving up with `connection_lost`

    def delay(self, attempt: int, random: float) -> float:
        """`random` is uniform in [0, 1)."""
        return random * min(self.cap, self.base * 2.0 ** min(attempt, 30))


class MessageBudget:
    """A token bucket for the messages the client sends. The sidecar drops messages beyond
    `--max-messages-per-second` (acks included) and closes after a burst of drops, so the
    client keeps to a smaller budget: acks wait for a token (they are cumulative, so a late ack
    loses nothing); control messages always go and only spend one."""

    __slots__ = ("capacity", "per_second", "tokens", "updated")

    def __init__(self, per_second: float, now: float) -> None:
        self.per_second = per_second
        self.capacity = max(1.0, per_second)
        self.tokens = self.capacity
        self.updated = now

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.per_second)
        self.updated = now

    def try_take(self, now: float) -> bool:
        if self.per_second <= 0:
            return True
        self._refill(now)
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def spend(self, now: float) -> None:
        if self.per_second <= 0:
            return
        self._refill(now)
        self.tokens = max(0.0, self.tokens - 1)

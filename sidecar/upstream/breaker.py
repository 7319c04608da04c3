"""A circuit breaker for the model server (pure: the caller passes the time).

After `threshold` consecutive connection failures the breaker opens: new streams are refused at
once with `upstream_unavailable` and a retry hint, instead of each waiting for its own connect
timeout against a dead server. After `cooldown` seconds one request is let through as a probe
(half-open); its success closes the breaker, its failure opens it again for twice as long (up to
`max_cooldown`). Answers from the model server, even errors, are not failures: it is up.
"""

from __future__ import annotations

import enum


class BreakerState(enum.Enum):
    CLOSED = "closed"  # requests flow
    OPEN = "open"  # refused at once until the cooldown ends
    HALF_OPEN = "half_open"  # one probe request in flight


class Breaker:
    __slots__ = (
        "_cooldown",
        "_failures",
        "_open_until",
        "base_cooldown",
        "max_cooldown",
        "state",
        "threshold",
    )

    def __init__(
        self, threshold: int = 5, cooldown: float = 1.0, max_cooldown: float = 30.0
    ) -> None:
        self.threshold = threshold
        self.base_cooldown = cooldown
        self.max_cooldown = max_cooldown
        self.state = BreakerState.CLOSED
        self._failures = 0
        self._cooldown = cooldown
        self._open_until = 0.0

    def allow(self, now: float) -> bool:
        """May a request go to the upstream now? In OPEN, the first call after the cooldown
        becomes the probe (HALF_OPEN); others wait for its verdict."""
        if self.state is BreakerState.CLOSED or self.threshold <= 0:
            return True
        if now >= self._open_until:  # the cooldown ended, or a probe never reported back
            self.state = BreakerState.HALF_OPEN
            self._open_until = now + self._cooldown
            return True
        return False

    def retry_after(self, now: float) -> float:
        """Seconds a refused client should wait before trying again."""
        return max(self._open_until - now, 1.0)

    def succeeded(self) -> None:
        self.state = BreakerState.CLOSED
        self._failures = 0
        self._cooldown = self.base_cooldown

    def failed(self, now: float) -> None:
        """A connection to the upstream failed (refused, reset, timed out before an answer)."""
        if self.state is BreakerState.HALF_OPEN:
            self._cooldown = min(self._cooldown * 2, self.max_cooldown)
            self._trip(now)
            return
        self._failures += 1
        if self.threshold > 0 and self._failures >= self.threshold:
            self._trip(now)

    def _trip(self, now: float) -> None:
        self.state = BreakerState.OPEN
        self._open_until = now + self._cooldown

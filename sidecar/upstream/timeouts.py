"""When a model server has been silent too long: the rule the pool's watchdog applies.

Two clocks, because a model server is silent for two reasons. Before the first byte of the
answer's body it may be queueing the request or computing a long prompt (vLLM sends its headers
at once and then queues), so the first byte gets a generous allowance counted from the moment
the request was written. Once tokens flow, a long pause means the server is stuck; the idle
allowance is the longest silence between body bytes. A value of 0 turns a clock off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Phase = Literal["first_byte", "idle"]

# The watchdog checks four times per shortest allowance (so a timeout fires at most 25 % late),
# but never more often than 20 times a second nor less often than once a second.
CHECKS_PER_TIMEOUT = 4
MIN_INTERVAL = 0.05
MAX_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class Timeouts:
    first_byte: float
    idle: float

    @property
    def enabled(self) -> bool:
        return self.first_byte > 0 or self.idle > 0

    @property
    def interval(self) -> float:
        """Seconds between two checks of the watchdog."""
        allowances = [t for t in (self.first_byte, self.idle) if t > 0]
        if not allowances:
            return MAX_INTERVAL
        return min(max(min(allowances) / CHECKS_PER_TIMEOUT, MIN_INTERVAL), MAX_INTERVAL)

    def expired(
        self, now: float, sent_at: float, last_read: float, body_started: bool
    ) -> Phase | None:
        """Which allowance a response has overrun at `now`, if any."""
        if not body_started:
            if self.first_byte > 0 and now - sent_at >= self.first_byte:
                return "first_byte"
        elif self.idle > 0 and now - last_read >= self.idle:
            return "idle"
        return None

    def limit(self, phase: Phase) -> float:
        return self.first_byte if phase == "first_byte" else self.idle

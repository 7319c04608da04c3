"""The simulated server's faults: what a failing model server does to a request.

One set of names everywhere: `sidecar simulate --stall-after-tokens 5` (the defaults),
`POST /sim/faults {"stall_after_tokens": 5}` (at run time) and a request body's
`"sim_fault": {"stall_after_tokens": 5}` (that request only). A later layer overrides the
earlier one field by field; `null` (or 0 for the rate and the periodic fault) turns a fault off.

Token counts (`*_after_tokens`) count content chunks: N = 0 acts before the first token.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

FOREVER = 0.0  # stall_seconds: 0 (or "forever") keeps the connection silent until the client leaves


class FaultError(ValueError):
    """A fault setting the caller got wrong; the message says which and what is allowed."""


@dataclass(frozen=True, slots=True)
class Faults:
    stall_before_first_byte: float = 0.0  # seconds with no status line at all
    stall_before_first_token: float = 0.0  # seconds of silence after 200 and the headers
    stall_after_tokens: int | None = None  # after N content chunks, go silent...
    stall_seconds: float = FOREVER  # ...for this long (0 = until the client leaves)
    drop_after_tokens: int | None = None  # close the connection after N chunks, no end marker
    error_after_tokens: int | None = None  # after N chunks, an in-stream error event, then end
    malformed_every: int = 0  # every K-th event is `data: {not json` (inserted, no token lost)
    error_rate: float = 0.0  # share of requests answered with `error_status`...
    error_status: int = 503
    retry_after: int | None = 1  # ...and this Retry-After header (null: none)

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def stall_is_forever(self) -> bool:
        return self.stall_seconds == FOREVER


FAULT_NAMES = tuple(f.name for f in dataclasses.fields(Faults))
SECONDS = ("stall_before_first_byte", "stall_before_first_token", "stall_seconds")
COUNTS = ("stall_after_tokens", "drop_after_tokens", "error_after_tokens")


def parse_faults(update: object, base: Faults, where: str = "faults") -> Faults:
    """`base` with the fields named in `update` (a JSON object) replaced, validated."""
    if not isinstance(update, dict):
        raise FaultError(f"{where} must be a JSON object with any of: {', '.join(FAULT_NAMES)}")
    unknown = sorted(set(update) - set(FAULT_NAMES))
    if unknown:
        raise FaultError(f"{where}: unknown fault {unknown[0]!r}; known: {', '.join(FAULT_NAMES)}")
    values: dict[str, Any] = {name: _value(name, value, where) for name, value in update.items()}
    return dataclasses.replace(base, **values)


def _value(name: str, value: object, where: str) -> object:
    label = f"{where}.{name}"
    if name == "stall_seconds" and value == "forever":
        return FOREVER
    if name in SECONDS:
        return _number(value, label, "a number of seconds ≥ 0")
    if name in COUNTS:
        return None if value is None else _count(value, label)
    if name == "malformed_every":
        every = 0 if value is None else _count(value, label)
        if every == 1:
            raise FaultError(f"{label} must be 0 (off) or ≥ 2: every K-th event is malformed")
        return every
    if name == "error_rate":
        rate = _number(value, label, "a probability in [0, 1]")
        if rate > 1:
            raise FaultError(f"{label} must be a probability in [0, 1], not {value!r}")
        return rate
    if name == "error_status":
        status = _count(value, label)
        if not 400 <= status <= 599:
            raise FaultError(f"{label} must be an HTTP error status (400-599), not {value!r}")
        return status
    assert name == "retry_after"
    return None if value is None else _count(value, label)


def _number(value: object, label: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FaultError(f"{label} must be {what}, not {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise FaultError(f"{label} must be {what}, not {value!r}")
    return number


def _count(value: object, label: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FaultError(f"{label} must be a whole number ≥ 0, not {value!r}")
    return value


def request_faults(body: dict[str, Any], current: Faults) -> Faults:
    """The faults for one request: the current ones overridden by its `sim_fault` object."""
    override = body.get("sim_fault")
    if override is None:
        return current
    return parse_faults(override, current, "sim_fault")


@dataclass(slots=True)
class Malformer:
    """Counts a stream's events; says when the next slot is a malformed one (every K-th)."""

    every: int
    events: int = 0

    def next_is_malformed(self) -> bool:
        self.events += 1
        if self.every and self.events % self.every == 0:
            self.events += 1  # the real event takes the following slot
            return True
        return False

"""Which running streams are stuck, judged when the live view is asked (sidecar.live.view).

A stream is *stuck* when its client stopped taking what the sidecar writes:
- `not_reading`: the connection's send buffer has not drained for `STUCK_AFTER` seconds (the
  session's once-a-second tick notices; `--send-timeout` later cuts the client off);
- `not_acking`: the client acknowledges deltas and its ack has not moved for `STUCK_AFTER`
  seconds while written deltas wait (seen from the second look on: `AckWatch` compares looks);
- `client_away`: the connection is gone and the stream runs on for a resume (a parked session).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from sidecar.accounting.stream import StreamAccount

STUCK_AFTER = 2.0  # seconds without progress before a stream counts as stuck


class Stuck(enum.StrEnum):
    NOT_READING = "not_reading"
    NOT_ACKING = "not_acking"
    CLIENT_AWAY = "client_away"


class AckWatch:
    """When each stream's ack last moved, as seen by successive looks (one per request)."""

    __slots__ = ("_since",)

    def __init__(self) -> None:
        self._since: dict[str, tuple[int, float]] = {}

    def look(self, accounts: Iterable[StreamAccount], now: float) -> dict[str, float]:
        """Since when each acking stream's ack has stood still with deltas waiting; streams not
        seen in this look are forgotten."""
        previous, since = self._since, {}
        stalled: dict[str, float] = {}
        for account in accounts:
            acked = account.acked
            if acked is None:
                continue
            key = account.stream_id
            seen = previous.get(key)
            start = seen[1] if seen is not None and seen[0] == acked else now
            since[key] = (acked, start)
            if account.written > acked:
                stalled[key] = start
        self._since = since
        return stalled


def judge(
    parked: bool,
    stalled_since: float | None,
    account: StreamAccount,
    acking: dict[str, float],
    now: float,
) -> tuple[Stuck | None, float | None]:
    """Why a running stream is stuck and since when (monotonic), or (None, None);
    `stalled_since`: its connection's send buffer has not drained since; `acking`: from
    `AckWatch.look`."""
    if parked:
        return Stuck.CLIENT_AWAY, None
    if stalled_since is not None and now - stalled_since >= STUCK_AFTER:
        return Stuck.NOT_READING, stalled_since
    since = acking.get(account.stream_id)
    if since is not None and now - since >= STUCK_AFTER:
        return Stuck.NOT_ACKING, since
    return None, None

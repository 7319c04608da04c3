"""A session's heartbeat RTTs as the ingress keeps them: a ring of the latest 256 (an array of
doubles, filled in order, then overwritten from `next`), read in place."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

RTT_RECENT = 30  # RTTs per session in the answer, oldest first (a sparkline's worth)
Ring = Sequence[float] | None  # None: no pong yet


def rtt_last(rtts: Ring, next_at: int) -> float | None:
    if not rtts:
        return None
    return rtts[(next_at or len(rtts)) - 1]


def rtt_recent(rtts: Ring, next_at: int, count: int = RTT_RECENT) -> list[float]:
    """The latest `count` RTTs, oldest first (copies only those: the ring holds 256)."""
    if not rtts:
        return []
    if next_at >= count or not next_at:  # one run, ending just before the next write
        end = next_at or len(rtts)
        return list(rtts[max(0, end - count) : end])
    oldest = max(next_at, len(rtts) - (count - next_at))  # a ring shorter than `count`: all
    return [*rtts[oldest:], *rtts[:next_at]]


class RttMedians:
    """Each session's median RTT over its latest `RTT_RECENT` pongs (the points its sparkline
    shows), recomputed only when a pong arrived: 10,000 sessions sorted by it stay cheap."""

    __slots__ = ("_memo",)

    def __init__(self) -> None:
        self._memo: dict[str, tuple[tuple[int, int, float], float]] = {}

    def median(self, session_id: str, rtts: Ring, next_at: int) -> float | None:
        last = rtt_last(rtts, next_at)
        if last is None or not rtts:
            return None
        mark = (len(rtts), next_at, last)
        memo = self._memo.get(session_id)
        if memo is not None and memo[0] == mark:
            return memo[1]
        recent = sorted(rtt_recent(rtts, next_at))
        value = recent[len(recent) // 2]  # the upper median, as the ledger's p50
        self._memo[session_id] = (mark, value)
        return value

    def prune(self, open_count: int, open_ids: Callable[[], Iterable[str]]) -> None:
        """Drop closed sessions' medians once they outnumber the open ones (the open ones'
        ids are only listed then)."""
        if len(self._memo) > 2 * open_count + 64:
            keep = set(open_ids())
            self._memo = {k: v for k, v in self._memo.items() if k in keep}

"""The live sessions view as plain data: rows in, the `GET /sessions` answer out (DESIGN §8).

Pure: no sockets, no clock, no event loop. `sidecar.live.snapshot` reads the running server into
`SessionRow`s and `StreamAccount`s when someone asks (nothing is added to the relay path); this
module filters, sorts, limits and shapes them. Only counts, names, ids and timings reach a row:
never prompt or completion text.

A stream is *stuck* when its client stopped taking what the sidecar writes:
- `not_reading`: the connection's send buffer has not drained for `STUCK_AFTER` seconds (the
  session's once-a-second tick notices; `--send-timeout` later cuts the client off);
- `not_acking`: the client acknowledges deltas and its ack has not moved for `STUCK_AFTER`
  seconds while written deltas wait (seen from the second look on: `AckWatch` compares looks);
- `client_away`: the connection is gone and the stream runs on for a resume (a parked session).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from sidecar.accounting.stream import StreamAccount

STUCK_AFTER = 2.0  # seconds without progress before a stream counts as stuck
RTT_RECENT = 30  # RTTs per session in the answer, oldest first (a sparkline's worth)
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
DEFAULT_ENDED = 20
ENDED_KEPT = 200  # streams that just ended, kept by the server for this view
PARAMS = frozenset({"tenant", "model", "min_rtt", "stuck", "sort", "order", "limit", "ended"})


class Stuck(enum.StrEnum):
    NOT_READING = "not_reading"
    NOT_ACKING = "not_acking"
    CLIENT_AWAY = "client_away"


# Sort keys and their natural order (True: largest first).
SORTS: dict[str, bool] = {
    "connected": False,  # oldest first: rows stay put while the page refreshes
    "rtt": True,
    "rtt_p50": True,
    "waste": True,  # generated but not (yet) delivered
    "generated": True,
    "missed": True,
    "streams": True,
    "tenant": False,
}


@dataclass(frozen=True, slots=True)
class Query:
    tenant: str | None = None
    model: str | None = None
    min_rtt: float | None = None  # seconds; sessions without an RTT yet do not match
    stuck: bool = False
    sort: str = "connected"
    descending: bool | None = None  # None: the sort's natural order
    limit: int = DEFAULT_LIMIT
    ended: int = DEFAULT_ENDED  # how many just-ended streams to include


@dataclass(frozen=True, slots=True)
class SessionRow:
    """One WebSocket session as the server holds it now (open, or parked awaiting a resume)."""

    session_id: str
    tenant: str
    connected_at: float  # wall clock
    rtts: Sequence[float]  # the session's RTT ring, read in place
    rtt_next: int  # where the ring writes next once it is full
    missed: int  # heartbeat pongs that never came
    buffered: int  # bytes written that the client has not taken yet
    stalled_since: float | None  # monotonic: its send buffer has not drained since
    parked: bool
    trace_id: str | None
    streams: Sequence[StreamAccount]


@dataclass(frozen=True, slots=True)
class Now:
    wall: float
    mono: float


def parse_query(query_string: str) -> Query | str:
    """The query from `?tenant=&model=&min_rtt=&stuck=1&sort=&order=&limit=&ended=`, or a
    one-line message saying what is wrong with it."""
    params = {k: v[-1] for k, v in parse_qs(query_string, keep_blank_values=True).items()}
    unknown = sorted(set(params) - PARAMS)
    if unknown:
        return f"unknown parameter {unknown[0]!r}; use {', '.join(sorted(PARAMS))}"
    try:
        min_rtt = float(params["min_rtt"]) if params.get("min_rtt") else None
        limit = int(params.get("limit") or DEFAULT_LIMIT)
        ended = int(params.get("ended") or DEFAULT_ENDED)
    except ValueError as exc:
        return f"not a number: {str(exc).rpartition(': ')[2]}"
    if not 0 <= limit <= MAX_LIMIT or not 0 <= ended <= ENDED_KEPT:
        return f"limit must be 0..{MAX_LIMIT} and ended 0..{ENDED_KEPT}"
    sort = params.get("sort") or "connected"
    if sort not in SORTS:
        return f"sort must be one of {', '.join(SORTS)}"
    order = params.get("order") or ""
    if order not in ("", "asc", "desc"):
        return "order must be asc or desc"
    stuck = params.get("stuck", "0")
    if stuck not in ("", "0", "1", "true", "false"):
        return "stuck must be 1 or 0"
    return Query(
        tenant=params.get("tenant") or None,
        model=params.get("model") or None,
        min_rtt=min_rtt,
        stuck=stuck in ("", "1", "true"),
        sort=sort,
        descending=None if not order else order == "desc",
        limit=limit,
        ended=ended,
    )


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


class RttMedians:
    """Each session's RTT median, recomputed only when its ring changed (a pong every
    `--heartbeat-interval`): sorting 256 RTTs for 10,000 sessions every second would not be
    cheap."""

    __slots__ = ("_memo",)

    def __init__(self) -> None:
        self._memo: dict[str, tuple[tuple[int, int, float], float]] = {}

    def median(self, row: SessionRow) -> float | None:
        rtts = row.rtts
        if not rtts:
            return None
        mark = (len(rtts), row.rtt_next, rtt_last(row))
        memo = self._memo.get(row.session_id)
        if memo is not None and memo[0] == mark:
            return memo[1]
        value = sorted(rtts)[len(rtts) // 2]  # the ledger's p50 (upper median)
        self._memo[row.session_id] = (mark, value)
        return value

    def retain(self, session_ids: set[str]) -> None:
        if len(self._memo) > 2 * len(session_ids) + 64:
            self._memo = {k: v for k, v in self._memo.items() if k in session_ids}


def rtt_last(row: SessionRow) -> float:
    """The latest RTT of a non-empty ring."""
    rtts, full = row.rtts, row.rtt_next or len(row.rtts)
    return rtts[full - 1]


def rtt_recent(row: SessionRow, count: int = RTT_RECENT) -> list[float]:
    """The latest `count` RTTs, oldest first."""
    rtts, at = row.rtts, row.rtt_next
    ordered = [*rtts[at:], *rtts[:at]] if at else list(rtts)
    return ordered[-count:]


@dataclass(slots=True)
class _Picked:
    row: SessionRow
    rtt_last: float | None
    streams: list[tuple[StreamAccount, Stuck | None, float | None]]

    @property
    def waste(self) -> int:
        return sum(a.wasted_tokens for a, _, _ in self.streams)

    @property
    def generated(self) -> int:
        return sum(a.generated_tokens for a, _, _ in self.streams)


@dataclass(slots=True)
class LiveView:
    """Builds the answer; keeps what must outlive one request (ack progress, RTT medians)."""

    acks: AckWatch
    medians: RttMedians

    @classmethod
    def new(cls) -> LiveView:
        return cls(AckWatch(), RttMedians())

    def answer(
        self,
        query: Query,
        now: Now,
        sessions: Sequence[SessionRow],
        http: Sequence[StreamAccount],
        ended: Sequence[StreamAccount],
        instance_id: str,
    ) -> dict[str, Any]:
        acking = self.acks.look([a for s in sessions for a in s.streams], now.mono)
        picked: list[_Picked] = []
        stuck_total = streams_total = parked = 0
        for row in sessions:
            parked += row.parked
            streams = [(a, *_stuck(row, a, acking, now.mono)) for a in row.streams]
            streams_total += len(streams)
            stuck_total += sum(1 for _, why, _ in streams if why is not None)
            last = rtt_last(row) if row.rtts else None
            if _session_matches(query, row, last):
                shown = [s for s in streams if _stream_matches(query, s[0], s[1])]
                if shown or not (query.model or query.stuck):
                    picked.append(_Picked(row, last, shown))
        self.medians.retain({row.session_id for row in sessions})
        picked.sort(key=self._sort_key(query.sort), reverse=_descending(query))
        http_shown = _sorted_streams(
            [a for a in http if _stream_matches(query, a, None) and query.min_rtt is None],
            query,
        )
        return {
            "now": iso(now.wall),
            "instance_id": instance_id,
            "totals": {
                "sessions": len(sessions),
                "parked": parked,
                "streams": streams_total,
                "http_streams": len(http),
                "stuck_streams": stuck_total,
            },
            "matched": {"sessions": len(picked), "http_streams": len(http_shown)},
            "sessions": [self._session_json(p, now) for p in picked[: query.limit]],
            "http_streams": [stream_json(a, now) for a in http_shown[: query.limit]],
            "ended": [ended_json(a) for a in _recent_ends(ended, query)],
        }

    def _sort_key(self, sort: str) -> Callable[[_Picked], Any]:
        keys: dict[str, Callable[[_Picked], Any]] = {
            "connected": lambda p: p.row.connected_at,
            "rtt": lambda p: -1.0 if p.rtt_last is None else p.rtt_last,
            "rtt_p50": lambda p: _or_minus_one(self.medians.median(p.row)),
            "waste": lambda p: p.waste,
            "generated": lambda p: p.generated,
            "missed": lambda p: p.row.missed,
            "streams": lambda p: len(p.streams),
            "tenant": lambda p: (p.row.tenant, p.row.connected_at),
        }
        return keys[sort]

    def _session_json(self, picked: _Picked, now: Now) -> dict[str, Any]:
        row = picked.row
        return {
            "session_id": row.session_id,
            "tenant": row.tenant,
            "ingress": "ws",
            "state": "parked" if row.parked else "open",
            "connected_at": iso(row.connected_at),
            "connected_seconds": round(now.wall - row.connected_at, 3),
            "rtt_last_seconds": picked.rtt_last,
            "rtt_p50_seconds": self.medians.median(row),
            "rtt_recent_seconds": rtt_recent(row) if row.rtts else [],
            "missed_pongs": row.missed,
            "buffered_bytes": row.buffered,
            "trace_id": row.trace_id,
            "generated_tokens": picked.generated,
            "wasted_tokens": picked.waste,
            "streams": [stream_json(a, now, why, at) for a, why, at in picked.streams],
        }


def _stuck(
    row: SessionRow, account: StreamAccount, acking: dict[str, float], now: float
) -> tuple[Stuck | None, float | None]:
    """Why a running stream is stuck and since when (monotonic), or (None, None)."""
    if row.parked:
        return Stuck.CLIENT_AWAY, None
    if row.stalled_since is not None and now - row.stalled_since >= STUCK_AFTER:
        return Stuck.NOT_READING, row.stalled_since
    since = acking.get(account.stream_id)
    if since is not None and now - since >= STUCK_AFTER:
        return Stuck.NOT_ACKING, since
    return None, None


def _session_matches(query: Query, row: SessionRow, last: float | None) -> bool:
    if query.tenant is not None and row.tenant != query.tenant:
        return False
    return query.min_rtt is None or (last is not None and last >= query.min_rtt)


def _stream_matches(query: Query, account: StreamAccount, stuck: Stuck | None) -> bool:
    if query.tenant is not None and account.tenant != query.tenant:
        return False
    if query.model is not None and account.model != query.model:
        return False
    return stuck is not None or not query.stuck


def _descending(query: Query) -> bool:
    return SORTS[query.sort] if query.descending is None else query.descending


def _or_minus_one(value: float | None) -> float:
    return -1.0 if value is None else value


def _sorted_streams(accounts: list[StreamAccount], query: Query) -> list[StreamAccount]:
    """HTTP streams have no session: sorted by waste or generated when asked, else by start."""
    key: Callable[[StreamAccount], Any]
    if query.sort == "waste":
        key = _wasted
    elif query.sort == "generated":
        key = _generated
    else:
        return sorted(accounts, key=_started, reverse=query.descending is True)
    return sorted(accounts, key=key, reverse=_descending(query))


def _wasted(account: StreamAccount) -> int:
    return account.wasted_tokens


def _generated(account: StreamAccount) -> int:
    return account.generated_tokens


def _started(account: StreamAccount) -> float:
    return account.started_at


def _recent_ends(ended: Sequence[StreamAccount], query: Query) -> list[StreamAccount]:
    """The latest endings first, those of the tenant and model asked for."""
    found: list[StreamAccount] = []
    for account in reversed(ended):
        if len(found) >= query.ended:
            break
        if query.tenant is not None and account.tenant != query.tenant:
            continue
        if query.model is None or account.model == query.model:
            found.append(account)
    return found


def stream_json(
    account: StreamAccount, now: Now, stuck: Stuck | None = None, since: float | None = None
) -> dict[str, Any]:
    """A running stream: its counts so far (waste: what would be wasted if it ended now)."""
    return {
        **_stream_fields(account),
        "idle_seconds": _round(now.mono - (account.t_last or account.t_start)),
        "stuck": None if stuck is None else stuck.value,
        "stuck_seconds": None if since is None else _round(now.mono - since),
    }


def ended_json(account: StreamAccount) -> dict[str, Any]:
    """A stream that just ended, with its outcome (the ledger row's final counts)."""
    duration = account.duration or 0.0
    return {
        **_stream_fields(account),
        "outcome": None if account.outcome is None else account.outcome.value,
        "error_code": account.error_code,
        "ended_at": iso(account.started_at + duration),
        "duration_seconds": _round(duration),
    }


def _stream_fields(account: StreamAccount) -> dict[str, Any]:
    ttft = account.time_to_first_token
    return {
        "id": account.request_id,
        "stream_id": account.stream_id,
        "session_id": account.session_id,
        "tenant": account.tenant,
        "model": account.model,
        "ingress": account.ingress,
        "path": account.path,
        "started_at": iso(account.started_at),
        "generated_tokens": account.generated_tokens,
        "delivered_tokens": account.delivered_tokens,
        "wasted_tokens": account.wasted_tokens,
        "written": account.written,
        "acked": account.acked,
        "ttft_seconds": None if ttft is None else _round(ttft),
        "trace_id": account.trace_id,
    }


def _round(seconds: float) -> float:
    return round(seconds, 6)


def iso(epoch: float) -> str:
    """UTC, milliseconds, `Z`: what the other JSON answers and the ledger use."""
    moment = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
    return moment.replace("+00:00", "Z")

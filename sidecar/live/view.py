"""The live sessions view: the server's sessions in, the `GET /sessions` answer out (DESIGN §8).

Pure: no sockets, no clock, no event loop. It is asked at most a few times a second and must
stay cheap at 10,000 connections, so it touches every session only through `Fields`: a few
attribute getters (C speed) for the filters and sorts, and the full `SessionRow` (built by
sidecar.live.snapshot) only for sessions that have running streams or are shown. Nothing is
added to the relay path. Only counts, names, ids and timings reach the answer: never prompt or
completion text.

A stream is *stuck* when its client stopped taking what the sidecar writes:
- `not_reading`: the connection's send buffer has not drained for `STUCK_AFTER` seconds (the
  session's once-a-second tick notices; `--send-timeout` later cuts the client off);
- `not_acking`: the client acknowledges deltas and its ack has not moved for `STUCK_AFTER`
  seconds while written deltas wait (seen from the second look on: `AckWatch` compares looks);
- `client_away`: the connection is gone and the stream runs on for a resume (a parked session).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

from sidecar.accounting.stream import StreamAccount
from sidecar.live.query import Query
from sidecar.live.rtt import Ring, RttMedians, rtt_last, rtt_recent

STUCK_AFTER = 2.0  # seconds without progress before a stream counts as stuck


class Stuck(enum.StrEnum):
    NOT_READING = "not_reading"
    NOT_ACKING = "not_acking"
    CLIENT_AWAY = "client_away"


@dataclass(frozen=True, slots=True)
class SessionRow:
    """One WebSocket session as the server holds it now (open, or parked awaiting a resume)."""

    session_id: str
    tenant: str
    connected_at: float  # wall clock
    rtts: Ring  # the session's RTT ring, read in place
    rtt_next: int  # where the ring writes next once it is full
    missed: int  # heartbeat pongs that never came
    buffered: int  # bytes written that the client has not taken yet
    stalled_since: float | None  # monotonic: its send buffer has not drained since
    parked: bool
    trace_id: str | None
    streams: Sequence[StreamAccount]


@dataclass(frozen=True, slots=True)
class Fields:
    """How to read the server's session objects: cheap getters for every session, `row` for
    the few that need everything."""

    session_id: Callable[[Any], str]
    tenant: Callable[[Any], str]
    connected_at: Callable[[Any], float]
    missed: Callable[[Any], int]
    ring: Callable[[Any], tuple[Ring, int]]
    busy: Callable[[Any], object]  # truthy: it has running streams
    row: Callable[[Any], SessionRow]


def _same(row: SessionRow) -> SessionRow:
    return row


# Plain `SessionRow`s as the sessions (tests, and anyone holding rows already).
ROW_FIELDS = Fields(
    session_id=attrgetter("session_id"),
    tenant=attrgetter("tenant"),
    connected_at=attrgetter("connected_at"),
    missed=attrgetter("missed"),
    ring=attrgetter("rtts", "rtt_next"),
    busy=attrgetter("streams"),
    row=_same,
)


@dataclass(frozen=True, slots=True)
class Now:
    wall: float
    mono: float


@dataclass(frozen=True, slots=True)
class LiveState:
    """What the server holds at one moment, as the view reads it."""

    now: Now
    sessions: Collection[Any]  # read through `fields`
    http: Sequence[StreamAccount]  # running streams with no session
    ended: Sequence[StreamAccount]  # the latest to end, oldest first
    instance_id: str
    fields: Fields = ROW_FIELDS


Judged = tuple[StreamAccount, Stuck | None, float | None]  # a stream, why stuck, since when


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


@dataclass(frozen=True, slots=True)
class Selection:
    """An answer but for its sessions' JSON: see `LiveView.select`."""

    now: Now
    head: dict[str, Any]  # now, instance_id, totals, matched
    rows: list[SessionRow]  # the sessions listed, in order
    shown: dict[str, list[Judged]]  # their streams to list, by session id
    http: list[dict[str, Any]]
    ended: list[dict[str, Any]]

    def answer(self, sessions: list[dict[str, Any]]) -> dict[str, Any]:
        return {**self.head, "sessions": sessions, "http_streams": self.http, "ended": self.ended}


@dataclass(slots=True)
class LiveView:
    """Builds the answer; keeps what must outlive one request (ack progress, RTT medians)."""

    acks: AckWatch
    medians: RttMedians

    @classmethod
    def new(cls) -> LiveView:
        return cls(AckWatch(), RttMedians())

    def answer(self, query: Query, state: LiveState) -> dict[str, Any]:
        """`select`, then every listed session's JSON, in one go."""
        chosen = self.select(query, state)
        return chosen.answer([self.session_json(chosen, row) for row in chosen.rows])

    def select(self, query: Query, state: LiveState) -> Selection:
        """What the answer lists, and its totals; the listed sessions' JSON (most of the
        work) is left to `session_json`, so a server can pause between them."""
        now, sessions, http, f = state.now, state.sessions, state.http, state.fields
        busy = {f.session_id(s): (s, f.row(s)) for s in sessions if f.busy(s)}
        acking = self.acks.look([a for _, r in busy.values() for a in r.streams], now.mono)
        judged = {
            sid: [(a, *_stuck(row, a, acking, now.mono)) for a in row.streams]
            for sid, (_, row) in busy.items()
        }
        shown = {
            sid: [j for j in js if _stream_matches(query, j[0], j[1])] for sid, js in judged.items()
        }
        if query.by_stream:
            candidates: Collection[Any] = [s for sid, (s, _) in busy.items() if shown[sid]]
        else:
            candidates = sessions
        if query.tenant is not None:
            candidates = [s for s in candidates if f.tenant(s) == query.tenant]
        if query.min_rtt is not None:
            floor = query.min_rtt
            candidates = [s for s in candidates if _at_least(rtt_last(*f.ring(s)), floor)]
        ordered = sorted(
            candidates, key=self._sort_key(query.sort, f, shown), reverse=query.largest_first
        )
        self.medians.prune(len(sessions), lambda: map(f.session_id, sessions))
        rows = [
            busy[sid][1] if (sid := f.session_id(s)) in busy else f.row(s)
            for s in ordered[: query.limit]
        ]
        http_shown = _sorted_streams(
            [a for a in http if _stream_matches(query, a, None) and query.min_rtt is None], query
        )
        every = [j for js in judged.values() for j in js]
        head = {
            "now": iso(now.wall),
            "instance_id": state.instance_id,
            "totals": {
                "sessions": len(sessions),
                "parked": sum(1 for _, row in busy.values() if row.parked),
                "streams": len(every),
                "http_streams": len(http),
                "stuck_streams": sum(1 for _, why, _ in every if why is not None),
            },
            "matched": {"sessions": len(ordered), "http_streams": len(http_shown)},
        }
        return Selection(
            now,
            head,
            rows,
            shown,
            [stream_json(a, now) for a in http_shown[: query.limit]],
            [ended_json(a) for a in _recent_ends(state.ended, query)],
        )

    def _sort_key(
        self, sort: str, f: Fields, shown: dict[str, list[Judged]]
    ) -> Callable[[Any], Any]:
        """Sessions without running streams have none of the stream measures."""
        if sort == "connected":
            return f.connected_at
        if sort == "missed":
            return f.missed
        if sort == "tenant":
            return lambda s: (f.tenant(s), f.connected_at(s))
        if sort == "rtt":
            return lambda s: _or_minus_one(rtt_last(*f.ring(s)))
        if sort == "rtt_p50":
            median = self.medians.median
            return lambda s: _or_minus_one(median(f.session_id(s), *f.ring(s)))
        measure = {"waste": _waste, "generated": _generated, "streams": len}[sort]
        values = {sid: measure(js) for sid, js in shown.items()}
        return lambda s: values.get(f.session_id(s), 0)

    def session_json(self, chosen: Selection, row: SessionRow) -> dict[str, Any]:
        streams, now = chosen.shown.get(row.session_id, []), chosen.now
        return {
            "session_id": row.session_id,
            "tenant": row.tenant,
            "ingress": "ws",
            "state": "parked" if row.parked else "open",
            "connected_at": iso(row.connected_at),
            "connected_seconds": round(now.wall - row.connected_at, 3),
            "rtt_last_seconds": rtt_last(row.rtts, row.rtt_next),
            "rtt_p50_seconds": self.medians.median(row.session_id, row.rtts, row.rtt_next),
            "rtt_recent_seconds": rtt_recent(row.rtts, row.rtt_next),
            "missed_pongs": row.missed,
            "buffered_bytes": row.buffered,
            "trace_id": row.trace_id,
            "generated_tokens": _generated(streams),
            "wasted_tokens": _waste(streams),
            "streams": [stream_json(a, now, why, at) for a, why, at in streams],
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


def _stream_matches(query: Query, account: StreamAccount, stuck: Stuck | None) -> bool:
    if query.tenant is not None and account.tenant != query.tenant:
        return False
    if query.model is not None and account.model != query.model:
        return False
    return stuck is not None or not query.stuck


def _at_least(value: float | None, floor: float) -> bool:
    return value is not None and value >= floor


def _or_minus_one(value: float | None) -> float:
    return -1.0 if value is None else value


def _waste(streams: list[Judged]) -> int:
    return sum(a.wasted_tokens for a, _, _ in streams)


def _generated(streams: list[Judged]) -> int:
    return sum(a.generated_tokens for a, _, _ in streams)


def _sorted_streams(accounts: list[StreamAccount], query: Query) -> list[StreamAccount]:
    """HTTP streams have no session: sorted by waste or generated when asked, else by start."""
    if query.sort == "waste":
        return sorted(accounts, key=attrgetter("wasted_tokens"), reverse=query.largest_first)
    if query.sort == "generated":
        return sorted(accounts, key=attrgetter("generated_tokens"), reverse=query.largest_first)
    return sorted(accounts, key=attrgetter("started_at"), reverse=query.descending is True)


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

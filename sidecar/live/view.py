"""The live sessions view: the server's sessions in, the `GET /sessions` answer out (DESIGN §8).

Pure: no sockets, no clock, no event loop. It is asked at most a few times a second and must
stay cheap at 10,000 connections, so it touches every session only through `Fields`: a few
attribute getters (C speed) for the filters and sorts, and the full `SessionRow` (built by
sidecar.live.snapshot) only for sessions that have running streams or are shown. Nothing is
added to the relay path. Only counts, names, ids and timings reach the answer: never prompt or
completion text.

Which streams are stuck: sidecar.live.stuck; their JSON: sidecar.live.shape.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from sidecar.accounting.stream import StreamAccount
from sidecar.live.query import Query
from sidecar.live.rtt import Ring, RttMedians, rtt_last, rtt_recent
from sidecar.live.shape import ended_json, iso, stream_json
from sidecar.live.stuck import AckWatch, Stuck, judge


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
            sid: [
                (a, *judge(row.parked, row.stalled_since, a, acking, now.mono)) for a in row.streams
            ]
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
            [stream_json(a, now.mono) for a in http_shown[: query.limit]],
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
            "streams": [stream_json(a, now.mono, why, at) for a, why, at in streams],
        }


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

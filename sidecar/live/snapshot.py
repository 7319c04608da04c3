"""Reads the running server for the live view when someone asks (`GET /sessions`).

Only fields the ingress keeps anyway are read (sidecar.ingress.websocket `WebSocketSession`,
sidecar.relay.lifecycle `Stream`): the view adds no work per token or per frame. It all runs on
the event loop between two awaits, so one answer is one consistent moment.
"""

from __future__ import annotations

from operator import attrgetter
from typing import TYPE_CHECKING, Any

from sidecar.live.view import Fields, LiveState, Now, SessionRow

if TYPE_CHECKING:
    from sidecar.context import ServerContext


def read(ctx: ServerContext) -> LiveState:
    """Open sessions, then those parked awaiting a resume; running HTTP streams; the latest
    streams to end."""
    return LiveState(
        now=Now(ctx.wall_clock(), ctx.clock()),
        sessions=[*ctx.sessions, *ctx.parked.values()],
        http=[s.account for s in ctx.streams if s.account.session_id is None],
        ended=ctx.ended,
        instance_id=ctx.instance_id,
        fields=SESSION_FIELDS,
    )


def session_row(session: Any) -> SessionRow:
    """Everything the view shows of one `WebSocketSession` (typed loosely: the context holds
    them as `Any`)."""
    parked: bool = session.parked
    handle = session.handle
    return SessionRow(
        session_id=session.id,
        tenant=session.tenant,
        connected_at=session.started_at,
        rtts=session.rtts,
        rtt_next=session.rtt_next,
        missed=session.missed,
        buffered=0 if parked else handle.buffered(),
        stalled_since=session.machine.stalled_since,
        parked=parked,
        trace_id=session.trace.trace_id_hex,
        streams=[live.account for live in session.live.values()],
    )


SESSION_FIELDS = Fields(
    session_id=attrgetter("id"),
    tenant=attrgetter("tenant"),
    connected_at=attrgetter("started_at"),
    missed=attrgetter("missed"),
    ring=attrgetter("rtts", "rtt_next"),
    busy=attrgetter("live"),
    row=session_row,
)

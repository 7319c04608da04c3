"""The live sessions view (sidecar.live.view): rows in, the `GET /sessions` answer out."""

from __future__ import annotations

from array import array
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.accounting.stream import Outcome, StreamAccount
from sidecar.live.query import ENDED_KEPT, MAX_LIMIT, Query, parse_query
from sidecar.live.rtt import RttMedians, rtt_last, rtt_recent
from sidecar.live.stuck import STUCK_AFTER, AckWatch
from sidecar.live.view import LiveState, LiveView, Now, SessionRow

T0 = 1_800_000_000.0  # wall clock of the tests' "now"
NOW = Now(T0, 500.0)


def account(
    stream_id: str = "s1",
    *,
    session: str | None = "sess1",
    tenant: str = "acme",
    model: str = "m",
    deltas: int = 10,
    written: int = 10,
    acked: int | None = None,
    started: float = T0 - 5,
) -> StreamAccount:
    a = StreamAccount(
        stream_id=stream_id,
        request_id="r-" + stream_id,
        session_id=session,
        model=model,
        tenant=tenant,
        ingress="ws" if session else "http",
        path="/v1/chat/completions",
        started_at=started,
        t_start=NOW.mono - 5,
        trace_id="ab" * 16,
    )
    for n in range(deltas):
        a.on_content(NOW.mono - 4 + n * 0.01, "x")
    a.written, a.acked = written, acked
    return a


def session(
    session_id: str = "sess1",
    *,
    tenant: str = "acme",
    rtts: list[float] | None = None,
    rtt_next: int = 0,
    streams: list[StreamAccount] | None = None,
    connected: float = T0 - 60,
    missed: int = 0,
    stalled_since: float | None = None,
    parked: bool = False,
) -> SessionRow:
    return SessionRow(
        session_id=session_id,
        tenant=tenant,
        connected_at=connected,
        rtts=array("d", rtts or []),
        rtt_next=rtt_next,
        missed=missed,
        buffered=0,
        stalled_since=stalled_since,
        parked=parked,
        trace_id=None,
        streams=streams or [],
    )


def answer(
    sessions: list[SessionRow],
    query: Query | None = None,
    http: list[StreamAccount] | None = None,
    ended: list[StreamAccount] | None = None,
    view: LiveView | None = None,
    now: Now = NOW,
) -> dict[str, Any]:
    view = view or LiveView.new()
    return view.answer(query or Query(), LiveState(now, sessions, http or [], ended or [], "i-1"))


def ids(result: dict[str, Any]) -> list[str]:
    return [s["session_id"] for s in result["sessions"]]


def test_the_answer_has_the_contracts_keys() -> None:
    stream = account(deltas=10, written=10, acked=7)
    result = answer([session(rtts=[0.010, 0.030, 0.020], streams=[stream])])
    (s,) = result["sessions"]
    # DESIGN §8's shape.
    assert {"session_id", "tenant", "connected_at", "rtt_last_seconds", "rtt_p50_seconds"} <= set(s)
    assert s["missed_pongs"] == 0 and s["rtt_last_seconds"] == 0.020
    assert s["rtt_p50_seconds"] == 0.020
    assert s["connected_at"] == "2027-01-15T07:59:00.000Z"
    (st,) = s["streams"]
    assert {"id", "model", "started_at", "generated_tokens", "delivered_tokens"} <= set(st)
    assert st["id"] == "r-s1" and st["generated_tokens"] == 10
    assert st["delivered_tokens"] == 7  # an acking client: what it acknowledged
    assert st["wasted_tokens"] == 3 and st["written"] == 10 and st["acked"] == 7
    assert result["totals"] == {
        "sessions": 1,
        "parked": 0,
        "streams": 1,
        "http_streams": 0,
        "stuck_streams": 0,
    }


def test_no_text_ever_reaches_the_answer() -> None:
    stream = account()
    stream.on_content(NOW.mono, "the secret completion")
    result = answer([session(streams=[stream])], http=[account("h", session=None)])
    assert "secret" not in repr(result)


def test_rtt_ring_reads_in_order_once_full() -> None:
    ring = array("d", [4.0, 5.0, 1.0, 2.0, 3.0])  # full, the next write goes to index 2
    assert rtt_last(ring, 2) == 5.0
    assert rtt_recent(ring, 2) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert rtt_recent(ring, 2, 2) == [4.0, 5.0]
    assert rtt_recent(ring, 2, 3) == [3.0, 4.0, 5.0]  # across the ring's wrap
    assert rtt_last(ring, 0) == 3.0  # full, next write at 0: the last one is at the end
    assert rtt_last(array("d", [1.0, 2.0]), 0) == 2.0
    assert rtt_last(None, 0) is None and rtt_recent(None, 0) == []


@given(st.integers(1, 40), st.integers(0, 39), st.integers(1, 50))
def test_rtt_recent_is_the_rings_tail_in_order(size: int, next_at: int, count: int) -> None:
    next_at %= size
    ring = array("d", [float(n) for n in range(size)])
    chronological = [*ring[next_at:], *ring[:next_at]]
    assert rtt_recent(ring, next_at, count) == chronological[-count:]
    assert rtt_last(ring, next_at) == chronological[-1]


def test_median_is_recomputed_only_when_the_ring_changes() -> None:
    medians = RttMedians()
    rtts = array("d", [0.3, 0.1, 0.2])
    assert medians.median("s", rtts, 0) == 0.2
    rtts[1] = 9.0  # changed in place without a new pong: the memo is kept
    assert medians.median("s", rtts, 0) == 0.2
    rtts.append(0.4)
    assert medians.median("s", rtts, 0) == 0.4  # upper median of 0.3, 9.0, 0.2, 0.4
    many = array("d", [float(n) for n in range(100)])
    assert medians.median("t", many, 0) == 85.0  # of the latest 30 (70..99), as plotted
    assert medians.median("s", None, 0) is None


def test_median_memo_forgets_closed_sessions() -> None:
    medians = RttMedians()
    for n in range(200):
        medians.median(f"s{n}", [0.1], 0)
    medians.prune(100, lambda: ["never listed"])
    assert len(medians._memo) == 200  # fewer than twice the open ones: kept
    medians.prune(1, lambda: ["s1"])
    assert list(medians._memo) == ["s1"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (Query(tenant="beta"), ["b"]),
        (Query(min_rtt=0.05), ["b"]),
        (Query(model="big"), ["b"]),
        (Query(stuck=True), ["c"]),
    ],
)
def test_filters(query: Query, expected: list[str]) -> None:
    rows = [
        session("a", tenant="acme", rtts=[0.010], streams=[account("a1", model="small")]),
        session("b", tenant="beta", rtts=[0.080], streams=[account("b1", model="big")]),
        session("c", rtts=[], streams=[account("c1")], stalled_since=NOW.mono - STUCK_AFTER),
    ]
    result = answer(rows, query)
    assert ids(result) == expected
    assert result["matched"]["sessions"] == len(expected)
    assert result["totals"]["sessions"] == 3  # totals are before the filters


def test_model_filter_lists_only_that_models_streams() -> None:
    row = session(streams=[account("x", model="small"), account("y", model="big")])
    (s,) = answer([row], Query(model="big"))["sessions"]
    assert [st["model"] for st in s["streams"]] == ["big"]


def test_sorts_and_limit() -> None:
    rows = [
        session("old", rtts=[0.05], connected=T0 - 300, streams=[account("o", written=1)]),
        session("new", rtts=[0.20], connected=T0 - 10, missed=2),
        session("mid", rtts=[0.01], connected=T0 - 100, streams=[account("m", written=5)]),
    ]
    assert ids(answer(rows)) == ["old", "mid", "new"]  # oldest first by default
    assert ids(answer(rows, Query(sort="rtt"))) == ["new", "old", "mid"]
    assert ids(answer(rows, Query(sort="rtt", descending=False))) == ["mid", "old", "new"]
    assert ids(answer(rows, Query(sort="waste"))) == ["old", "mid", "new"]  # 9, 5, 0 unsent
    assert ids(answer(rows, Query(sort="missed")))[0] == "new"
    assert ids(answer(rows, Query(sort="rtt_p50", limit=1))) == ["new"]
    assert answer(rows, Query(limit=1))["matched"]["sessions"] == 3
    assert ids(answer(rows, Query(sort="generated"))) == ["old", "mid", "new"]  # 10, 10, 0
    assert ids(answer(rows, Query(sort="streams")))[-1] == "new"
    tenants = [session("z", tenant="zeta"), session("a", tenant="alpha")]
    assert ids(answer(tenants, Query(sort="tenant"))) == ["a", "z"]


def test_a_client_that_stops_reading_makes_its_streams_stuck() -> None:
    row = session(streams=[account("a"), account("b")], stalled_since=NOW.mono - 3.0)
    (s,) = answer([row])["sessions"]
    assert [st["stuck"] for st in s["streams"]] == ["not_reading", "not_reading"]
    assert s["streams"][0]["stuck_seconds"] == 3.0
    young = session(streams=[account("a")], stalled_since=NOW.mono - 0.5)
    assert answer([young])["sessions"][0]["streams"][0]["stuck"] is None


def test_a_client_that_stops_acking_is_stuck_from_the_second_look() -> None:
    view = LiveView.new()
    stream = account(deltas=20, written=20, acked=5)
    rows = [session(streams=[stream])]
    first = answer(rows, view=view)
    assert first["sessions"][0]["streams"][0]["stuck"] is None
    later = Now(NOW.wall + 3, NOW.mono + 3)
    (st,) = answer(rows, view=view, now=later)["sessions"][0]["streams"]
    assert st["stuck"] == "not_acking" and st["stuck_seconds"] == 3.0
    stream.on_ack(20)  # it caught up: not stuck, whatever the time
    later = Now(NOW.wall + 9, NOW.mono + 9)
    assert answer(rows, view=view, now=later)["sessions"][0]["streams"][0]["stuck"] is None


def test_ack_watch_needs_waiting_deltas_and_forgets_ended_streams() -> None:
    watch = AckWatch()
    caught_up = account("up", written=5, acked=5)
    behind = account("behind", written=9, acked=5)
    never = account("never", acked=None)
    assert watch.look([caught_up, behind, never], 10.0) == {"behind": 10.0}
    assert watch.look([behind], 20.0) == {"behind": 10.0}
    assert watch.look([], 30.0) == {}
    assert watch.look([behind], 40.0) == {"behind": 40.0}  # forgotten, seen anew


def test_parked_sessions_streams_wait_for_their_client() -> None:
    row = session(parked=True, streams=[account()])
    result = answer([row], Query(stuck=True))
    (s,) = result["sessions"]
    assert s["state"] == "parked" and s["streams"][0]["stuck"] == "client_away"
    assert result["totals"]["parked"] == 1 and result["totals"]["stuck_streams"] == 1


def test_http_streams_have_their_own_list() -> None:
    http = [
        account("h1", session=None, tenant="acme", started=T0 - 2),
        account("h2", session=None, tenant="beta", started=T0 - 9, written=3),
    ]
    result = answer([], http=http)
    assert [s["stream_id"] for s in result["http_streams"]] == ["h2", "h1"]
    assert result["http_streams"][0]["session_id"] is None
    assert [s["stream_id"] for s in answer([], Query(tenant="acme"), http)["http_streams"]] == [
        "h1"
    ]
    assert answer([], Query(sort="waste"), http)["http_streams"][0]["stream_id"] == "h2"
    assert answer([], Query(min_rtt=0.0), http)["http_streams"] == []  # no RTT over HTTP


def test_just_ended_newest_first_with_outcome() -> None:
    ended = []
    for n, outcome in enumerate([Outcome.COMPLETED, Outcome.CLIENT_GONE, Outcome.TIMEOUT]):
        a = account(f"e{n}", tenant="beta" if n == 1 else "acme")
        a.finish(outcome, NOW.mono - 1, unsent=2)
        ended.append(a)
    result = answer([], ended=ended)
    assert [e["outcome"] for e in result["ended"]] == ["timeout", "client_gone", "completed"]
    gone = result["ended"][1]
    assert gone["delivered_tokens"] == 8 and gone["wasted_tokens"] == 2
    assert gone["duration_seconds"] == 4.0
    assert gone["ended_at"] == "2027-01-15T07:59:59.000Z"
    assert [e["stream_id"] for e in answer([], Query(tenant="beta"), ended=ended)["ended"]] == [
        "e1"
    ]
    assert len(answer([], Query(ended=1), ended=ended)["ended"]) == 1


def test_parse_query() -> None:
    assert parse_query("") == Query()
    assert parse_query("tenant=acme&model=m&min_rtt=0.2&stuck=1&sort=rtt&order=asc") == Query(
        tenant="acme", model="m", min_rtt=0.2, stuck=True, sort="rtt", descending=False
    )
    assert parse_query("limit=5&ended=0&tenant=") == Query(limit=5, ended=0)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("colour=red", "unknown parameter 'colour'"),
        ("min_rtt=fast", "not a number: 'fast'"),
        (f"limit={MAX_LIMIT + 1}", "limit must be"),
        (f"ended={ENDED_KEPT + 1}", "limit must be"),
        ("sort=cost", "sort must be one of"),
        ("order=up", "order must be asc or desc"),
        ("stuck=maybe", "stuck must be 1 or 0"),
    ],
)
def test_parse_query_errors_are_one_line(text: str, says: str) -> None:
    message = parse_query(text)
    assert isinstance(message, str) and says in message and "\n" not in message

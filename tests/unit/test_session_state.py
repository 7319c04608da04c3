"""The session state machine, without sockets: every transition and what it asks the shell to do."""

from __future__ import annotations

import orjson
import pytest

from sidecar.accounting.stream import Outcome
from sidecar.ingress.session_state import (
    EXPIRED,
    REVOKED,
    Abort,
    AckStream,
    Action,
    Close,
    ConnectionEnded,
    KeepParked,
    Refused,
    RemoteDelivered,
    ReplayStream,
    Send,
    SessionEnded,
    SessionMachine,
    SessionRules,
    StartStream,
    State,
    StopStream,
)
from sidecar.security.limits import IdleTimer


def gen(stream_id: str) -> bytes:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    return orjson.dumps({"type": "generate", "id": stream_id, "body": body})


def frame(kind: str, **fields: object) -> bytes:
    return orjson.dumps({"type": kind, **fields})


def sent(actions: list[Action]) -> list[dict[str, object]]:
    return [orjson.loads(f) for a in actions if isinstance(a, Send) for f in a.frames]


def machine(grace: float = 0.0, **rules: float) -> SessionMachine:
    return SessionMachine(SessionRules(resume_grace=grace, **rules))  # type: ignore[arg-type]


def started(m: SessionMachine, *ids: str) -> None:
    for stream_id in ids:
        (action,) = m.frame(gen(stream_id), 0.0, 0.0, draining=False)
        assert isinstance(action, StartStream) and action.event.id == stream_id


def test_generate_starts_a_stream_and_frees_its_id_when_it_ends() -> None:
    m = machine()
    started(m, "a")
    assert m.running == {"a"}
    assert sent(m.frame(gen("a"), 0, 0, False))[0]["code"] == "duplicate_id"
    m.stream_ended("a")
    started(m, "a")  # the id may be reused once its stream ended


@pytest.mark.parametrize(
    ("setup", "code", "refusal"),
    [
        ({"draining": True}, "draining", None),
        ({"expires_at": 5.0}, EXPIRED, EXPIRED),
        ({"max_streams": 0}, "too_many_streams", "streams_per_connection"),
    ],
)
def test_generate_refusals(setup: dict[str, object], code: str, refusal: str | None) -> None:
    m = SessionMachine(
        SessionRules(max_streams=int(setup.get("max_streams", 16))),  # type: ignore[arg-type]
        expires_at=setup.get("expires_at"),  # type: ignore[arg-type]
    )
    actions = m.frame(gen("a"), 0.0, 10.0, draining=bool(setup.get("draining")))
    assert sent(actions)[0]["code"] == code and not m.running
    assert [a.limit for a in actions if isinstance(a, Refused)] == ([refusal] if refusal else [])


def test_cancel_ack_ping_and_bad_frames() -> None:
    m = machine()
    started(m, "a")
    assert m.frame(frame("cancel", id="a"), 0, 0, False) == [
        StopStream("a", Outcome.CLIENT_CANCELLED, confirm=True)
    ]
    assert sent(m.frame(frame("cancel", id="zz"), 0, 0, False))[0]["code"] == "unknown_id"
    assert m.frame(frame("ack", id="a", seq=3), 0, 0, False) == [AckStream("a", 3)]
    assert m.frame(frame("ack", id="zz", seq=3), 0, 0, False) == []
    assert sent(m.frame(frame("ping", t=7), 0, 0, False)) == [{"type": "pong", "t": 7}]
    assert m.frame(frame("pong", t=7), 0, 0, False) == []
    assert sent(m.frame(b"{not json", 0, 0, False))[0]["type"] == "error"
    m.stream_ended("a")  # a cancel that crossed its `done` gets a clear answer
    late = sent(m.frame(frame("cancel", id="a"), 0, 0, False))
    assert [(f["code"], f["id"]) for f in late] == [("already_finished", "a")]


def test_connection_lost_without_grace_ends_every_stream_and_the_session() -> None:
    m = machine()
    started(m, "a", "b")
    actions = m.connection_lost("client_closed", {"a": 2})
    assert actions == [
        ConnectionEnded("client_closed", False, {"a": 2}),
        StopStream("a", Outcome.CLIENT_GONE, unsent=2),
        StopStream("b", Outcome.CLIENT_GONE, unsent=0),
        SessionEnded("client_closed"),
    ]
    assert m.state is State.CLOSED
    assert m.connection_lost("client_closed") == []  # once only
    assert m.frame(gen("c"), 0, 0, False) == []  # nothing after the end


def test_too_slow_aborts_first_then_ends_streams_as_too_slow() -> None:
    m = machine(grace=30)
    started(m, "a")
    assert m.too_slow() == [Abort("client_too_slow")]
    actions = m.connection_lost("client_too_slow", {"a": 5})
    assert StopStream("a", Outcome.CLIENT_TOO_SLOW, unsent=5) in actions
    assert m.state is State.CLOSED  # the sidecar's decision: not resumable


def test_grace_parks_then_a_resume_reattaches_and_replays() -> None:
    m = machine(grace=30)
    started(m, "a")
    assert m.connection_lost("heartbeat_timeout", {"a": 1}) == [
        ConnectionEnded("heartbeat_timeout", True, {"a": 1})
    ]
    assert m.state is State.PARKED and m.running == {"a"}
    assert m.frame(gen("b"), 0, 0, False) == []  # nobody is connected
    assert m.tick(100.0, 0.0, 10, 0) == []
    m.attach(expires_at=99.0)
    assert m.state is State.OPEN and m.expires_at == 99.0
    assert m.frame(frame("resume", id="a", after_seq=4), 0, 0, False) == [ReplayStream("a", 4)]
    assert sent(m.frame(frame("resume", id="x", after_seq=0), 0, 0, False))[0]["code"] == (
        "unknown_id"
    )


def test_resume_without_grace_is_unavailable() -> None:
    m = machine()
    started(m, "a")
    assert sent(m.frame(frame("resume", id="a", after_seq=0), 0, 0, False))[0]["code"] == (
        "resume_unavailable"
    )


def test_a_parked_session_expires_as_client_gone() -> None:
    m = machine(grace=30)
    started(m, "a")
    m.connection_lost("client_closed")
    assert m.expire("client_closed") == [
        StopStream("a", Outcome.CLIENT_GONE),
        SessionEnded("client_closed"),
    ]
    assert m.state is State.CLOSED and m.expire("client_closed") == []


def test_no_parking_without_running_streams_or_for_the_sidecars_own_reasons() -> None:
    m = machine(grace=30)
    assert m.connection_lost("client_closed")[-1] == SessionEnded("client_closed")
    m = machine(grace=30)
    started(m, "a")
    assert m.state is State.OPEN
    assert SessionEnded("idle_timeout") in m.connection_lost("idle_timeout")


def test_drain_ends_streams_as_shutdown_and_closes_1012_with_a_retry_hint() -> None:
    m = machine()
    started(m, "a")
    actions = m.drain()
    assert sent(actions)[0]["code"] == "shutdown"
    assert StopStream("a", Outcome.SHUTDOWN) in actions
    assert actions[-1] == Close(1012, "server draining; retry_after_ms=1000")
    assert SessionEnded("server_drain") in actions and m.state is State.CLOSED


def test_drain_of_a_parked_session_ends_it() -> None:
    m = machine(grace=30)
    started(m, "a")
    m.connection_lost("client_closed")
    assert m.drain() == [StopStream("a", Outcome.CLIENT_GONE), SessionEnded("server_drain")]


def test_revoke_rejects_streams_and_closes_1008() -> None:
    m = machine()
    started(m, "a")
    actions = m.revoke()
    assert sent(actions)[0]["code"] == REVOKED
    assert StopStream("a", Outcome.REJECTED, REVOKED) in actions
    assert actions[-1] == Close(1008, "key revoked") and m.state is State.CLOSED
    assert m.revoke() == []


def test_revoke_of_a_parked_session_just_ends_it() -> None:
    m = machine(grace=30)
    started(m, "a")
    m.connection_lost("client_closed")
    assert m.revoke()[-1] == SessionEnded("key_revoked")


def test_token_expiry_refuses_new_streams_then_closes_once_idle() -> None:
    m = SessionMachine(SessionRules(), expires_at=10.0)
    started(m, "a")
    assert m.tick(0.0, 11.0, 0, 0) == []  # a stream runs: let it finish
    assert sent(m.frame(gen("b"), 0, 11.0, False))[0]["code"] == EXPIRED
    m.stream_ended("a")
    actions = m.tick(1.0, 12.0, 0, 0)
    assert actions[-1] == Close(1008, "token expired")
    assert SessionEnded("token_expired") in actions


def test_idle_timeout_closes_politely_and_counts() -> None:
    m = SessionMachine(SessionRules(), IdleTimer(5.0, 0.0))
    assert m.tick(4.0, 0.0, 0, 0) == []
    m.frame(frame("ping", t=1), 4.5, 0, False)  # a frame keeps it alive
    assert m.tick(9.0, 0.0, 0, 0) == []
    actions = m.tick(9.6, 0.0, 0, 0)
    assert actions[0] == Refused("idle_timeout") and actions[-1] == Close(1000, "idle")


def test_a_stalled_send_buffer_aborts_after_send_timeout() -> None:
    m = machine(send_timeout=10.0)
    started(m, "a")
    assert m.tick(0.0, 0.0, unacked=500, acked=100) == []
    assert m.tick(1.0, 0.0, unacked=500, acked=100) == []  # stall starts
    assert m.tick(5.0, 0.0, unacked=500, acked=100) == []
    assert m.tick(11.0, 0.0, unacked=500, acked=100) == [Abort("send_timeout")]
    m2 = machine(send_timeout=10.0)
    for t in range(30):  # progress, however slow, is not a stall
        assert m2.tick(float(t), 0.0, unacked=500, acked=t) == []


def test_app_pings_every_interval_while_open() -> None:
    m = machine(app_ping_interval=5.0)
    assert [f["type"] for f in sent(m.tick(5.0, 1.0, 0, 0))] == ["ping"]
    assert sent(m.tick(6.0, 1.0, 0, 0)) == []
    assert sent(m.tick(10.0, 2.0, 0, 0)) == [{"type": "ping", "t": 2000}]


def test_a_replica_serving_the_client_elsewhere_keeps_the_session_parked_and_reports() -> None:
    m = machine(grace=30)
    started(m, "a")
    assert m.remote_control("delivered", "a", 3) == []  # connected here: not for us
    m.connection_lost("client_closed")
    assert m.remote_control("attach", "a", 3) == [KeepParked()]
    assert m.remote_control("delivered", "a", 9) == [KeepParked(), RemoteDelivered("a", 9, False)]
    assert m.remote_control("detach", "a", 8) == [KeepParked(), RemoteDelivered("a", 8, False)]
    assert m.remote_control("done", "a", 12) == [KeepParked(), RemoteDelivered("a", 12, True)]
    assert m.remote_control("ack", "a", 5) == [KeepParked(), AckStream("a", 5)]
    assert m.remote_control("ack", "gone-already", 5) == [KeepParked()]
    assert m.remote_control("cancel", "a", 10) == [
        KeepParked(),
        RemoteDelivered("a", 10, False),
        StopStream("a", Outcome.CLIENT_CANCELLED),
    ]
    assert m.remote_control("gone", "a", 10)[-1] == StopStream("a", Outcome.CLIENT_GONE)
    assert m.state is State.PARKED  # a stream's end, not the session's


def test_adopted_streams_can_be_resumed_and_cancelled() -> None:
    m = machine(grace=30)
    m.adopt(["r1", "r2"])
    assert m.frame(frame("resume", id="r1", after_seq=4), 0, 0, False) == [ReplayStream("r1", 4)]
    assert m.frame(frame("cancel", id="r2"), 0, 0, False) == [
        StopStream("r2", Outcome.CLIENT_CANCELLED, confirm=True)
    ]
    m.stream_ended("r2")
    assert sent(m.frame(frame("cancel", id="r2"), 0, 0, False))[0]["code"] == "already_finished"

"""The upstream circuit breaker, without sockets."""

from __future__ import annotations

from sidecar.security.gate import ack_budget, is_ack, is_audio_append
from sidecar.upstream.breaker import Breaker, BreakerState


def test_opens_after_threshold_failures_and_refuses_until_the_cooldown() -> None:
    b = Breaker(threshold=3, cooldown=2.0)
    for t in (0.0, 0.1):
        assert b.allow(t)
        b.failed(t)
    assert b.state is BreakerState.CLOSED
    b.failed(0.2)
    assert b.state is BreakerState.OPEN
    assert not b.allow(1.0) and b.retry_after(1.0) >= 1.0
    assert b.allow(2.3) and b.state is BreakerState.HALF_OPEN  # the probe
    assert not b.allow(2.4)  # one probe at a time


def test_a_successful_probe_closes_a_failed_one_doubles_the_cooldown() -> None:
    b = Breaker(threshold=1, cooldown=1.0, max_cooldown=3.0)
    b.failed(0.0)
    assert b.allow(1.0)
    b.failed(1.0)  # probe failed: open for 2 s
    assert not b.allow(2.9) and b.allow(3.1)
    b.failed(3.1)  # capped at 3 s
    assert not b.allow(6.0) and b.allow(6.2)
    b.succeeded()
    assert b.state is BreakerState.CLOSED and b.allow(6.3)
    b.failed(7.0)  # back to the base cooldown
    assert b.allow(8.05)


def test_a_probe_that_never_reports_back_is_replaced() -> None:
    b = Breaker(threshold=1, cooldown=1.0)
    b.failed(0.0)
    assert b.allow(1.0)  # probe sent, then its client left: no verdict
    assert not b.allow(1.5)
    assert b.allow(2.1)


def test_successes_reset_the_count_and_zero_threshold_disables() -> None:
    b = Breaker(threshold=2)
    b.failed(0.0)
    b.succeeded()
    b.failed(0.1)
    assert b.state is BreakerState.CLOSED
    off = Breaker(threshold=0)
    for t in range(10):
        off.failed(float(t))
    assert off.allow(10.0)


def test_acks_are_recognised_cheaply_and_exactly() -> None:
    assert is_ack('{"type":"ack","id":"r1","seq":42}')
    assert is_ack('{ "id": "r1", "seq": 4, "type": "ack" }')
    assert not is_ack('{"type":"generate","id":"ack","body":{}}')
    assert not is_ack('{"type":"ack"' + " " * 200 + "}")  # too long to be an ack
    assert not is_ack('{"type":"ack",')
    assert not is_ack(None)
    assert ack_budget(50) == 250 and ack_budget(100) == 400


def test_realtime_audio_appends_are_recognised_exactly() -> None:
    audio = "A" * 40_000  # 20 ms of 24 kHz PCM16 in base64 is ~1.3 KB; large ones are fine
    assert is_audio_append('{"type":"input_audio_buffer.append","audio":"' + audio + '"}')
    assert is_audio_append('{"audio":"AAAA","type":"input_audio_buffer.append"}')  # any order
    assert not is_audio_append(  # the name elsewhere does not buy the streaming budget
        '{"type":"response.create","response":{"instructions":"input_audio_buffer.append"}}'
    )
    assert not is_audio_append('{"type":"input_audio_buffer.commit"}')
    assert not is_audio_append('{"type":"input_audio_buffer.append",')
    assert not is_audio_append(None)

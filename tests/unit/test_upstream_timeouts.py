"""The rule for a silent model server (sidecar.upstream.timeouts) and its error."""

from __future__ import annotations

import pytest

from sidecar.errors import UpstreamError, UpstreamTimeout
from sidecar.upstream.timeouts import Timeouts


def test_before_the_body_only_the_first_byte_allowance_counts_from_the_request() -> None:
    timeouts = Timeouts(first_byte=10.0, idle=2.0)
    # Headers arrived at 5 (last_read), no body yet: silence since then is not "idle".
    assert timeouts.expired(now=9.9, sent_at=0.0, last_read=5.0, body_started=False) is None
    assert timeouts.expired(10.0, 0.0, 9.9, False) == "first_byte"


def test_once_the_body_flows_the_idle_allowance_counts_from_the_last_read() -> None:
    timeouts = Timeouts(first_byte=10.0, idle=2.0)
    assert timeouts.expired(now=100.0, sent_at=0.0, last_read=98.1, body_started=True) is None
    assert timeouts.expired(100.0, 0.0, 98.0, True) == "idle"


def test_zero_turns_an_allowance_off() -> None:
    assert Timeouts(0.0, 2.0).expired(1e6, 0.0, 0.0, False) is None
    assert Timeouts(10.0, 0.0).expired(1e6, 0.0, 0.0, True) is None
    assert not Timeouts(0.0, 0.0).enabled and Timeouts(0.0, 1.0).enabled


@pytest.mark.parametrize(
    ("first_byte", "idle", "interval"),
    [(300.0, 60.0, 1.0), (1.0, 60.0, 0.25), (0.0, 0.4, 0.1), (0.1, 0.0, 0.05), (0.0, 0.0, 1.0)],
)
def test_the_watchdog_checks_four_times_per_shortest_allowance_within_bounds(
    first_byte: float, idle: float, interval: float
) -> None:
    assert Timeouts(first_byte, idle).interval == interval


def test_the_error_names_the_phase_the_allowance_and_the_option() -> None:
    idle = UpstreamTimeout("idle", 60.0)
    assert isinstance(idle, UpstreamError) and idle.code == "upstream_timeout"
    assert idle.phase == "idle" and idle.status == 504
    assert (
        str(idle) == "model server sent nothing for 60 s while streaming (--upstream-idle-timeout)"
    )
    first = UpstreamTimeout("first_byte", 0.5)
    assert first.phase == "first_byte" and "\n" not in str(first)
    assert str(first).endswith("for 0.5 s after the request (--upstream-first-byte-timeout)")
    assert Timeouts(300.0, 60.0).limit("first_byte") == 300.0
    assert Timeouts(300.0, 60.0).limit("idle") == 60.0

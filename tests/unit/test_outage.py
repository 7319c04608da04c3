"""When an unreachable upstream is logged (sidecar.upstream.outage): once, then once a minute."""

from sidecar.upstream.outage import OutageLog


def test_first_failure_logs_then_at_most_once_per_period_with_the_count() -> None:
    outage = OutageLog(repeat_seconds=60)
    assert outage.failed(100.0) == 1
    assert [outage.failed(100.0 + t) for t in (1, 2, 30)] == [None, None, None]
    assert outage.failed(161.0) == 4  # three quiet failures and this one
    assert outage.failed(162.0) is None


def test_recovery_reports_how_long_it_lasted_once() -> None:
    outage = OutageLog()
    assert outage.reached(5.0) is None  # never down: nothing to say
    outage.failed(10.0)
    outage.failed(20.0)
    assert outage.reached(25.0) == 15.0
    assert outage.reached(26.0) is None
    assert outage.failed(30.0) == 1, "a new outage logs at once"

"""`sidecar top`'s screen (sidecar.live.top.render) from a `/sessions` answer."""

from __future__ import annotations

import io
from typing import Any

import pytest

from sidecar.accounting.stream import Outcome
from sidecar.errors import ConfigError
from sidecar.live import top
from sidecar.live.query import Query
from sidecar.live.top import TopSettings, render
from sidecar.live.view import LiveState, LiveView
from tests.unit.test_live_view import NOW, account, session


def _answer() -> dict[str, Any]:
    running = account("s1", tenant="evil\x1b[2J", model="llama", deltas=40, written=40, acked=10)
    ended = account("e1", model="llama")
    ended.finish(Outcome.CLIENT_GONE, NOW.mono, unsent=3)
    rows = [
        session("sess-aaaaaaaaaaaa", tenant="evil\x1b[2J", rtts=[0.0031], streams=[running]),
        session("sess-bbbbbbbbbbbb", tenant="beta", rtts=[], stalled_since=NOW.mono - 5),
    ]
    return LiveView.new().answer(Query(sort="waste"), LiveState(NOW, rows, [], [ended], "pod-1"))


def test_screen_lists_sessions_streams_and_endings() -> None:
    screen = render(_answer(), TopSettings(), width=200)
    lines = screen.splitlines()
    assert (
        lines[0] == "sidecar top · http://127.0.0.1:9464 · pod-1 · 08:00:00 UTC · sorted by waste"
    )
    assert "sessions 2 (parked 0) · streams 1" in lines[1]
    assert lines[3].split() == [
        "SESSION",
        "TENANT",
        "STATE",
        "AGE",
        "RTT",
        "NOW",
        "RTT",
        "P50",
        "MISSED",
        "STREAMS",
        "GENERATED",
        "WASTE",
    ]
    first = lines[4].split()
    assert first[:2] == ["aaaaaaaaaaaa", "evil\\x1b[2J"]  # control characters escaped
    assert first[4:6] == ["3.1ms", "3.1ms"] and first[-2:] == ["40", "30"]
    assert top._ms(0.00004) == "0.04ms" and top._ms(0.0123) == "12.3ms"
    assert "└ r-s1" in lines[5] and "generated      40  delivered      10" in lines[5]
    assert lines[6].split()[0] == "bbbbbbbbbbbb" and lines[6].split()[4] == "-"
    assert "just ended" in screen and "client_gone" in screen and "wasted      3" in screen
    assert "\x1b" not in screen


def test_screen_fits_the_terminal() -> None:
    screen = render(_answer(), TopSettings(), width=40, height=6)
    lines = screen.splitlines()
    assert len(lines) == 5 and lines[-1].startswith("… ")
    assert max(len(line) for line in lines) <= 40


def test_url_carries_the_filters() -> None:
    settings = TopSettings(admin="http://h:1/", sort="rtt", tenant="a b", stuck=True, limit=7)
    assert settings.url() == "http://h:1/sessions?sort=rtt&limit=7&ended=5&tenant=a+b&stuck=1"


def test_run_refreshes_count_times(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = [_answer(), _answer()]
    monkeypatch.setattr(top, "fetch", lambda _settings: answers.pop())
    out, slept = io.StringIO(), []
    top.run(TopSettings(count=2, interval=0.5), out, slept.append)
    assert out.getvalue().count("sidecar top ·") == 2 and slept == [0.5]
    assert "\x1b[H" not in out.getvalue()  # not a terminal: no clearing


def test_unreachable_admin_is_one_line() -> None:
    with pytest.raises(ConfigError) as raised:
        top.fetch(TopSettings(admin="http://127.0.0.1:1"), timeout=2)
    message = str(raised.value)
    assert message.startswith("--admin http://127.0.0.1:1: cannot read /sessions")
    assert "\n" not in message

"""`--log-format text|json`, `--log-level` and the access log (sidecar.logs, Recorder.finished)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from sidecar import logs
from sidecar.accounting.pricing import PriceBook
from sidecar.accounting.recorder import Recorder
from sidecar.accounting.stream import Outcome, StreamAccount
from sidecar.ledger.writer import Row
from sidecar.telemetry.metrics import Metrics


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def _lines(out: io.StringIO) -> list[str]:
    return out.getvalue().splitlines()


def test_json_lines_carry_timestamp_level_event_and_fields(restore_root: None) -> None:
    out = io.StringIO()
    logs.configure("json", "info", out)
    log = logging.getLogger("sidecar.test")
    log.info("stream end", extra={"event": "stream_end", "stream_id": "s1", "trace_id": "t1"})
    log.debug("not shown at info")
    log.warning("plain %s", "words")
    first, second = (json.loads(line) for line in _lines(out))
    assert first["event"] == "stream_end" and first["level"] == "info"
    assert first["stream_id"] == "s1" and first["trace_id"] == "t1"
    assert first["logger"] == "sidecar.test" and first["message"] == "stream end"
    assert first["ts"].endswith("Z") and first["ts"][:4].isdigit()
    assert second == {**second, "event": "log", "level": "warning", "message": "plain words"}


def test_json_exception_stays_on_one_line(restore_root: None) -> None:
    out = io.StringIO()
    logs.configure("json", "info", out)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("sidecar").exception("failed", extra={"event": "x"})
    (line,) = _lines(out)
    assert "ValueError: boom" in json.loads(line)["exception"]


def test_text_lines_append_fields_as_key_value(restore_root: None) -> None:
    out = io.StringIO()
    logs.configure("text", "warning", out)
    log = logging.getLogger("sidecar.test")
    log.info("hidden at warning")
    log.warning("upstream down", extra={"event": "upstream_unreachable", "why": "no route"})
    (line,) = _lines(out)
    assert line.endswith(
        ' WARNING sidecar.test upstream down event=upstream_unreachable why="no route"'
    )


def test_configure_replaces_handlers_and_quiets_alembic(restore_root: None) -> None:
    logs.configure("text", "debug", io.StringIO())
    handler = logs.configure("json", "info", io.StringIO())
    assert logging.getLogger().handlers == [handler]
    assert logging.getLogger().level == logging.INFO
    assert logging.getLogger("alembic").level == logging.WARNING
    with pytest.raises(ValueError, match="log format"):
        logs.configure("yaml")


def _finished(recorder: Recorder) -> None:
    account = StreamAccount(
        stream_id="s1",
        request_id="r1",
        session_id="sess",
        model="model-a",
        tenant="tenant-a",
        ingress="ws",
        path="/v1/chat/completions",
        started_at=1_700_000_000.0,
        t_start=10.0,
        trace_id="trace-1",
    )
    for n in range(1, 6):
        account.on_content(10.0 + n / 10, "tok")
    account.on_usage(7, 5, final=False)
    account.on_written(3)
    account.finish(Outcome.CLIENT_GONE, 11.0)
    recorder.finished(account, 11.0)


def test_access_log_line_per_finished_stream(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sidecar.access")
    rows: list[Row] = []
    _finished(Recorder(Metrics(), rows.append, PriceBook(), "i", lambda: 0.0))
    (record,) = caplog.records
    fields = logs.extra_fields(record)
    assert fields["event"] == "stream_end" and fields["stream_id"] == "s1"
    assert fields["outcome"] == "client_gone" and fields["ingress"] == "ws"
    assert fields["generated_tokens"] == 5 and fields["delivered_tokens"] == 3
    assert fields["wasted_tokens"] == 2 and fields["duration_s"] == 1.0
    assert fields["session_id"] == "sess" and fields["trace_id"] == "trace-1"
    assert fields["tenant"] == "tenant-a" and fields["prompt_tokens"] == 7


def test_access_log_can_be_turned_off(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sidecar.access")
    rows: list[Row] = []
    _finished(Recorder(Metrics(), rows.append, PriceBook(), "i", lambda: 0.0, access_log=False))
    assert caplog.records == [] and len(rows) == 1

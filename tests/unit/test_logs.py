"""`--log-format text|json`, `--log-level` and the access log (sidecar.logs, Recorder.finished)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from sidecar import logs
from sidecar.accounting.pricing import PriceBook
from sidecar.accounting.recorder import Recorder
from sidecar.accounting.stream import Outcome, StreamAccount
from sidecar.ledger.writer import Row
from sidecar.telemetry.metrics import Metrics
from tests.unit.test_accounting import account as make_account


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
    _finished(Recorder(Metrics(), rows.append, PriceBook(), "i", lambda: 0.0, access_log=None))
    assert caplog.records == [] and len(rows) == 1


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_serve_access_log_lines_match_the_root_format(restore_root: None, log_format: str) -> None:
    """`serve`'s batched access log writes the line the root handler would have written."""
    through_logging, batched = io.StringIO(), io.StringIO()
    logs.configure(log_format, "info", through_logging)
    _finished(Recorder(Metrics(), [].append, PriceBook(), "i", lambda: 0.0))
    _finished(
        Recorder(
            Metrics(), [].append, PriceBook(), "i", lambda: 0.0, logs.AccessLog(log_format, batched)
        )
    )
    (expected,), (line,) = _lines(through_logging), _lines(batched)
    # Equal but for the timestamp (the first field in both formats).
    if log_format == "json":
        assert {**json.loads(line), "ts": 0} == {**json.loads(expected), "ts": 0}
    else:
        assert line.split(" ", 1)[1] == expected.split(" ", 1)[1]
        assert " INFO sidecar.access stream end event=stream_end stream_id=s1 " in line


def test_serve_access_log_writes_in_batches_on_a_timer(restore_root: None) -> None:
    logs.configure("json", "info", io.StringIO())
    asyncio.run(_batches_on_a_timer())


async def _batches_on_a_timer() -> None:
    out = io.StringIO()
    access = logs.AccessLog("json", out, interval=0.05)
    for n in range(3):
        access({"event": "stream_end", "stream_id": f"s{n}"})
    assert out.getvalue() == ""  # nothing yet: one write for the batch
    await asyncio.sleep(0.2)
    assert [json.loads(line)["stream_id"] for line in _lines(out)] == ["s0", "s1", "s2"]
    access({"event": "stream_end", "stream_id": "s3"})
    access.close()  # what waits is written at exit
    assert len(_lines(out)) == 4


def test_serve_access_log_flushes_when_its_buffer_is_full(restore_root: None) -> None:
    logs.configure("text", "info", io.StringIO())
    asyncio.run(_flushes_when_full())


async def _flushes_when_full() -> None:
    out = io.StringIO()
    access = logs.AccessLog("text", out, interval=60, max_bytes=500)
    for n in range(22):
        access({"event": "stream_end", "stream_id": f"s{n}", "model": "m" * 40})
    written = len(_lines(out))
    assert 0 < written < 22  # flushed by size, long before the 60 s timer
    access.close()
    assert len(_lines(out)) == 22


def test_serve_access_log_follows_the_log_level(restore_root: None) -> None:
    logs.configure("text", "warning", io.StringIO())
    out = io.StringIO()
    access = logs.AccessLog("text", out)
    access({"event": "stream_end", "stream_id": "s1"})
    access.close()
    assert out.getvalue() == ""


def test_serve_access_log_survives_a_closed_stream(restore_root: None) -> None:
    logs.configure("text", "info", io.StringIO())
    out = io.StringIO()
    out.close()
    logs.AccessLog("text", out)({"event": "stream_end", "stream_id": "s1"})  # no loop: writes now


def _completed(recorder: Recorder, usage_after_ahead: bool = False) -> None:
    account = make_account(stream_id="s2", request_id="r2", ingress="http")
    recorder.started(account)
    for n in range(1, 4):
        account.on_content(10.0 + n / 10, "tok")
    account.on_written(3)
    if not usage_after_ahead:
        account.on_usage(7, 3, final=True)
    recorder.completed_ahead(account, 10.5)
    if usage_after_ahead:
        account.on_usage(7, 3, final=True)
    account.finish(Outcome.COMPLETED, 10.6)
    recorder.finished(account, 10.6)


def test_a_completed_stream_keeps_the_final_row_written_ahead() -> None:
    rows: list[Row] = []
    _completed(Recorder(Metrics(), rows.append, PriceBook(), "i", lambda: 0.0, None))
    start, final = rows  # no third copy of the same final row
    assert start.final is False and final.values["outcome"] == "completed"
    assert final.values["generated_tokens"] == final.values["delivered_tokens"] == 3


def test_a_final_row_that_differs_from_the_one_ahead_is_written() -> None:
    rows: list[Row] = []
    _completed(Recorder(Metrics(), rows.append, PriceBook(), "i", lambda: 0.0, None), True)
    _start, ahead, final = rows
    assert ahead.values["count_source"] == "counted" and final.values["count_source"] == "usage"
    assert final.values["prompt_tokens"] == 7


def test_writing_the_final_row_ahead_leaves_the_running_account_as_it_was() -> None:
    rows: list[Row] = []
    recorder = Recorder(Metrics(), rows.append, PriceBook(), "i", lambda: 0.0, None)
    account = make_account(stream_id="s3", request_id="r3")
    account.on_content(10.1, "tok")
    recorder.completed_ahead(account, 10.2)
    assert (account.outcome, account.t_end, account.written) == (None, None, 0)
    assert rows[-1].values["outcome"] == "completed" and rows[-1].values["delivered_tokens"] == 1


@pytest.mark.parametrize(
    "created",
    [0.0, 0.0005, 1.999, 2.9999999, 1_767_225_599.9996, 1_767_225_600.0, 1_800_000_000.123456],
)
def test_timestamps_are_utc_milliseconds_like_datetimes(created: float) -> None:
    expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    assert logs._timestamp(created) == expected.replace("+00:00", "Z")
    assert logs._timestamp(created + 1) != logs._timestamp(created)  # the cached second moves


def test_text_line_quotes_values_that_need_it_and_writes_none_as_a_dash() -> None:
    fields = {"a": None, "b": 3, "c": 0.25, "d": "plain", "e": "two words", "f": 'say "hi"'}
    fields |= {"g": "", "h": True, "i": ("x",)}
    line = logs.text_line(0.0, "INFO", "sidecar.access", "stream end", fields)
    assert line == (
        "1970-01-01T00:00:00.000Z INFO sidecar.access stream end a=- b=3 c=0.25 d=plain "
        'e="two words" f="say \\"hi\\"" g="" h=True i=(\'x\',)'
    )

"""Log output of `sidecar serve` (DESIGN §8): `--log-format text|json` and `--log-level`.

Code logs with the standard library and passes what a machine should read as `extra` fields:
`log.info("stream end", extra={"event": "stream_end", "stream_id": ..., ...})`. The JSON
formatter writes one object per line with `ts`, `level`, `logger`, `event` and `message` and every
extra field; the text formatter appends the same fields as `key=value`. Records without an
`event` get `event: "log"`, so every JSON line has one.

uvicorn's loggers are left without handlers of their own (`log_config=None` in `serve`) and so
reach the root handler installed here, in the same format.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any, Final, TextIO

import orjson

FORMATS: Final = ("text", "json")
LEVELS: Final = ("debug", "info", "warning", "error")

# Attributes every LogRecord has; anything else on a record came in through `extra`.
_STANDARD: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _timestamp(created: float) -> str:
    """`2026-01-01T00:00:00.000Z`. The part up to the second is formatted once per second:
    the access log writes a line per stream, hundreds a second."""
    global _last_second
    second = int(created)
    micro = round((created - second) * 1_000_000)  # as datetime rounds, then truncated to ms
    if micro >= 1_000_000:
        second, micro = second + 1, micro - 1_000_000
    cached = _last_second  # read once: the ledger writer's thread logs too
    if cached[0] != second:
        stamp = datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds")
        cached = _last_second = (second, stamp[:-6])  # without "+00:00"
    return f"{cached[1]}.{micro // 1000:03d}Z"


_last_second: tuple[int, str] = (-1, "")


def json_line(created: float, level: str, name: str, message: str, fields: dict[str, Any]) -> str:
    line: dict[str, Any] = {
        "ts": _timestamp(created),
        "level": level.lower(),
        "logger": name,
        "event": "log",
        "message": message,
    }
    line.update(fields)
    return orjson.dumps(line, default=str).decode()


def text_line(created: float, level: str, name: str, message: str, fields: dict[str, Any]) -> str:
    parts = [_timestamp(created), level, name, message]
    for key, value in fields.items():  # `_text` inline for the usual values: a line per stream
        kind = value.__class__
        if value is None:
            parts.append(f"{key}=-")
        elif (
            kind is int
            or kind is float
            or (kind is str and value and " " not in value and '"' not in value)
        ):
            parts.append(f"{key}={value}")
        else:
            parts.append(f"{key}={_text(value)}")
    return " ".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; values that JSON cannot hold are written as strings."""

    def format(self, record: logging.LogRecord) -> str:
        fields = extra_fields(record)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            fields["exception"] = record.exc_text
        return json_line(record.created, record.levelname, record.name, record.getMessage(), fields)


class TextFormatter(logging.Formatter):
    """`2026-01-01T00:00:00.000Z INFO sidecar.access stream end outcome=completed ...`."""

    def format(self, record: logging.LogRecord) -> str:
        text = text_line(
            record.created,
            record.levelname,
            record.name,
            record.getMessage(),
            extra_fields(record),
        )
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            text += "\n" + record.exc_text
        return text


def _text(value: object) -> str:
    text = "-" if value is None else str(value)
    return orjson.dumps(text).decode() if (" " in text or '"' in text or not text) else text


def configure(
    log_format: str = "text", level: str = "info", stream: TextIO | None = None
) -> logging.Handler:
    """Replace the root logger's handlers with one writing `log_format` lines to `stream`
    (stderr by default) at `level`. Returns the handler (for the redaction filter)."""
    if log_format not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {log_format!r}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Alembic narrates every connection at info; `serve --migrate` logs its own one line.
    logging.getLogger("alembic").setLevel(max(root.level, logging.WARNING))
    return handler


ACCESS_LOGGER: Final = "sidecar.access"
access_logger = logging.getLogger(ACCESS_LOGGER)


def log_access(fields: dict[str, Any]) -> None:
    """One access-log line through `logging` (a library's or a test's Recorder)."""
    if access_logger.isEnabledFor(logging.INFO):
        access_logger.info("stream end", extra=fields)


class AccessLog:
    """`serve`'s access log (one line per finished stream), written in batches.

    Through `logging`, a line costs a LogRecord, a caller lookup, the handler's lock and a
    write with a flush: about 80 µs of the event loop per stream under load (py-spy,
    docs/benchmarks.md). Here the line is formatted from its fields like the root handler's
    (`--log-format`) and kept until the next flush, at most `interval` seconds later or as soon
    as `max_bytes` wait: one write for many streams, like nginx's `access_log ... buffer=
    flush=`. `close()` writes what is left. `--log-level warning` turns it off, as before.
    """

    def __init__(
        self,
        log_format: str = "text",
        stream: TextIO | None = None,
        interval: float = 0.25,
        max_bytes: int = 64 * 1024,
    ) -> None:
        self._line = json_line if log_format == "json" else text_line
        self._stream = stream
        self.interval = interval
        self.max_bytes = max_bytes
        self._lines: list[str] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None

    def __call__(self, fields: dict[str, Any]) -> None:
        if not access_logger.isEnabledFor(logging.INFO):
            return
        line = self._line(time.time(), "INFO", ACCESS_LOGGER, "stream end", fields)
        self._lines.append(line)
        self._size += len(line)
        if self._size >= self.max_bytes:
            self.flush()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(self.interval, self.flush)
            except RuntimeError:  # no event loop (a command, a test): write it now
                self.flush()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lines:
            return
        text = "\n".join(self._lines) + "\n"
        self._lines.clear()
        self._size = 0
        stream = self._stream if self._stream is not None else sys.stderr
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):  # stderr closed or full: an access log never stops serving
            pass

    close = flush

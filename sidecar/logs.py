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

import logging
import sys
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


def _timestamp(record: logging.LogRecord) -> str:
    stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line; values that JSON cannot hold are written as strings."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": "log",
            "message": record.getMessage(),
        }
        line.update(extra_fields(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """`2026-01-01T00:00:00.000Z INFO sidecar.access stream end outcome=completed ...`."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={_text(v)}" for k, v in extra_fields(record).items())
        text = f"{_timestamp(record)} {record.levelname} {record.name} {record.getMessage()}"
        if fields:
            text += " " + fields
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

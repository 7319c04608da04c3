"""Secrets out of logs and error messages.

Two nets: the exact secrets this process knows (the upstream API key, the JWT secret), and
patterns for credentials it does not know (bearer tokens, sidecar API keys, JWTs, passwords in
URLs, `token=`/`api_key=` query parameters). `RedactingFilter` applies both to every log record
handled by the root logger's handlers.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

MASK = "[REDACTED]"

_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"sk_sc_[A-Za-z0-9]+_[A-Za-z0-9_-]+"),
    re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),
    re.compile(r"(?i)((?:^|[?&;\s])(?:token|api_key|access_token)=)[^&\s\"']+"),
    re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s]+(@)"),
    re.compile(r"(?i)(bearer\.)[A-Za-z0-9._~+/=-]+"),
)


class Redactor:
    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        for pattern in _PATTERNS:
            text = pattern.sub(_mask, text)
        return text


def _mask(match: re.Match[str]) -> str:
    groups = [g for g in match.groups() if g is not None]
    if not groups:
        return MASK
    if len(groups) == 2:  # scheme://user:<password>@
        return groups[0] + MASK + groups[1]
    return groups[0] + MASK


class RedactingFilter(logging.Filter):
    """Rewrites the formatted message of each record (and drops its args)."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        redacted = self.redactor(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor(record.exc_text)
        record.msg, record.args = redacted, None
        return True


def install(secrets: Iterable[str | None]) -> RedactingFilter:
    """Attach a redacting filter to every handler of the root logger (call after logging is
    configured)."""
    filt = RedactingFilter(Redactor(secrets))
    root = logging.getLogger()
    for handler in root.handlers:
        handler.addFilter(filt)
    return filt

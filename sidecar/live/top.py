"""`sidecar top`: the live sessions of a running sidecar in a terminal, refreshed in place.

It polls the admin listener's `GET /sessions` (the same answer `/ui` shows); `render` is pure
(an answer in, the screen's text out), `run` is the loop around it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from sidecar.errors import ConfigError
from sidecar.ledger.render import display

CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear screen
ENDED_SHOWN = 5


@dataclass(frozen=True, slots=True)
class TopSettings:
    admin: str = "http://127.0.0.1:9464"
    admin_token: str | None = None
    sort: str = "waste"
    tenant: str | None = None
    model: str | None = None
    stuck: bool = False
    limit: int = 50
    interval: float = 1.0
    count: int = 0  # refreshes before exiting; 0: until interrupted
    format: str = "table"  # or json: one answer per line

    def url(self) -> str:
        params = {"sort": self.sort, "limit": str(self.limit), "ended": str(ENDED_SHOWN)}
        if self.tenant:
            params["tenant"] = self.tenant
        if self.model:
            params["model"] = self.model
        if self.stuck:
            params["stuck"] = "1"
        return self.admin.rstrip("/") + "/sessions?" + urllib.parse.urlencode(params)


def fetch(settings: TopSettings, timeout: float = 5.0) -> dict[str, Any]:
    """One answer from the admin listener; a failure is one line saying what to check."""
    request = urllib.request.Request(settings.url())
    if settings.admin_token:
        request.add_header("Authorization", f"Bearer {settings.admin_token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer: dict[str, Any] = json.load(response)
            return answer
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise ConfigError(
                f"--admin {settings.admin}: this sidecar wants its admin token; "
                "pass --admin-token or set SIDECAR_ADMIN_TOKEN"
            ) from None
        raise ConfigError(f"--admin {settings.admin}: {_error_message(exc)}") from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(
            f"--admin {settings.admin}: cannot read /sessions ({reason}); is `sidecar serve` "
            "running with --admin-listen there?"
        ) from None


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.load(exc)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {exc.code}"


def run(
    settings: TopSettings,
    out: TextIO = sys.stdout,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Refresh until interrupted (or `count` times); on a terminal, in place."""
    refreshed = 0
    in_place = settings.format == "table" and out.isatty()
    while True:
        answer = fetch(settings)
        if settings.format == "json":
            out.write(json.dumps(answer, separators=(",", ":")) + "\n")
        else:
            # A terminal gets what fits on its screen; a pipe or a file gets every line whole.
            size = shutil.get_terminal_size() if in_place else os.terminal_size((0, 0))
            screen = render(answer, settings, size.columns, size.lines)
            out.write((CLEAR if in_place else "") + screen + ("" if in_place else "\n"))
        out.flush()
        refreshed += 1
        if settings.count and refreshed >= settings.count:
            return
        sleep(settings.interval)


COLUMNS = (
    ("SESSION", 12),
    ("TENANT", 14),
    ("STATE", 6),
    ("AGE", 7),
    ("RTT NOW", 9),
    ("RTT P50", 9),
    ("MISSED", 6),
    ("STREAMS", 7),
    ("GENERATED", 10),
    ("WASTE", 8),
)


def render(answer: dict[str, Any], settings: TopSettings, width: int, height: int = 0) -> str:
    """The screen for one answer; `width` and `height` > 0 cut it to fit a terminal."""
    t = answer["totals"]
    lines = [
        f"sidecar top · {settings.admin} · {display(answer['instance_id'])} · "
        f"{answer['now'][11:19]} UTC · sorted by {settings.sort}",
        f"sessions {t['sessions']} (parked {t['parked']}) · streams {t['streams']} · "
        f"http streams {t['http_streams']} · stuck {t['stuck_streams']} · "
        f"showing {len(answer['sessions'])} of {answer['matched']['sessions']}",
        "",
        _row([name for name, _ in COLUMNS]),
    ]
    for s in answer["sessions"]:
        lines.append(
            _row(
                [
                    s["session_id"][-12:],
                    display(s["tenant"]),
                    s["state"],
                    _age(s["connected_seconds"]),
                    _ms(s["rtt_last_seconds"]),
                    _ms(s["rtt_p50_seconds"]),
                    str(s["missed_pongs"]),
                    str(len(s["streams"])),
                    f"{s['generated_tokens']:,}",
                    f"{s['wasted_tokens']:,}",
                ]
            )
        )
        lines.extend(_stream_line(stream) for stream in s["streams"])
    if answer["http_streams"]:
        lines += ["", "HTTP streams"]
        lines.extend(_stream_line(stream) for stream in answer["http_streams"])
    if answer["ended"]:
        lines += ["", "just ended"]
        lines.extend(_ended_line(stream) for stream in answer["ended"])
    if height > 0 and len(lines) > height - 1:
        lines = [*lines[: height - 2], f"… {len(lines) - height + 2} more lines"]
    return "\n".join(line[:width] if width > 0 else line for line in lines)


def _row(cells: list[str]) -> str:
    return " ".join(cell[:w].ljust(w) for cell, (_, w) in zip(cells, COLUMNS, strict=True))


def _stream_line(s: dict[str, Any]) -> str:
    stuck = f"  STUCK {s['stuck']}" if s["stuck"] else ""
    if s["stuck_seconds"] is not None:
        stuck += f" {s['stuck_seconds']:.1f}s"
    return (
        f"  └ {display(s['id'])[:16]:<16} {display(s['model'])[:28]:<28} "
        f"generated {s['generated_tokens']:>7,}  delivered {s['delivered_tokens']:>7,}"
        f"{stuck}  trace {s['trace_id'] or '-'}"
    )


def _ended_line(s: dict[str, Any]) -> str:
    return (
        f"  {s['ended_at'][11:19]} {s['outcome']:<16} {display(s['tenant'])[:14]:<14} "
        f"{display(s['model'])[:28]:<28} generated {s['generated_tokens']:>7,}  "
        f"delivered {s['delivered_tokens']:>7,}  wasted {s['wasted_tokens']:>6,}"
    )


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.{2 if seconds < 0.001 else 1}f}ms"  # loopback: tens of µs


def _age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"

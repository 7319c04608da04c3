"""The JSON of streams in the live view's answer: counts, names, ids and timings, never text."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sidecar.accounting.stream import StreamAccount
from sidecar.live.stuck import Stuck


def stream_json(
    account: StreamAccount, mono: float, stuck: Stuck | None = None, since: float | None = None
) -> dict[str, Any]:
    """A running stream at monotonic time `mono`: its counts so far (waste: what would be
    wasted if it ended now), and why it is stuck since when, if it is."""
    return {
        **_stream_fields(account),
        "idle_seconds": _round(mono - (account.t_last or account.t_start)),
        "stuck": None if stuck is None else stuck.value,
        "stuck_seconds": None if since is None else _round(mono - since),
    }


def ended_json(account: StreamAccount) -> dict[str, Any]:
    """A stream that just ended, with its outcome (the ledger row's final counts)."""
    duration = account.duration or 0.0
    return {
        **_stream_fields(account),
        "outcome": None if account.outcome is None else account.outcome.value,
        "error_code": account.error_code,
        "ended_at": iso(account.started_at + duration),
        "duration_seconds": _round(duration),
    }


def _stream_fields(account: StreamAccount) -> dict[str, Any]:
    ttft = account.time_to_first_token
    return {
        "id": account.request_id,
        "stream_id": account.stream_id,
        "session_id": account.session_id,
        "tenant": account.tenant,
        "model": account.model,
        "ingress": account.ingress,
        "path": account.path,
        "started_at": iso(account.started_at),
        "generated_tokens": account.generated_tokens,
        "delivered_tokens": account.delivered_tokens,
        "wasted_tokens": account.wasted_tokens,
        "written": account.written,
        "acked": account.acked,
        "ttft_seconds": None if ttft is None else _round(ttft),
        "trace_id": account.trace_id,
    }


def _round(seconds: float) -> float:
    return round(seconds, 6)


def iso(epoch: float) -> str:
    """UTC, milliseconds, `Z`: what the other JSON answers and the ledger use."""
    moment = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
    return moment.replace("+00:00", "Z")

"""What `GET /sessions` (and so `/ui` and `sidecar top`) is asked: filters, sort, limits."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
DEFAULT_ENDED = 20
ENDED_KEPT = 200  # streams that just ended, kept by the server for this view
PARAMS = frozenset({"tenant", "model", "min_rtt", "stuck", "sort", "order", "limit", "ended"})

# Sort keys and their natural order (True: largest first).
SORTS: dict[str, bool] = {
    "connected": False,  # oldest first: rows stay put while the page refreshes
    "rtt": True,
    "rtt_p50": True,
    "waste": True,  # generated but not (yet) delivered
    "generated": True,
    "missed": True,
    "streams": True,
    "tenant": False,
}


@dataclass(frozen=True, slots=True)
class Query:
    tenant: str | None = None
    model: str | None = None
    min_rtt: float | None = None  # seconds; sessions without an RTT yet do not match
    stuck: bool = False
    sort: str = "connected"
    descending: bool | None = None  # None: the sort's natural order
    limit: int = DEFAULT_LIMIT
    ended: int = DEFAULT_ENDED  # how many just-ended streams to include

    @property
    def largest_first(self) -> bool:
        return SORTS[self.sort] if self.descending is None else self.descending

    @property
    def by_stream(self) -> bool:
        """Only sessions with a matching stream can match."""
        return self.model is not None or self.stuck


def parse_query(query_string: str) -> Query | str:
    """The query from `?tenant=&model=&min_rtt=&stuck=1&sort=&order=&limit=&ended=`, or a
    one-line message saying what is wrong with it."""
    params = {k: v[-1] for k, v in parse_qs(query_string, keep_blank_values=True).items()}
    unknown = sorted(set(params) - PARAMS)
    if unknown:
        return f"unknown parameter {unknown[0]!r}; use {', '.join(sorted(PARAMS))}"
    try:
        min_rtt = float(params["min_rtt"]) if params.get("min_rtt") else None
        limit = int(params.get("limit") or DEFAULT_LIMIT)
        ended = int(params.get("ended") or DEFAULT_ENDED)
    except ValueError as exc:
        return f"not a number: {str(exc).rpartition(': ')[2]}"
    if not 0 <= limit <= MAX_LIMIT or not 0 <= ended <= ENDED_KEPT:
        return f"limit must be 0..{MAX_LIMIT} and ended 0..{ENDED_KEPT}"
    sort = params.get("sort") or "connected"
    if sort not in SORTS:
        return f"sort must be one of {', '.join(SORTS)}"
    order = params.get("order") or ""
    if order not in ("", "asc", "desc"):
        return "order must be asc or desc"
    stuck = params.get("stuck", "0")
    if stuck not in ("", "0", "1", "true", "false"):
        return "stuck must be 1 or 0"
    return Query(
        tenant=params.get("tenant") or None,
        model=params.get("model") or None,
        min_rtt=min_rtt,
        stuck=stuck in ("", "1", "true"),
        sort=sort,
        descending=None if not order else order == "desc",
        limit=limit,
        ended=ended,
    )

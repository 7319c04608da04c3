"""What the simulated server really did, reported at `GET /sim/stats`.

`requests, active, completed, aborted, tokens_generated` are a contract (DESIGN §8). Every
request (and every realtime response) ends as exactly one of completed (ran to its end),
aborted (its client left or cancelled) or failed (an error answer, an error event or a dropped
connection), so `requests == active + completed + aborted + failed`.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

MAX_REQUEST_DETAIL = 10_000


@dataclass(slots=True)
class SimStats:
    requests: int = 0
    active: int = 0
    completed: int = 0
    aborted: int = 0
    failed: int = 0
    tokens_generated: int = 0
    abort_requests: list[str] = field(default_factory=list)  # rids of POST /abort_request
    by_request: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: Counter[str] = field(default_factory=Counter)  # fault name -> times it happened
    by_route: Counter[str] = field(default_factory=Counter)
    realtime_sessions: int = 0
    realtime_active_sessions: int = 0
    realtime_responses: int = 0

    def as_json(self, detail: bool) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "requests": self.requests,
            "active": self.active,
            "completed": self.completed,
            "aborted": self.aborted,
            "failed": self.failed,
            "tokens_generated": self.tokens_generated,
            "abort_requests": len(self.abort_requests),
            "faults": dict(self.faults),
            "by_route": dict(self.by_route),
            "realtime": {
                "sessions": self.realtime_sessions,
                "active_sessions": self.realtime_active_sessions,
                "responses": self.realtime_responses,
            },
        }
        if detail:
            stats["by_request"] = self.by_request
            stats["abort_request_ids"] = self.abort_requests[-1000:]
        return stats

    def begin(self, request_id: str, route: str, model: str, prompt_tokens: int) -> Tally:
        """Count one request in; its Tally counts its tokens and how it ended."""
        self.requests += 1
        self.active += 1
        self.by_route[route] += 1
        detail: dict[str, Any] = {
            "generated": 0,
            "outcome": "active",
            "model": model,
            "route": route,
            "prompt_tokens": prompt_tokens,
        }
        if len(self.by_request) >= MAX_REQUEST_DETAIL:
            del self.by_request[next(iter(self.by_request))]
        self.by_request[request_id] = detail
        return Tally(self, detail)


@dataclass(slots=True)
class Tally:
    """One request's share of the stats; `end` is idempotent (the first outcome wins)."""

    stats: SimStats
    detail: dict[str, Any]
    generated: int = 0
    ended: bool = False

    def token(self) -> None:
        self.generated += 1
        self.stats.tokens_generated += 1
        self.detail["generated"] = self.generated

    def fault(self, name: str) -> None:
        self.stats.faults[name] += 1
        faults = self.detail.setdefault("faults", {})
        faults[name] = faults.get(name, 0) + 1

    def end(self, outcome: str) -> None:
        """outcome: completed, aborted or failed."""
        if self.ended:
            return
        self.ended = True
        self.stats.active -= 1
        self.detail["outcome"] = outcome
        self.detail["ended_at"] = time.time()
        if outcome == "completed":
            self.stats.completed += 1
        elif outcome == "aborted":
            self.stats.aborted += 1
        else:
            self.stats.failed += 1

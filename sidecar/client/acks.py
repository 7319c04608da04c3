"""Batched acks: at most one per stream per interval, cumulative (the highest rendered seq),
and only while the client's message budget has a token (`policy.MessageBudget`). A stream that
has to wait keeps its place; the next flush sends its latest seq."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from sidecar.client.policy import MessageBudget
from sidecar.client.stream import Stream


class AckBatcher:
    def __init__(
        self, interval: float, budget: MessageBudget, send: Callable[[dict[str, Any]], bool]
    ) -> None:
        self.interval = interval
        self.budget = budget
        self._send = send  # False while there is no connection: the acks wait for the next
        self._dirty: dict[str, Stream] = {}
        self._timer: asyncio.TimerHandle | None = None

    def mark(self, stream: Stream) -> None:
        """`stream.rendered_seq` moved."""
        self._dirty[stream.id] = stream
        self._schedule()

    def discard(self, stream_id: str) -> None:
        self._dirty.pop(stream_id, None)

    def clear(self) -> None:
        self._dirty.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def flush(self, force: bool = False) -> None:
        """Send what the budget allows (everything with `force`, when closing)."""
        now = time.monotonic()
        for stream in list(self._dirty.values()):
            if stream.ended or stream.rendered_seq <= stream.acked_seq:
                del self._dirty[stream.id]
                continue
            if force:
                self.budget.spend(now)
            elif not self.budget.try_take(now):
                break
            if not self._send({"type": "ack", "id": stream.id, "seq": stream.rendered_seq}):
                return
            stream.acked_seq = stream.rendered_seq
            del self._dirty[stream.id]
        self._schedule()

    def _schedule(self) -> None:
        if self._dirty and self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.interval, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.flush()

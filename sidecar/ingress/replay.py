"""What a resumable stream keeps for a resume (`--on-disconnect grace`): its recent deltas as
text, compact, within byte bounds per connection and per process.

Why not the frames: orjson returns every frame in a 4 KiB allocation (its initial buffer,
never shrunk), so a buffer of frames cost ~4 KiB per delta and scattered the heap in blocks
the allocator could not give back. Here a stream's texts are one `bytearray` of UTF-8 and a
deque of their lengths: the text's bytes plus about 8 per delta. Frames are built again on
a resume, which is rare.

When a bound is reached, oldest deltas are dropped: past its count bound, the stream's own;
past the connection's byte bound, those of the connection's stream that holds the most bytes
(so a stream that started later is not starved by one that filled the bound first); past the
process's byte bound, the appending stream's own. Each stream keeps a window of its newest
deltas, and a resume from before that window is refused as too late. Deltas the client has
acknowledged (`ack`) are dropped at once: a resume never asks for them again.
"""

from __future__ import annotations

import sys
from collections import deque

# What a kept delta costs beyond its text: its length in the deque (8 bytes; lengths up to
# 256 are shared int objects, longer ones an int of their own).
SMALL_DELTA_OVERHEAD = 8
LARGE_DELTA_OVERHEAD = 40


def delta_cost(size: int) -> int:
    return size + (SMALL_DELTA_OVERHEAD if size <= 256 else LARGE_DELTA_OVERHEAD)


class ReplayBudget:
    """Bytes the replay buffers under it may hold: one per connection, under the process's
    (`parent`). A `limit` of 0 means no bound of its own."""

    __slots__ = ("limit", "members", "parent", "used")

    def __init__(self, limit: int, parent: ReplayBudget | None = None) -> None:
        self.limit = limit or sys.maxsize
        self.parent = parent
        self.used = 0
        self.members: set[ReplayBuffer] = set()  # the buffers charged here directly

    def charge(self, size: int) -> None:
        self.used += size
        if self.parent is not None:
            self.parent.used += size

    def over(self) -> bool:
        parent = self.parent
        return self.used > self.limit or (parent is not None and parent.used > parent.limit)

    def victim(self, appending: ReplayBuffer) -> ReplayBuffer:
        """Whose oldest delta goes: the largest buffer here when this bound is passed (ties go
        to the appending one), the appending one when only the parent's is."""
        if self.used <= self.limit:
            return appending
        return max(self.members, key=lambda b: (b.size, b is appending), default=appending)


class ReplayBuffer:
    """One stream's recent deltas by seq (seqs start at 1 and follow each other)."""

    __slots__ = ("budget", "capacity", "data", "first_seq", "lengths", "size")

    def __init__(self, capacity: int, budget: ReplayBudget) -> None:
        self.capacity = capacity  # deltas
        self.budget = budget
        self.data = bytearray()  # the kept texts, UTF-8, oldest first
        self.lengths: deque[int] = deque()  # their sizes in `data`
        self.first_seq = 1  # seq of the oldest kept delta (the next one when none is kept)
        self.size = 0  # bytes charged to the budget
        budget.members.add(self)

    def __len__(self) -> int:
        return len(self.lengths)

    def append(self, seq: int, text: str) -> None:
        """Keep a delta (once per relayed delta in grace mode: kept cheap)."""
        encoded = text.encode()
        size = len(encoded)
        lengths, budget = self.lengths, self.budget
        if not lengths:
            self.first_seq = seq
        self.data += encoded
        lengths.append(size)
        cost = size + (SMALL_DELTA_OVERHEAD if size <= 256 else LARGE_DELTA_OVERHEAD)
        self.size += cost
        budget.charge(cost)
        if len(lengths) > self.capacity or budget.over():
            while lengths and len(lengths) > self.capacity:
                self._drop_oldest()
            while budget.over():
                victim = budget.victim(self)
                if not victim.lengths:
                    break
                victim._drop_oldest()

    def discard_through(self, seq: int) -> None:
        """The client acknowledged every delta up to `seq`: it will not ask for them again."""
        while self.lengths and self.first_seq <= seq:
            self._drop_oldest()

    def texts_after(self, after_seq: int) -> list[str] | None:
        """The kept texts of seqs after `after_seq`, or None if some of them were dropped."""
        if after_seq + 1 < self.first_seq:
            return None
        skip = after_seq + 1 - self.first_seq
        texts: list[str] = []
        offset = 0
        for index, size in enumerate(self.lengths):
            if index >= skip:
                texts.append(self.data[offset : offset + size].decode())
            offset += size
        return texts

    def newest(self, count: int) -> list[str]:
        """The texts of the newest `count` deltas kept (fewer if fewer are kept), in order."""
        texts: list[str] = []
        end = len(self.data)
        for size in reversed(self.lengths):
            if len(texts) == count:
                break
            texts.append(self.data[end - size : end].decode())
            end -= size
        texts.reverse()
        return texts

    def release(self) -> None:
        """The stream ended: give its bytes back to the budgets."""
        self._charge(-self.size)
        self.budget.members.discard(self)
        self.data = bytearray()
        self.first_seq += len(self.lengths)
        self.lengths.clear()

    def _drop_oldest(self) -> None:
        size = self.lengths.popleft()
        del self.data[:size]  # a bytearray drops its front in place (amortised O(1))
        self.first_seq += 1
        self._charge(-delta_cost(size))

    def _charge(self, size: int) -> None:
        self.size += size
        self.budget.charge(size)

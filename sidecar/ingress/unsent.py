"""Which streams' deltas sat in bytes a client never got (DESIGN §4, "delivered").

An ingress notes where each write of deltas ended in the connection's byte stream, as
`(end offset, owner, deltas)` in a deque. When the connection dies, the bytes from
`bytes_written - unsent_at_close` on never reached the client: the writes that ended past that
offset are mapped back to their owners. Writes the client's TCP acknowledged are dropped once a
second, so the deque holds about a second of writes. Pure: no sockets.
"""

from __future__ import annotations

from collections import deque
from typing import TypeVar

Owner = TypeVar("Owner")

Writes = deque[tuple[int, Owner, int]]


def drop_acknowledged(writes: Writes[Owner], acked_bytes: int) -> None:
    """The peer has every byte up to `acked_bytes`: those writes can never count unsent."""
    while writes and writes[0][0] <= acked_bytes:
        writes.popleft()


def unsent_by_owner(writes: Writes[Owner], lost_from: int) -> dict[Owner, int]:
    """Deltas per owner in the writes that ended after byte `lost_from` (never delivered)."""
    counts: dict[Owner, int] = {}
    for end, owner, deltas in reversed(writes):
        if end <= lost_from:
            break
        counts[owner] = counts.get(owner, 0) + deltas
    return counts

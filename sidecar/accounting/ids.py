"""Row identifiers in the UUIDv7 layout (RFC 9562): time first, so rows written together sit
together in the primary-key index.

With random (UUIDv4) ids every insert lands on a random page of that index; once the SQLite
ledger outgrew its page cache, each stream's rows cost about twice the CPU in the writer thread
(`python -m bench.ledger_writer --aged 300000`), and that thread shares the GIL with the relay.

Ids here must be unique, not secret (the resume token, which is a secret, uses `secrets`): the
random bits come from `random`'s generator, seeded from the OS and reseeded in forked children,
which spares the relay a `getrandom` system call per id on each request's path.
"""

from __future__ import annotations

import random
import time

_bits = random.getrandbits
_MS_BITS = (1 << 48) - 1
_RAND_B_BITS = (1 << 62) - 1


def time_ordered_id() -> str:
    """32 lowercase hex digits: 48 bits of Unix milliseconds, version 7, the RFC 4122 variant,
    and 74 random bits. Sorts by creation time to the millisecond; unique like a UUIDv4 within
    one (2^74 values per millisecond)."""
    ms = time.time_ns() // 1_000_000 & _MS_BITS
    rand = _bits(74)
    rand_a = (rand >> 62) & 0xFFF
    value = ms << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand & _RAND_B_BITS
    return f"{value:032x}"


def random_hex_id() -> str:
    """32 hex digits, never all zeros (a valid W3C trace id): a request or trace id."""
    return f"{_bits(128) or 1:032x}"

from __future__ import annotations

import time
import uuid

from sidecar.accounting.ids import time_ordered_id


def test_ids_are_version_7_uuids_in_hex() -> None:
    value = time_ordered_id()
    assert len(value) == 32 and value == value.lower()
    parsed = uuid.UUID(hex=value)
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122


def test_ids_carry_the_creation_time_and_sort_by_it() -> None:
    before = time.time_ns() // 1_000_000
    first = time_ordered_id()
    time.sleep(0.003)
    second = time_ordered_id()
    after = time.time_ns() // 1_000_000
    assert before <= int(first[:12], 16) <= int(second[:12], 16) <= after
    assert first < second  # a later millisecond sorts later, whatever the random bits


def test_ids_made_in_the_same_millisecond_differ() -> None:
    ids = [time_ordered_id() for _ in range(50_000)]
    assert len(set(ids)) == len(ids)


def test_worker_processes_forked_from_one_parent_make_different_ids() -> None:
    """`sidecar serve --workers N` forks: children must not replay the parent's random bits."""
    import os

    from sidecar.accounting.ids import random_hex_id

    time_ordered_id()  # the parent's generator is in use before the fork
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next ids and leave without running pytest's exit
        os.write(write_end, f"{time_ordered_id()[12:]} {random_hex_id()}".encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        child_rand, child_hex = pipe.read().split()
    os.waitpid(pid, 0)
    assert child_rand != time_ordered_id()[12:] and child_hex != random_hex_id()

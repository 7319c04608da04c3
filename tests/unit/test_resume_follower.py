"""A follower replays a stream another replica relays, from the store's log, and reports to
its owner (sidecar.resume.remote), with an in-memory link instead of Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from sidecar.accounting.stream import Outcome
from sidecar.resume.records import Control, delta_entry, end_entry
from sidecar.resume.remote import Follower
from sidecar.resume.store import StoreUnavailable

DONE = b'{"type":"done","id":"r1"}'


class Link:
    def __init__(self, entries: list[dict[str, bytes]], alive: bool = True) -> None:
        self.entries = [(str(i).encode(), {k.encode(): v for k, v in e.items()}) for i, e in
                        enumerate(entries, start=1)]  # fmt: skip
        self.alive = alive
        self.sent: list[Control] = []
        self.fail = False

    async def read(
        self, tkey: str, stream_id: str, after: bytes
    ) -> list[tuple[bytes, dict[bytes, bytes]]]:
        await asyncio.sleep(0)
        if self.fail:
            raise StoreUnavailable("gone")
        return [(i, f) for i, f in self.entries if int(i) > int(after.split(b"-")[0])]

    def control(self, owner: str, message: Control) -> None:
        self.sent.append(message)

    async def owner_alive(self, owner: str) -> bool:
        return self.alive


def _follow(link: Link, after_seq: int) -> tuple[list[dict[str, Any]], Follower, list[Any]]:
    written: list[dict[str, Any]] = []
    ended: list[Any] = []
    follower = Follower(link, "k", "r1", "node-a")
    follower.on_end = ended.append

    def write(frames: list[bytes], live: Any, deltas: int) -> None:
        written.extend(orjson.loads(f) for f in frames)
        if live is not None:
            live.account.on_written(deltas)

    async def run() -> None:
        follower.resume(after_seq, write)
        assert follower.task is not None
        await asyncio.wait_for(follower.task, 5)

    asyncio.run(run())
    return written, follower, ended


def test_every_delta_after_the_seq_once_then_done_and_the_owner_is_told() -> None:
    link = Link([delta_entry(1, ["a", "b", "c"]), delta_entry(3, ["c", "d"]), end_entry(DONE)])
    written, follower, ended = _follow(link, after_seq=1)
    assert [f.get("seq") for f in written] == [2, 3, 4, None]
    assert written[-1] == orjson.loads(DONE)
    assert [(m.op, m.seq) for m in link.sent] == [("attach", 1), ("done", 4)]
    assert ended == [follower] and follower.account.written == 4


def test_a_dead_owner_ends_the_answer_with_resume_expired() -> None:
    link = Link([delta_entry(1, ["a"])], alive=False)
    written, _follower, ended = _follow(link, after_seq=0)
    assert [f["type"] for f in written] == ["delta", "error"]
    assert written[-1]["code"] == "resume_expired" and len(ended) == 1


def test_a_log_that_no_longer_reaches_back_is_too_late_and_the_owner_ends_it() -> None:
    link = Link([delta_entry(10, ["j"])])
    written, _follower, _ended = _follow(link, after_seq=2)
    assert [f["code"] for f in written] == ["resume_too_late"]
    assert [m.op for m in link.sent] == ["attach", "gone"]


def test_a_lost_store_ends_the_answer_here_with_resume_expired() -> None:
    link = Link([])
    link.fail = True
    written, _follower, ended = _follow(link, after_seq=0)
    assert [f["code"] for f in written] == ["resume_expired"] and len(ended) == 1


def test_cancel_and_detach_report_what_was_delivered() -> None:
    link = Link([])
    follower = Follower(link, "k", "r1", "node-a")
    follower.account.written = 7
    follower.ack(5)
    follower.detach(unsent=2)
    assert [(m.op, m.seq) for m in link.sent] == [("ack", 5), ("detach", 5)]
    follower.stop(Outcome.CLIENT_CANCELLED)
    assert (link.sent[-1].op, link.sent[-1].seq) == ("cancel", 7)

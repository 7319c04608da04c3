"""What replicas share through a resume store, as values (sidecar.resume.records)."""

from __future__ import annotations

import orjson

from sidecar.resume.records import (
    Control,
    Cursor,
    LogBatches,
    ParkedSession,
    delta_entry,
    end_entry,
    log_key,
    session_key,
    token_key,
)


def _entry(fields: dict[str, bytes]) -> dict[bytes, bytes]:
    return {key.encode(): value for key, value in fields.items()}


def _seqs(frames: list[bytes]) -> list[int]:
    return [orjson.loads(frame)["seq"] for frame in frames]


def test_keys_name_a_digest_of_the_token_never_the_token() -> None:
    token = "s3cr3t-token_from-hello"
    tkey = token_key(token)
    assert len(tkey) == 32 and tkey == token_key(token) and tkey != token_key(token + "x")
    assert token not in session_key(tkey) and token not in log_key(tkey, "r1")


def test_a_cursor_sends_every_delta_after_its_seq_once_across_overlapping_batches() -> None:
    cursor = Cursor("r1", after_seq=3)
    frames = cursor.feed(_entry(delta_entry(1, ["a", "b", "c", "d", "e"])))  # a park's dump
    frames += cursor.feed(_entry(delta_entry(4, ["d", "e"])))  # published again: skipped
    frames += cursor.feed(_entry(delta_entry(6, ["f"])))
    assert _seqs(frames) == [4, 5, 6] and cursor.delivered == 6
    assert [orjson.loads(f)["text"] for f in frames] == ["d", "e", "f"]
    assert orjson.loads(frames[0]) == {"type": "delta", "id": "r1", "seq": 4, "text": "d"}
    done = b'{"type":"done","id":"r1"}'
    assert cursor.feed(_entry(end_entry(done))) == [done] and cursor.ended
    assert cursor.feed(_entry(delta_entry(7, ["g"]))) == []  # nothing after the end


def test_a_log_that_no_longer_reaches_back_is_too_late() -> None:
    cursor = Cursor("r1", after_seq=2)
    assert cursor.feed(_entry(delta_entry(5, ["e"]))) == []
    assert cursor.too_late and not cursor.ended


def test_a_malformed_entry_is_skipped() -> None:
    cursor = Cursor("r1", after_seq=0)
    assert cursor.feed({b"s": b"x", b"t": b"[]"}) == []
    assert cursor.feed({b"s": b"1", b"t": b"not json"}) == []
    assert _seqs(cursor.feed(_entry(delta_entry(1, ["a"])))) == [1]


def test_control_messages_round_trip_and_unknown_ones_are_dropped() -> None:
    message = Control("delivered", "k" * 32, "r1", 42)
    assert Control.parse(_entry(message.fields())) == message
    assert Control.parse({b"op": b"explode", b"k": b"k", b"id": b"r1", b"seq": b"1"}) is None
    assert Control.parse({b"op": b"ack", b"seq": b"NaN"}) is None


def test_a_parked_session_lists_the_owner_of_each_stream() -> None:
    fields = {b"session": b"s1", b"tenant": b"acme", b"o:r1": b"node-a", b"o:r2": b"node-b"}
    assert ParkedSession.parse(fields) == ParkedSession(
        "s1", "acme", {"r1": "node-a", "r2": "node-b"}
    )
    assert ParkedSession.parse({b"tenant": b"acme"}) is None  # expired half-way: unusable


def test_consecutive_flushes_of_a_stream_become_one_entry() -> None:
    batches = LogBatches()
    assert not batches
    batches.add("log-a", 1, ["a", "b"])
    batches.add("log-a", 3, ["c"])  # follows on
    batches.add("log-b", 7, ["x"])
    batches.add("log-a", 1, ["a"])  # a park's dump again: a new entry
    batches.end("log-a", b"done")
    batches.add("log-a", 4, ["d"])  # after an end: kept in order (a reader stops at the end)
    taken = batches.take()
    assert not batches and batches.take() == {}
    assert taken["log-b"] == [delta_entry(7, ["x"])]
    assert taken["log-a"] == [
        delta_entry(1, ["a", "b", "c"]),
        delta_entry(1, ["a"]),
        end_entry(b"done"),
        delta_entry(4, ["d"]),
    ]

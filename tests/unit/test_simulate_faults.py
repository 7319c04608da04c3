"""The simulator's fault settings and counting, without sockets."""

from __future__ import annotations

import pytest

from sidecar.simulate.faults import (
    FAULT_NAMES,
    FaultError,
    Faults,
    Malformer,
    parse_faults,
    request_faults,
)
from sidecar.simulate.stats import SimStats


def test_the_fault_names_are_the_documented_ones() -> None:
    assert FAULT_NAMES == (
        "stall_before_first_byte",
        "stall_before_first_token",
        "stall_after_tokens",
        "stall_seconds",
        "drop_after_tokens",
        "error_after_tokens",
        "malformed_every",
        "error_rate",
        "error_status",
        "retry_after",
    )
    assert Faults().as_json() == {
        "stall_before_first_byte": 0.0,
        "stall_before_first_token": 0.0,
        "stall_after_tokens": None,
        "stall_seconds": 0.0,
        "drop_after_tokens": None,
        "error_after_tokens": None,
        "malformed_every": 0,
        "error_rate": 0.0,
        "error_status": 503,
        "retry_after": 1,
    }


def test_an_update_replaces_only_the_fields_it_names() -> None:
    base = Faults(stall_after_tokens=3, stall_seconds=2.5, error_rate=0.5)
    updated = parse_faults({"drop_after_tokens": 7, "error_rate": 0}, base)
    assert updated == Faults(stall_after_tokens=3, stall_seconds=2.5, drop_after_tokens=7)
    assert parse_faults({"stall_after_tokens": None}, base).stall_after_tokens is None
    assert parse_faults({"stall_seconds": "forever"}, base).stall_is_forever()
    assert parse_faults({"stall_after_tokens": 0}, base).stall_after_tokens == 0
    assert parse_faults({"retry_after": None}, base).retry_after is None


def test_a_request_overrides_the_faults_in_force_for_itself_only() -> None:
    current = Faults(malformed_every=4)
    assert request_faults({"model": "m"}, current) is current
    mine = request_faults({"sim_fault": {"stall_before_first_byte": 1.5}}, current)
    assert mine == Faults(malformed_every=4, stall_before_first_byte=1.5)
    assert current == Faults(malformed_every=4)


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ([1], "faults must be a JSON object"),
        ({"stall": 1}, "unknown fault 'stall'"),
        ({"stall_seconds": -1}, "faults.stall_seconds must be a number of seconds ≥ 0"),
        ({"stall_seconds": "soon"}, "faults.stall_seconds must be a number"),
        ({"stall_before_first_byte": True}, "faults.stall_before_first_byte must be a number"),
        ({"drop_after_tokens": 1.5}, "faults.drop_after_tokens must be a whole number ≥ 0"),
        ({"drop_after_tokens": -1}, "faults.drop_after_tokens must be a whole number ≥ 0"),
        ({"error_rate": 1.5}, "faults.error_rate must be a probability in [0, 1]"),
        ({"error_status": 200}, "faults.error_status must be an HTTP error status"),
        ({"malformed_every": 1}, "faults.malformed_every must be 0 (off) or ≥ 2"),
    ],
)
def test_a_wrong_setting_says_which_and_what_is_allowed(update: object, message: str) -> None:
    with pytest.raises(FaultError) as raised:
        parse_faults(update, Faults())
    assert message in str(raised.value)


def test_the_request_level_error_names_sim_fault() -> None:
    with pytest.raises(FaultError, match=r"^sim_fault\.error_rate must be"):
        request_faults({"sim_fault": {"error_rate": "often"}}, Faults())


def test_every_kth_event_slot_is_malformed_and_no_event_is_lost() -> None:
    malformer = Malformer(3)
    slots: list[str] = []
    for index in range(6):
        if malformer.next_is_malformed():
            slots.append("bad")
        slots.append(f"e{index}")
    assert slots == ["e0", "e1", "bad", "e2", "e3", "bad", "e4", "e5"]
    never = Malformer(0)
    assert not any(never.next_is_malformed() for _ in range(10))


def test_every_request_ends_once_as_completed_aborted_or_failed() -> None:
    stats = SimStats()
    outcomes = ["completed", "aborted", "failed", "failed"]
    tallies = [stats.begin(f"r{i}", "chat", "m", 3) for i in range(5)]
    tallies[0].token()
    tallies[0].token()
    tallies[2].fault("drop_after_tokens")
    tallies[3].fault("malformed_every")
    tallies[3].fault("malformed_every")
    for tally, outcome in zip(tallies, outcomes, strict=False):
        tally.end(outcome)
        tally.end("completed")  # a second end changes nothing
    report = stats.as_json(detail=True)
    assert {k: report[k] for k in ("requests", "active", "completed", "aborted", "failed")} == {
        "requests": 5,
        "active": 1,
        "completed": 1,
        "aborted": 1,
        "failed": 2,
    }
    assert report["tokens_generated"] == 2
    assert report["faults"] == {"drop_after_tokens": 1, "malformed_every": 2}
    assert report["by_request"]["r3"]["faults"] == {"malformed_every": 2}
    assert report["by_request"]["r0"]["generated"] == 2
    assert report["by_request"]["r4"]["outcome"] == "active"

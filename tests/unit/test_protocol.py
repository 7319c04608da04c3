import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.ingress import protocol
from sidecar.ingress.protocol import Ack, Cancel, Generate, Ping, ProtocolError, Resume


def frame(**fields: object) -> str:
    return json.dumps(fields)


def test_generate_defaults_to_chat_path() -> None:
    body = {"model": "m", "messages": []}
    assert protocol.parse_client_frame(frame(type="generate", id="r1", body=body)) == Generate(
        "r1", body, "/v1/chat/completions"
    )


def test_generate_legacy_completions_needs_prompt() -> None:
    ok = frame(type="generate", id="r", path="/v1/completions", body={"prompt": "hi"})
    assert isinstance(protocol.parse_client_frame(ok), Generate)
    bad = frame(type="generate", id="r", path="/v1/completions", body={})
    assert protocol.parse_client_frame(bad) == ProtocolError(
        "invalid_body", '"body.prompt" is required', "r"
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (frame(type="cancel", id="r1"), Cancel("r1")),
        (frame(type="ack", id="r1", seq=4), Ack("r1", 4)),
        (frame(type="resume", id="r1", after_seq=0), Resume("r1", 0)),
        (frame(type="ping", t=5), Ping(5)),
    ],
)
def test_control_messages(raw: str, expected: object) -> None:
    assert protocol.parse_client_frame(raw) == expected


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{nope", "invalid_json"),
        ("[1, 2]", "invalid_message"),
        (frame(id="r"), "invalid_message"),
        (frame(type="launch", id="r"), "unknown_type"),
        (frame(type="cancel"), "missing_id"),
        (frame(type="cancel", id=""), "missing_id"),
        (frame(type="cancel", id="x" * 200), "invalid_id"),
        (frame(type="generate", id="r", body="text"), "invalid_body"),
        (frame(type="generate", id="r", body={"messages": "hi"}), "invalid_body"),
        (frame(type="generate", id="r", body={"messages": []}, path="/v2/x"), "invalid_path"),
        (frame(type="generate", id="r", body={"input": []}, path="/v1/embeddings"), "invalid_path"),
        (frame(type="generate", id="r", body={"messages": []}, path=[]), "invalid_path"),
        (frame(type="generate", id="r", body={"messages": []}, path={"a": 1}), "invalid_path"),
        (
            frame(type="generate", id="r", body={"messages": []}, path="/v1/responses"),
            "invalid_body",
        ),
        (frame(type="generate", id="r", body={"input": "hi"}, path="/v1/messages"), "invalid_body"),
        (frame(type="ack", id="r", seq=-1), "invalid_seq"),
        (frame(type="ack", id="r", seq=True), "invalid_seq"),
        (frame(type="resume", id="r", after_seq="3"), "invalid_seq"),
    ],
)
def test_bad_frames_become_typed_errors(raw: str, code: str) -> None:
    event = protocol.parse_client_frame(raw)
    assert isinstance(event, ProtocolError) and event.code == code and event.message


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/responses", {"model": "m", "input": "hi", "max_output_tokens": 5}),
        ("/v1/messages", {"model": "m", "max_tokens": 5, "messages": []}),
        ("/v1/completions", {"model": "m", "prompt": "hi"}),
    ],
)
def test_generate_may_name_every_streaming_route(path: str, body: dict[str, object]) -> None:
    assert protocol.parse_client_frame(frame(type="generate", id="r", body=body, path=path)) == (
        protocol.Generate("r", body, path)
    )


def test_error_keeps_the_stream_id_when_there_is_one() -> None:
    event = protocol.parse_client_frame(frame(type="launch", id="r9"))
    assert isinstance(event, ProtocolError) and event.id == "r9"


@given(st.one_of(st.text(), st.binary()))
def test_parser_never_raises_on_arbitrary_input(raw: str | bytes) -> None:
    protocol.parse_client_frame(raw)


@given(
    st.dictionaries(
        st.sampled_from(["type", "id", "body", "seq", "after_seq", "path"]),
        st.one_of(
            st.none(),
            st.integers(),
            st.text(),
            st.booleans(),
            st.dictionaries(st.text(), st.text()),
        ),
    )
)
def test_parser_never_raises_on_arbitrary_objects(message: dict[str, object]) -> None:
    protocol.parse_client_frame(json.dumps(message))


def test_encoders_produce_the_documented_frames() -> None:
    assert json.loads(protocol.delta("r1", 1, "Hel")) == {
        "type": "delta",
        "id": "r1",
        "seq": 1,
        "text": "Hel",
    }
    assert json.loads(protocol.done("r1", "stop", 9, 31)) == {
        "type": "done",
        "id": "r1",
        "finish_reason": "stop",
        "usage": {"prompt_tokens": 9, "completion_tokens": 31},
    }
    assert json.loads(protocol.error(None, "invalid_json", "bad")) == {
        "type": "error",
        "code": "invalid_json",
        "message": "bad",
    }
    hello = json.loads(protocol.hello("s", "tok", 20.0))
    assert (
        hello["type"] == "hello" and hello["resume_token"] == "tok" and hello["heartbeat_s"] == 20
    )

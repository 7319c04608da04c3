import json

from hypothesis import given
from hypothesis import strategies as st

from sidecar.upstream.sse import (
    Content,
    Finish,
    Malformed,
    SSEDecoder,
    StreamEnd,
    UpstreamFailure,
    Usage,
    read_chunk,
)

STREAM = (
    b": keep-alive comment\r\n\r\n"
    b'data: {"choices":[{"delta":{"content":"H\xc3\xa9"}}]}\r\n\r\n'
    b'data: {"choices":[{"delta":{"content":"llo"}}],"usage":null}\n\n'
    b"event: message\nid: 7\n"
    b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\r\r'
    b"data: [DONE]\n\n"
)
EVENTS = [
    '{"choices":[{"delta":{"content":"Hé"}}]}',
    '{"choices":[{"delta":{"content":"llo"}}],"usage":null}',
    '{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}',
    "[DONE]",
]


def decode_in_pieces(data: bytes, cuts: list[int]) -> list[str]:
    decoder = SSEDecoder()
    events: list[str] = []
    start = 0
    for cut in sorted(set(cuts)):
        events += decoder.feed(data[start:cut])
        start = cut
    events += decoder.feed(data[start:])
    return events + decoder.flush()


def test_whole_stream() -> None:
    assert decode_in_pieces(STREAM, []) == EVENTS


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=40))
def test_any_chunk_boundaries_give_the_same_events(cuts: list[int]) -> None:
    assert decode_in_pieces(STREAM, cuts) == EVENTS


def test_byte_by_byte() -> None:
    assert decode_in_pieces(STREAM, list(range(len(STREAM)))) == EVENTS


def test_multiline_data_and_unterminated_last_event() -> None:
    assert decode_in_pieces(b"data: a\ndata: b\n\ndata: tail", []) == ["a\nb", "tail"]


@given(st.binary())
def test_decoder_never_raises(data: bytes) -> None:
    decoder = SSEDecoder()
    for event in decoder.feed(data) + decoder.flush():
        read_chunk(event)


def test_chunk_kinds() -> None:
    assert read_chunk("[DONE]") == [StreamEnd()]
    assert read_chunk('{"choices":[{"delta":{"content":"x"},"finish_reason":null}]}') == [
        Content("x")
    ]
    assert read_chunk('{"choices":[{"text":"legacy","finish_reason":"length"}]}') == [
        Content("legacy", "length")
    ]
    assert read_chunk('{"choices":[{"delta":{},"finish_reason":"stop"}]}') == [Finish("stop")]
    continuous = {
        "choices": [{"delta": {"content": "a"}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1},
    }
    assert read_chunk(json.dumps(continuous)) == [Content("a"), Usage(5, 1, final=False)]
    assert read_chunk('{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":9}}') == [
        Usage(5, 9, final=True)
    ]
    assert read_chunk('{"error":{"message":"overloaded"}}') == [UpstreamFailure("overloaded")]
    assert read_chunk("not json") == [Malformed("not json")]
    assert read_chunk("[1]") == [Malformed("[1]")]


def test_tolerates_empty_usage_and_extra_objects() -> None:
    chunk = {"choices": [{"delta": {"content": "z"}}], "usage": {}, "timings": {"predicted_ms": 3}}
    assert read_chunk(json.dumps(chunk)) == [Content("z")]

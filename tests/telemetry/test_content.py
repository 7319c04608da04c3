"""Prompt/completion rendering for opt-in content capture: text only, never binary payloads."""

from __future__ import annotations

import json

from sidecar.telemetry.content import input_messages, output_messages


def test_chat_parts_keep_text_and_only_the_kind_of_the_rest() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "be brief"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ],
            },
            {"content": 7},
            "junk",
        ]
    }
    assert json.loads(input_messages("/v1/chat/completions", body)) == [
        {"role": "system", "parts": [{"type": "text", "content": "be brief"}]},
        {
            "role": "user",
            "parts": [{"type": "text", "content": "what is this?"}, {"type": "image_url"}],
        },
        {"role": "user", "parts": []},
    ]
    assert json.loads(input_messages("/v1/chat/completions", {"messages": "hi"})) == []


def test_completion_prompts() -> None:
    body = {"prompt": ["a", 3, "b"]}
    assert [
        m["parts"][0]["content"] for m in json.loads(input_messages("/v1/completions", body))
    ] == [
        "a",
        "b",
    ]
    assert json.loads(input_messages("/v1/completions", {})) == []


def test_output() -> None:
    assert json.loads(output_messages("hi", "length")) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "hi"}],
            "finish_reason": "length",
        }
    ]


def test_messages_and_responses_input_with_their_system_text() -> None:
    messages = {
        "system": [{"type": "text", "text": "be brief"}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    }
    assert json.loads(input_messages("/v1/messages", messages)) == [
        {"role": "system", "parts": [{"type": "text", "content": "be brief"}]},
        {"role": "user", "parts": [{"type": "text", "content": "hi"}]},
    ]
    items = {
        "instructions": "be brief",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
    }
    assert json.loads(input_messages("/v1/responses", items)) == [
        {"role": "system", "parts": [{"type": "text", "content": "be brief"}]},
        {"role": "user", "parts": [{"type": "text", "content": "hi"}]},
    ]
    assert json.loads(input_messages("/v1/responses", {"input": "hello"})) == [
        {"role": "user", "parts": [{"type": "text", "content": "hello"}]}
    ]
    assert json.loads(input_messages("/v1/embeddings", {"input": ["a", "b"]}))[1] == {
        "role": "user",
        "parts": [{"type": "text", "content": "b"}],
    }

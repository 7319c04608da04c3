"""How many input tokens the simulated model counts in a request, for every route it serves.

The rule is the same everywhere, so tests can compute it: the prompt's text (every string the
API treats as input text, concatenated) in characters, divided by 4 and rounded, at least 1.
Embeddings count each input on its own the same way (a list of token ids counts its length).
"""

from __future__ import annotations

from typing import Any

from sidecar.accounting.stream import CHARS_PER_TOKEN


def tokens_of_text(chars: int) -> int:
    return max(1, round(chars / CHARS_PER_TOKEN))


def prompt_tokens(body: dict[str, Any]) -> int:
    """Chat `messages`, completions `prompt`, Responses `input`/`instructions`, Anthropic
    `system`/`messages`: one count for any of them."""
    chars = sum(
        _text_chars(body.get(key)) for key in ("messages", "prompt", "input", "instructions")
    )
    return tokens_of_text(chars + _text_chars(body.get("system")))


def _text_chars(value: object) -> int:
    """Characters of the text in a string, a list of messages/parts/items, or a content part."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_text_chars(item) for item in value)
    if isinstance(value, dict):
        if isinstance(value.get("text"), str):
            return len(value["text"])  # a content part: {"type": "input_text", "text": ...}
        return _text_chars(value.get("content"))
    return 0


def embedding_inputs(value: object) -> list[int] | None:
    """Token counts of each embeddings input (a string, strings, token ids or lists of them);
    None if `input` is none of those."""
    if isinstance(value, str):
        return [tokens_of_text(len(value))]
    if not isinstance(value, list) or not value:
        return None
    if all(isinstance(item, str) for item in value):
        return [tokens_of_text(len(item)) for item in value]
    if all(isinstance(item, int) for item in value):
        return [len(value)]
    if all(isinstance(item, list) and item for item in value):
        return [len(item) for item in value]
    return None

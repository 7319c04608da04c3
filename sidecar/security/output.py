"""How many output tokens a request may make the upstream generate, and its bound.

Every field that sets or multiplies output counts: the per-completion maximum (`max_tokens`,
`max_completion_tokens`, the Responses API's `max_output_tokens`; the largest one given, since
servers differ in which they honour), times the completions per prompt (`n`, and `best_of`,
which the server generates in full before returning `n` of them), times the prompts of a
`/v1/completions` request whose `prompt` is a list. `--max-tokens-limit` bounds the product:
asking for more is refused rather than silently cut (a client must never mistake a truncated
answer for a complete one), and asking for nothing gets the limit shared across the choices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sidecar.security.limits import Refusal

OUTPUT_KEYS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
CHOICE_KEYS = ("n", "best_of")


@dataclass(frozen=True, slots=True)
class Output:
    """What a request asks for: `per_choice` tokens (None: unset) for each of `copies`
    completions (choices × prompts)."""

    per_choice: int | None
    copies: int

    @property
    def total(self) -> int | None:
        return None if self.per_choice is None else self.per_choice * self.copies


def _positive_fields(body: dict[str, Any], keys: tuple[str, ...], code: str) -> list[int] | Refusal:
    """The values of `keys` that are set, each a positive integer, or why one is not."""
    values = []
    for key in keys:
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return Refusal(400, code, f"{key} must be a positive integer")
        values.append(value)
    return values


def requested_output(body: dict[str, Any]) -> Output | Refusal:
    """The output `body` asks for, or why its fields are invalid."""
    asked = _positive_fields(body, OUTPUT_KEYS, "invalid_max_tokens")
    if isinstance(asked, Refusal):
        return asked
    choices = _positive_fields(body, CHOICE_KEYS, "invalid_request")
    if isinstance(choices, Refusal):
        return choices
    copies = max(choices, default=1) * prompt_count(body.get("prompt"))
    return Output(max(asked) if asked else None, copies)


def prompt_count(prompt: Any) -> int:
    """Prompts in a `/v1/completions` `prompt`: a string or a list of token ids is one; a list
    of strings or of token-id lists is one each."""
    if isinstance(prompt, list) and prompt and not all(isinstance(t, int) for t in prompt):
        return len(prompt)
    return 1


def output_key(body: dict[str, Any]) -> str:
    """The field that sets the output of this kind of request (the Responses API takes
    `input` and `max_output_tokens`; chat and completions take `max_tokens`)."""
    if "input" in body and "messages" not in body and "prompt" not in body:
        return "max_output_tokens"
    return "max_tokens"


def cap_output(body: dict[str, Any], cap: int) -> tuple[dict[str, Any], int | None] | Refusal:
    """The body to send upstream and the most output tokens it can cause (None: unbounded,
    no cap and none asked), or why it is refused. `cap` 0 means no cap."""
    output = requested_output(body)
    if not cap:  # nothing to enforce: the upstream judges its own fields
        return body, None if isinstance(output, Refusal) else output.total
    if isinstance(output, Refusal):
        return output
    total = output.total
    if total is not None:
        if total > cap:
            return Refusal(
                400,
                "max_tokens_exceeded",
                f"max_tokens × n × prompts is {total}; at most {cap} on this sidecar",
            )
        return body, total
    per_choice = cap // output.copies
    if per_choice < 1:
        return Refusal(
            400,
            "max_tokens_exceeded",
            f"n × prompts is {output.copies}; at most {cap} outputs on this sidecar",
        )
    return {**body, output_key(body): per_choice}, per_choice * output.copies


def prompt_estimate(body: dict[str, Any], chars_per_token: float) -> int:
    """Tokens the prompt will cost before the upstream counts them: characters of chat
    `messages` (text content and parts), `prompt`, Responses `input` and `instructions`,
    Anthropic `system`, and token ids as one token each."""
    fields = [body.get(key) for key in ("messages", "prompt", "input", "instructions", "system")]
    chars, tokens = _measure(fields, 0)
    return round(chars / chars_per_token) + tokens


def _measure(value: Any, depth: int) -> tuple[int, int]:
    """(characters of text, token ids) in a request field."""
    if isinstance(value, str):
        return len(value), 0
    if isinstance(value, int) and not isinstance(value, bool):
        return 0, 1
    if depth > 4:  # request bodies are bounded; so is the walk
        return 0, 0
    if isinstance(value, dict):
        value = [value.get("content"), value.get("text")]
    if not isinstance(value, list):
        return 0, 0
    chars = tokens = 0
    for item in value:
        c, t = _measure(item, depth + 1)
        chars, tokens = chars + c, tokens + t
    return chars, tokens

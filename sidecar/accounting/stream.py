"""Per-stream accounting (DESIGN §4): what the upstream generated versus what reached the client.

A `StreamAccount` is fed by the relay with timestamps from the caller's monotonic clock; it holds
no clock of its own. It ends exactly once, with one outcome.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sidecar.ledger.models import Stream
from sidecar.ledger.text import bounded, string_limits


class Outcome(enum.StrEnum):
    COMPLETED = "completed"
    CLIENT_CANCELLED = "client_cancelled"
    CLIENT_GONE = "client_gone"
    CLIENT_TOO_SLOW = "client_too_slow"
    UPSTREAM_ERROR = "upstream_error"
    TIMEOUT = "timeout"
    REJECTED = "rejected"
    SHUTDOWN = "shutdown"
    INTERRUPTED = "interrupted"
    INTERNAL_ERROR = "internal_error"  # a fault of the sidecar itself, never the client's doing


class CountSource(enum.StrEnum):
    USAGE = "usage"  # the upstream reported the count
    COUNTED = "counted"  # one upstream delta = one token
    ESTIMATED = "estimated"  # characters × a per-model ratio


# A rough characters-per-token ratio for prompts when the upstream reports no usage.
CHARS_PER_TOKEN = 4.0
_LIMITS = string_limits(Stream.__table__)  # type: ignore[arg-type]


def clean_model(name: str) -> str:
    """A model name as the ledger, the labels and the drift keys carry it (ledger/text.py)."""
    return bounded(name, _LIMITS["model"])


@dataclass(slots=True)
class StreamAccount:
    stream_id: str
    request_id: str
    session_id: str | None
    model: str
    tenant: str
    ingress: str
    path: str
    started_at: float  # wall-clock epoch seconds, for the ledger
    t_start: float  # monotonic, when the request was forwarded upstream
    prompt_chars: int = 0
    deltas: int = 0  # upstream content deltas seen
    chars: int = 0
    usage_prompt: int | None = None
    usage_completion: int | None = None
    usage_final: bool = False
    cached_prompt_tokens: int | None = None  # of the prompt, served from a cache (if reported)
    reasoning_tokens: int | None = None  # of the generated, spent on reasoning (if reported)
    audio_prompt_tokens: int | None = None  # realtime: of the prompt, audio (if reported)
    audio_generated_tokens: int | None = None  # realtime: of the generated, audio (if reported)
    written: int = 0  # deltas handed to the client's transport
    acked: int | None = None  # highest seq the client acknowledged
    unsent: int = 0  # deltas still in the transport buffer when the client vanished
    malformed: int = 0  # upstream events that could not be parsed (skipped, counted)
    t_first: float | None = None
    t_last: float | None = None
    t_end: float | None = None
    outcome: Outcome | None = None
    finish_reason: str | None = None
    error_code: str | None = None
    trace_id: str | None = None
    # Tokens per delta learned from this model's completed streams that reported usage; used
    # when this stream has no usage and the model packs several tokens into one delta.
    tokens_per_delta_hint: float | None = None

    def __post_init__(self) -> None:
        # Names a client chose, cleaned once here so that the ledger, the metric labels, the
        # drift keys and the spans all carry the same value (see ledger/text.py).
        self.model = clean_model(self.model)
        self.tenant = bounded(self.tenant, _LIMITS["tenant"])
        self.request_id = bounded(self.request_id, _LIMITS["request_id"])

    # Relay events -----------------------------------------------------------------------------

    def on_content(self, now: float, text: str) -> tuple[int, float | None]:
        """Record one upstream delta; return its seq and the gap since the previous delta."""
        self.deltas += 1
        self.chars += len(text)
        gap = None if self.t_last is None else now - self.t_last
        if self.t_first is None:
            self.t_first = now
        self.t_last = now
        return self.deltas, gap

    def on_usage(self, prompt: int, completion: int, final: bool) -> None:
        self.usage_prompt = prompt
        # Continuous usage can only grow; guard against servers that report zeros mid-stream.
        if self.usage_completion is None or completion >= self.usage_completion:
            self.usage_completion = completion
        self.usage_final = self.usage_final or final

    def on_prompt(self, prompt: int) -> None:
        """The prompt's count, reported before the output's (Anthropic's `message_start`)."""
        self.usage_prompt = prompt

    def on_written(self, count: int = 1) -> None:
        self.written += count

    def on_ack(self, seq: int) -> None:
        if seq <= self.deltas and (self.acked is None or seq > self.acked):
            self.acked = seq

    def finish(
        self, outcome: Outcome, now: float, *, error_code: str | None = None, unsent: int = 0
    ) -> bool:
        """End the stream; returns False if it had already ended (the first outcome wins)."""
        if self.outcome is not None:
            return False
        self.outcome = outcome
        self.t_end = now
        self.error_code = error_code
        self.unsent = min(unsent, self.written)
        return True

    # Derived counts ---------------------------------------------------------------------------

    @property
    def ended(self) -> bool:
        return self.outcome is not None

    @property
    def count_source(self) -> CountSource:
        if self.usage_completion is not None:
            return CountSource.USAGE
        return CountSource.ESTIMATED if self._packed_hint else CountSource.COUNTED

    @property
    def _packed_hint(self) -> float | None:
        hint = self.tokens_per_delta_hint
        return hint if hint is not None and hint > 1.05 else None

    @property
    def prompt_tokens(self) -> int:
        if self.usage_prompt is not None:
            return self.usage_prompt
        return round(self.prompt_chars / CHARS_PER_TOKEN)

    @property
    def generated_tokens(self) -> int:
        # A chunk is not always a token (speculative decoding, stream intervals): trust usage.
        if self.usage_completion is not None:
            return max(self.usage_completion, 0)
        hint = self._packed_hint
        return round(self.deltas * hint) if hint else self.deltas

    @property
    def delivered_tokens(self) -> int:
        """Tokens that reached the client, in the same unit as `generated_tokens`."""
        # A completed stream was written in full to a live connection; acks (which lag) only
        # decide for streams cut short, where the client says what it really rendered.
        by_ack = self.acked is not None and self.outcome is not Outcome.COMPLETED
        delivered_deltas = self.acked if by_ack else self.written - self.unsent
        assert delivered_deltas is not None
        if self.deltas == 0:
            return 0
        if delivered_deltas >= self.deltas:
            return self.generated_tokens
        if self.usage_completion is None and self._packed_hint is None:
            return delivered_deltas
        # Scale delivered deltas to tokens when the upstream packs several tokens per delta.
        return min(self.generated_tokens, round(delivered_deltas * self.tokens_per_delta))

    @property
    def tokens_per_delta(self) -> float:
        if not self.deltas:
            return 1.0
        return max(1.0, self.generated_tokens / self.deltas)

    @property
    def wasted_tokens(self) -> int:
        return max(0, self.generated_tokens - self.delivered_tokens)

    @property
    def time_to_first_token(self) -> float | None:
        return None if self.t_first is None else self.t_first - self.t_start

    @property
    def duration(self) -> float | None:
        return None if self.t_end is None else self.t_end - self.t_start

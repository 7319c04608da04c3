"""What the simulated model does, free of I/O: output length, token text and timing."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from sidecar.accounting.stream import CHARS_PER_TOKEN
from sidecar.errors import ConfigError
from sidecar.ingress.scope import prompt_chars

WORDS = (
    " the",
    " stream",
    " token",
    " model",
    " answer",
    " sidecar",
    " latency",
    " cost",
    " is",
    " a",
    " of",
    " and",
    " to",
    " in",
    " that",
    " it",
    " for",
    " on",
    " with",
    " as",
)


@dataclass(slots=True)
class SimSettings:
    ttft: float = 0.05  # seconds before the first token
    tokens_per_second: float = 50.0
    output_tokens: str = "max"  # "max" | "N" | "lognormal:MEDIAN:SIGMA"
    default_max_tokens: int = 64
    jitter: float = 0.0  # relative, uniform ±
    error_rate: float = 0.0
    ttft_factor: float = 1.0  # changed at run time through POST /sim/latency
    itl_factor: float = 1.0
    tail_fraction: float = 0.0  # this share of requests gets `tail_factor` on its first token
    tail_factor: float = 1.0
    seed: int | None = None
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if self.tokens_per_second <= 0:
            raise ConfigError("--tokens-per-second must be positive")
        if self.ttft < 0 or not 0 <= self.jitter < 1 or not 0 <= self.error_rate <= 1:
            raise ConfigError("--ttft must be ≥ 0, --jitter in [0, 1) and --error-rate in [0, 1]")
        parse_length_spec(self.output_tokens)
        self.rng = random.Random(self.seed)

    def output_length(self, max_tokens: int | None) -> int:
        cap = max_tokens if max_tokens is not None else self.default_max_tokens
        kind, a, b = parse_length_spec(self.output_tokens)
        if kind == "max":
            return cap
        if kind == "fixed":
            return min(cap, int(a))
        drawn = int(math.exp(math.log(a) + b * self.rng.gauss(0.0, 1.0)))
        return max(1, min(cap, drawn))

    def first_token_delay(self) -> float:
        factor = self.ttft_factor
        if self.tail_fraction and self.rng.random() < self.tail_fraction:
            factor *= self.tail_factor  # a tail-only degradation: the median barely moves
        return self._jittered(self.ttft * factor)

    def token_interval(self) -> float:
        return self._jittered(self.itl_factor / self.tokens_per_second)

    def _jittered(self, seconds: float) -> float:
        if not self.jitter:
            return seconds
        return seconds * (1.0 + self.rng.uniform(-self.jitter, self.jitter))

    def token_text(self, index: int) -> str:
        return WORDS[index % len(WORDS)]

    def should_fail(self) -> bool:
        return self.error_rate > 0 and self.rng.random() < self.error_rate


def parse_length_spec(spec: str) -> tuple[str, float, float]:
    if spec == "max":
        return "max", 0.0, 0.0
    if spec.isdigit() and int(spec) > 0:
        return "fixed", float(spec), 0.0
    parts = spec.split(":")
    if len(parts) == 3 and parts[0] == "lognormal":
        try:
            median, sigma = float(parts[1]), float(parts[2])
        except ValueError:
            pass
        else:
            if median >= 1 and sigma >= 0:
                return "lognormal", median, sigma
    raise ConfigError(
        f"--output-tokens {spec!r}: use 'max' (the request's max_tokens), a positive integer, "
        "or 'lognormal:MEDIAN:SIGMA'"
    )


def prompt_tokens_of(body: dict[str, Any]) -> int:
    """Approximate prompt tokens as characters / 4, like a tokenizer would on English."""
    return max(1, round(prompt_chars(body) / CHARS_PER_TOKEN))


@dataclass(slots=True)
class SimStats:
    requests: int = 0
    active: int = 0
    completed: int = 0
    aborted: int = 0
    failed: int = 0
    tokens_generated: int = 0
    abort_requests: list[str] = field(default_factory=list)  # rids of POST /abort_request
    by_request: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_json(self, detail: bool) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "requests": self.requests,
            "active": self.active,
            "completed": self.completed,
            "aborted": self.aborted,
            "failed": self.failed,
            "tokens_generated": self.tokens_generated,
            "abort_requests": len(self.abort_requests),
        }
        if detail:
            stats["by_request"] = self.by_request
            stats["abort_request_ids"] = self.abort_requests[-1000:]
        return stats

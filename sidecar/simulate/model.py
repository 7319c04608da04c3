"""What the simulated model does, free of I/O: output length, token text and timing."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from sidecar.errors import ConfigError
from sidecar.simulate.dialects import Finish
from sidecar.simulate.faults import Faults

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
    faults: Faults = field(
        default_factory=Faults
    )  # the defaults; POST /sim/faults changes them at run time
    served_models: tuple[str, ...] = ("sim-small",)  # listed by GET /v1/models
    ttft_factor: float = 1.0  # changed at run time through POST /sim/latency
    itl_factor: float = 1.0
    tail_fraction: float = 0.0  # this share of requests gets `tail_factor` on its first token
    tail_factor: float = 1.0
    seed: int | None = None
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if self.tokens_per_second <= 0:
            raise ConfigError("--tokens-per-second must be positive")
        if self.ttft < 0 or not 0 <= self.jitter < 1:
            raise ConfigError("--ttft must be ≥ 0 and --jitter in [0, 1)")
        if not self.served_models:
            raise ConfigError("--served-model-name: name at least one model")
        parse_length_spec(self.output_tokens)
        self.rng = random.Random(self.seed)

    def output(self, max_tokens: int | None) -> tuple[int, Finish]:
        """How many tokens to generate, and whether that is the request's cap or the model's
        own end."""
        cap = max_tokens if max_tokens is not None else self.default_max_tokens
        kind, a, b = parse_length_spec(self.output_tokens)
        if kind == "max":
            length = cap
        elif kind == "fixed":
            length = min(cap, int(a))
        else:
            drawn = int(math.exp(math.log(a) + b * self.rng.gauss(0.0, 1.0)))
            length = max(1, min(cap, drawn))
        return length, "length" if length == cap else "stop"

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

    def should_fail(self, faults: Faults) -> bool:
        return faults.error_rate > 0 and self.rng.random() < faults.error_rate


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

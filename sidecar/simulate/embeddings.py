"""`POST /v1/embeddings`: deterministic vectors in the OpenAI shape, free of I/O.

The same input always gets the same unit vector (seeded by its SHA-256), so tests can compare
answers; `encoding_format: "base64"` packs it as little-endian float32, as OpenAI does.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import struct
from typing import Any

from sidecar.simulate.prompt import embedding_inputs

DEFAULT_DIMENSIONS = 256
MAX_DIMENSIONS = 4096


class EmbeddingsError(ValueError):
    """The request is wrong; the message says how."""


def vector(item: object, dimensions: int) -> list[float]:
    seed = hashlib.sha256(repr(item).encode()).digest()
    rng = random.Random(seed)
    values = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    # Rounded through float32 so the float and base64 answers hold the same numbers.
    return [struct.unpack("<f", struct.pack("<f", v / norm))[0] for v in values]


def encode(values: list[float], encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")
    return values


def answer(body: dict[str, Any], model: str) -> dict[str, Any]:
    """The embeddings response for a parsed request body; raises EmbeddingsError."""
    inputs = body.get("input")
    counts = embedding_inputs(inputs)
    if counts is None:
        raise EmbeddingsError(
            "input must be a string, a list of strings, or token ids (a list of integers or "
            "a list of such lists), not empty"
        )
    encoding_format = body.get("encoding_format") or "float"
    if encoding_format not in ("float", "base64"):
        raise EmbeddingsError("encoding_format must be 'float' or 'base64'")
    dimensions = body.get("dimensions")
    dimensions = DEFAULT_DIMENSIONS if dimensions is None else dimensions
    if not isinstance(dimensions, int) or not 1 <= dimensions <= MAX_DIMENSIONS:
        raise EmbeddingsError(f"dimensions must be an integer from 1 to {MAX_DIMENSIONS}")
    items = _items(inputs)
    data = [
        {
            "object": "embedding",
            "index": index,
            "embedding": encode(vector(item, dimensions), encoding_format),
        }
        for index, item in enumerate(items)
    ]
    tokens = sum(counts)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _items(inputs: object) -> list[object]:
    if isinstance(inputs, str):
        return [inputs]
    assert isinstance(inputs, list)
    if all(isinstance(item, int) for item in inputs):
        return [inputs]  # one input given as token ids
    return list(inputs)

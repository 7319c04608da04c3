"""Would MessagePack delta frames be smaller or cheaper than protocol v1's JSON text frames?

    PYTHONPATH=/tmp/mpk .venv/bin/python -m bench.frame_encoding           # Python side
    MSGPACK_JS=/tmp/mpkjs/node_modules node bench/frame_encoding.mjs       # browser-side decode

A side-by-side micro-benchmark on the same frames: `{"type":"delta","id":"r12","seq":N,
"text":TOKEN}` with the simulator's words and some non-ASCII tokens. Per frame: payload bytes,
encode time on the sidecar (orjson against ormsgpack and msgpack, both C), decode time in the
Python client. The candidates are not dependencies of the project: install them somewhere else
(`pip install --target /tmp/mpk ormsgpack msgpack`) to run this. Variants: a MessagePack map
with the same keys, and a positional array `[1, id, seq, text]` (a new schema, for the floor).
"""

from __future__ import annotations

import sys
import timeit
from collections.abc import Callable
from typing import Any

import orjson

from sidecar.simulate.model import WORDS

NON_ASCII = (" café", " 東京", " naïve", " ß", " 🙂")
FRAMES = 2000
ROUNDS = 15  # interleaved across encodings; the best round counts (a shared machine is noisy)
BATCH = 16  # frames encoded together, as the sidecar's sink collects one upstream read's deltas


def delta_frames(count: int = FRAMES) -> list[dict[str, Any]]:
    """The same frames as bench/frame_encoding.mjs builds."""
    tokens = list(WORDS) * 9 + list(NON_ASCII)  # ~2.7 % non-ASCII tokens
    return [
        {"type": "delta", "id": "r12", "seq": seq, "text": tokens[seq * 7919 % len(tokens)]}
        for seq in range(1, count + 1)
    ]


def encode_batches(encode: Callable[[Any], bytes], items: list[Any]) -> Callable[[], None]:
    """Encode in batches that live until their write, then drop them: as the relay does.
    (Keeping all 2,000 results alive at once made orjson look 5-10x slower than it is.)"""

    def work() -> None:
        for start in range(0, len(items), BATCH):
            _batch = [encode(item) for item in items[start : start + BATCH]]

    return work


def decode_each(decode: Callable[[bytes], Any], encoded: list[bytes]) -> Callable[[], None]:
    def work() -> None:
        for data in encoded:
            decode(data)

    return work


def best_ns(works: dict[str, Callable[[], None]], frames: int) -> dict[str, float]:
    best = dict.fromkeys(works, float("inf"))
    for _round in range(ROUNDS):
        for name, work in works.items():
            best[name] = min(best[name], timeit.timeit(work, number=5) / 5)
    return {name: seconds / frames * 1e9 for name, seconds in best.items()}


def main() -> int:
    try:
        import msgpack  # type: ignore[import-not-found]
        import ormsgpack  # type: ignore[import-not-found]
    except ImportError:
        print("needs ormsgpack and msgpack: pip install --target /tmp/mpk ormsgpack msgpack")
        print("then: PYTHONPATH=/tmp/mpk .venv/bin/python -m bench.frame_encoding")
        return 2
    frames = delta_frames()
    arrays = [[1, f["id"], f["seq"], f["text"]] for f in frames]
    encoders: dict[str, tuple[Callable[[Any], bytes], list[Any], Callable[[bytes], Any]]] = {
        "JSON text (orjson)": (orjson.dumps, frames, orjson.loads),
        "MessagePack map (ormsgpack)": (ormsgpack.packb, frames, ormsgpack.unpackb),
        "MessagePack map (msgpack)": (msgpack.packb, frames, msgpack.unpackb),
        "MessagePack array (ormsgpack)": (ormsgpack.packb, arrays, ormsgpack.unpackb),
    }
    encoded = {name: [enc(item) for item in items] for name, (enc, items, _) in encoders.items()}
    encode_ns = best_ns({n: encode_batches(e, i) for n, (e, i, _) in encoders.items()}, FRAMES)
    decode_ns = best_ns(
        {n: decode_each(d, encoded[n]) for n, (_, _, d) in encoders.items()}, FRAMES
    )
    print(f"{FRAMES} delta frames, best of {ROUNDS} rounds; Python {sys.version.split()[0]}")
    print(f"{'encoding':32} {'bytes/frame':>11} {'encode ns':>10} {'decode ns':>10}")
    for name, frames_out in encoded.items():
        size = sum(map(len, frames_out)) / len(frames_out)
        print(f"{name:32} {size:11.1f} {encode_ns[name]:10.0f} {decode_ns[name]:10.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

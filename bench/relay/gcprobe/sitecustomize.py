"""Loaded by a sidecar that `bench.relay.gcpauses` starts (its directory is first on PYTHONPATH):
records every garbage collection's time, generation and pause, and with GCPROBE_TYPES=1 the types of
the objects it freed once the file GCPROBE_OUT + ".load" exists (gc.DEBUG_SAVEALL), into the
JSON file GCPROBE_OUT, rewritten after each
collection. The sidecar's own code is unchanged."""

from __future__ import annotations

import gc
import json
import os
import time
from typing import Any

OUT = os.environ.get("GCPROBE_OUT")


def _install(out: str, types: bool) -> None:
    started = [0.0]
    pauses: list[tuple[float, int, float]] = []  # (wall clock, generation, pause ms)
    freed: dict[str, int] = {}
    if types:
        gc.set_debug(gc.DEBUG_SAVEALL)

    def probe(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        pause = (time.perf_counter() - started[0]) * 1e3
        pauses.append((time.time(), info["generation"], pause))
        if os.path.exists(out + ".load"):  # only what the measured load freed, not start-up's
            for obj in gc.garbage:
                name = type(obj).__qualname__
                freed[name] = freed.get(name, 0) + 1
        gc.garbage.clear()
        with open(out, "w") as f:
            json.dump({"pauses": pauses, "freed": freed}, f)

    gc.callbacks.append(probe)


if OUT:
    _install(OUT, os.environ.get("GCPROBE_TYPES") == "1")

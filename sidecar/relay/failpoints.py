"""Fault injection for tests of the sidecar's own failures (FoundationDB/TiKV-style failpoints).

`SIDECAR_FAILPOINTS="stream_opened=MODEL[,...]"` makes streams for that model raise at that point,
so an end-to-end test can show what an unexpected sidecar bug does to a real stream (it must end
as `internal_error`, never be billed as the client's doing). Read once at import: unset, a check
is one dictionary lookup that finds nothing.
"""

from __future__ import annotations

import os


class FailpointError(RuntimeError):
    """Raised where a failpoint is armed; never caught specially: it stands for any bug."""


def _parse(spec: str) -> dict[str, frozenset[str]]:
    armed: dict[str, set[str]] = {}
    for item in spec.split(","):
        name, _, model = item.strip().partition("=")
        if name:
            armed.setdefault(name, set()).add(model)
    return {name: frozenset(models) for name, models in armed.items()}


_ARMED = _parse(os.environ.get("SIDECAR_FAILPOINTS", ""))


def check(name: str, model: str) -> None:
    models = _ARMED.get(name)
    if models is not None and model in models:
        raise FailpointError(f"failpoint {name} for model {model!r}")

"""One knob for every wait in the test suite.

Provides :func:`timeout_factor` and :func:`scaled`.  Every bounded wait in the
tests (service start-up, port polling, "the peer must see the close within 1 s",
...) should be written as ``scaled(seconds)`` so a slow or heavily loaded machine
can stretch *all* of them at once by exporting ``SIDECAR_TEST_TIMEOUT_FACTOR``
(a positive float, default ``1.0``) instead of editing individual tests.

The environment variable is read on every call, so ``monkeypatch.setenv`` works.
"""

from __future__ import annotations

import os

__all__ = ["ENV_VAR", "scaled", "timeout_factor"]

ENV_VAR = "SIDECAR_TEST_TIMEOUT_FACTOR"


def timeout_factor() -> float:
    """Return the current factor from ``SIDECAR_TEST_TIMEOUT_FACTOR`` (default 1.0).

    Raises ``ValueError`` for a value that is not a positive, finite number, so a
    typo fails loudly instead of silently producing zero-length timeouts.
    """
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return 1.0
    try:
        factor = float(raw)
    except ValueError:
        raise ValueError(f"{ENV_VAR}={raw!r} is not a number") from None
    if not (0.0 < factor < float("inf")):
        raise ValueError(f"{ENV_VAR}={raw!r} must be a positive, finite number")
    return factor


def scaled(seconds: float) -> float:
    """Return ``seconds`` multiplied by the configured timeout factor."""
    return float(seconds) * timeout_factor()

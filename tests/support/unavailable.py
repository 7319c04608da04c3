"""The single policy for "a real service this test needs cannot start".

Provides :func:`service_unavailable` and :func:`in_ci`.  The project's tests
talk to real services started by the harness.  When such a service cannot be
started, the test must not silently pass:

* with ``CI=true`` in the environment the test FAILS with a one-line reason
  (``pytest.fail(..., pytrace=False)``), so a broken CI image is noticed;
* outside CI it is SKIPPED with the same reason, so a developer laptop without
  e.g. Chromium or root can still run the rest of the suite.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

__all__ = ["in_ci", "service_unavailable"]


def in_ci() -> bool:
    """Return True when running under CI (``CI`` is ``true``/``1``/``yes``)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def service_unavailable(reason: str) -> NoReturn:
    """Fail (in CI) or skip (elsewhere) the current test with a one-line reason."""
    line = " ".join(reason.split())
    try:
        if in_ci():
            pytest.fail(line, pytrace=False)
        pytest.skip(line)
    except (pytest.fail.Exception, pytest.skip.Exception) as outcome:
        # Called from an ``except`` block, pytest would otherwise print the
        # original exception chain; the one-line reason is the whole story.
        raise outcome from None

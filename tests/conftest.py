"""Fixtures shared by the whole suite. Service fixtures live in tests/support/."""

from __future__ import annotations

from tests.support.chromium import chromium_process  # noqa: F401 - fixture
from tests.support.netns import netns  # noqa: F401 - fixture
from tests.support.postgres import postgres_cluster, postgres_url  # noqa: F401 - fixture

"""Fixtures for the self-tests of the helpers in ``tests/support``."""

from tests.support.chromium import chromium_process
from tests.support.netns import netns
from tests.support.postgres import postgres_cluster, postgres_url

__all__ = ["chromium_process", "netns", "postgres_cluster", "postgres_url"]

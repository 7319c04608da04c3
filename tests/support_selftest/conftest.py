"""Fixtures for the self-tests of the helpers in ``tests/support``."""

from tests.support.postgres import postgres_cluster, postgres_url

__all__ = ["postgres_cluster", "postgres_url"]

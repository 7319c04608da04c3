"""Fixtures for the drift tests."""

from tests.support.alertmanager import alertmanager_url

__all__ = ["alertmanager_url"]

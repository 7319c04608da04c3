"""The `sidecar` command line: thin click commands over the library's `run()` functions."""

from sidecar.cli.main import main

__all__ = ["main"]

"""The `sidecar` command line: thin click commands over the library's `run()` functions.

The entry point is `sidecar.cli.main:main`; this package stays import-light so that command
modules elsewhere (drift, dashboards) can import `sidecar.cli.options` without a cycle.
"""

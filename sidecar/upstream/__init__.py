"""Upstream adapters: how the sidecar talks to a model server."""

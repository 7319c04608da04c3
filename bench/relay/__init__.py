"""Relay benchmark (issue 8): what the sidecar adds over reading the model server directly.

Every scenario runs its variants on the same machine in one run (direct = the limit, a minimal
no-accounting relay or nginx = the floor, the sidecar) and reports medians, p50/p99 and ratios,
because on a 2-core shared machine only side-by-side numbers mean anything.
"""

"""Accounting: per-stream token counts, outcomes and prices (pure), and the recorder."""

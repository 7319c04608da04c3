"""`promtool check metrics` on the real exposition of a `Metrics()` registry with samples.

promtool lints what Prometheus users see: suffixes (`_total`, units), help text, types.
"""

from __future__ import annotations

import shutil
import subprocess

from prometheus_client import generate_latest

from tests.support.timeouts import scaled
from tests.support.unavailable import service_unavailable
from tests.telemetry.samples import filled_metrics


def test_exposition_passes_promtool() -> None:
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    if not shutil.which(promtool):
        service_unavailable("promtool not found (`apt-get install prometheus`)")
    exposition = generate_latest(filled_metrics().registry)
    assert b"sidecar_drift_alert_active{" in exposition  # samples really are there
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=exposition,
        capture_output=True,
        timeout=scaled(30),
        check=False,
    )
    problems = (result.stdout + result.stderr).decode(errors="replace").strip()
    assert result.returncode == 0 and not problems, problems

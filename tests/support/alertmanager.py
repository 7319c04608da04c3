"""A real Alertmanager for tests: Debian's `prometheus-alertmanager` on a free loopback port.

Provides :func:`running_alertmanager` (context manager) and the ``alertmanager_url`` fixture.
Clustering is off (``--cluster.listen-address=``), storage is a temp dir, and the only route
goes to a webhook receiver on a closed port (alerts are stored and readable from
``GET /api/v2/alerts`` whether or not the notification succeeds). With ``CI=true`` a missing
binary or a failed start FAILS the test; elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.timeouts import scaled
from tests.support.unavailable import service_unavailable

__all__ = ["alertmanager_url", "running_alertmanager"]

BINARY = os.environ.get("SIDECAR_ALERTMANAGER_BIN", "/usr/bin/prometheus-alertmanager")

_CONFIG = """\
route:
  receiver: hook
  group_wait: 1h
  group_interval: 1h
  repeat_interval: 4h
receivers:
  - name: hook
    webhook_configs:
      - url: http://127.0.0.1:{hook_port}/
        send_resolved: true
"""


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/-/ready", timeout=0.5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def running_alertmanager() -> Iterator[str]:
    """Start Alertmanager, wait until `/-/ready`, yield its base URL, stop it."""
    if shutil.which(BINARY) is None:
        service_unavailable(f"{BINARY} not found (apt-get install -y prometheus-alertmanager)")
    with tempfile.TemporaryDirectory(prefix="sidecar-am-") as tmp:
        config = Path(tmp) / "alertmanager.yml"
        config.write_text(_CONFIG.format(hook_port=free_port()))
        for _ in range(3):  # free_port() races: retry with a new port if the bind fails
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            proc = subprocess.Popen(
                [
                    BINARY,
                    f"--config.file={config}",
                    f"--storage.path={tmp}/data",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--cluster.listen-address=",
                    "--log.level=warn",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            deadline = time.monotonic() + scaled(15)
            while proc.poll() is None and time.monotonic() < deadline and not _ready(url):
                time.sleep(0.05)
            if proc.poll() is None and _ready(url):
                try:
                    yield url
                finally:
                    proc.terminate()
                    try:
                        proc.wait(scaled(5))
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                    if proc.stderr:
                        proc.stderr.close()
                return
            proc.kill()
            err = proc.communicate()[1].decode(errors="replace").strip().splitlines()
            reason = err[-1] if err else "no output"
        service_unavailable(f"Alertmanager did not start: {reason}")


@pytest.fixture
def alertmanager_url() -> Iterator[str]:
    with running_alertmanager() as url:
        yield url

"""A throwaway Prometheus server scraping the targets a test gives it.

Provides :class:`PrometheusServer` (``query``, ``query_range``, ``targets``,
``wait_for_targets_up``, ``wait_for_scrapes``) and :func:`running_prometheus`, a
context manager that starts ``prometheus`` (``/usr/bin/prometheus`` from the
Debian package, or ``$SIDECAR_PROMETHEUS``) on a free ``127.0.0.1`` port with a
temporary config (``scrape_interval`` 1 s by default) and temporary TSDB, waits
until ``/-/ready`` answers, and kills it and removes its files on exit.

Why: dashboards and alert rules are PromQL that only a real Prometheus can judge
(a query can be valid and still match nothing because of a wrong label). The
scrape targets are a parameter, so the same helper serves a fake exposition in
unit tests and a real ``sidecar serve`` under load in end-to-end tests.

When the binary is missing or will not start, the test is skipped outside CI
and fails with ``CI=true`` (:func:`tests.support.unavailable.service_unavailable`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped,unused-ignore]

from tests.support.ports import free_port
from tests.support.timeouts import scaled
from tests.support.unavailable import service_unavailable

__all__ = ["PrometheusQueryError", "PrometheusServer", "find_prometheus", "running_prometheus"]

ENV_BINARY = "SIDECAR_PROMETHEUS"
DEFAULT_BINARY = "/usr/bin/prometheus"
Series = dict[str, Any]


class PrometheusQueryError(Exception):
    """Prometheus rejected a query (bad syntax, unknown function, ...): the query's fault."""


@dataclass
class PrometheusServer:
    url: str  # http://127.0.0.1:PORT
    job: str

    def query(self, expr: str, at: float | None = None) -> list[Series]:
        """Instant query; returns the result series (a scalar comes back as one series)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return _as_series(self._get("/api/v1/query", params))

    def query_range(self, expr: str, start: float, end: float, step: float = 1.0) -> list[Series]:
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": str(step)}
        return _as_series(self._get("/api/v1/query_range", params))

    def targets(self) -> list[dict[str, Any]]:
        data = self._get("/api/v1/targets", {"state": "active"})
        active: list[dict[str, Any]] = data["activeTargets"]
        return active

    def wait_for_targets_up(self, timeout: float = 20.0) -> None:
        """Block until every configured target has been scraped successfully."""
        deadline = time.monotonic() + scaled(timeout)
        while True:
            targets = self.targets()
            if targets and all(t["health"] == "up" for t in targets):
                return
            if time.monotonic() >= deadline:
                states = ", ".join(
                    f"{t['scrapeUrl']}={t['health']} {t.get('lastError', '')}".strip()
                    for t in targets
                )
                raise TimeoutError(f"Prometheus targets not up in time: {states or 'none'}")
            time.sleep(0.1)

    def wait_for_scrapes(self, count: int = 3, timeout: float = 20.0) -> None:
        """Block until every target of the job has `count` samples, so rate() has data."""
        expr = f'min(count_over_time(up{{job="{self.job}"}}[10m]))'
        deadline = time.monotonic() + scaled(timeout)
        while True:
            result = self.query(expr)
            if result and float(result[0]["value"][1]) >= count:
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"Prometheus did not scrape {count} times in time")
            time.sleep(0.2)

    def _get(self, path: str, params: dict[str, str]) -> Any:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=scaled(10)) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:  # 400/422: Prometheus explains in the body
            body = json.load(exc)
        if body.get("status") != "success":
            raise PrometheusQueryError(f"{params.get('query', path)}: {body.get('error')}")
        return body["data"]


def _as_series(data: dict[str, Any]) -> list[Series]:
    if data["resultType"] in ("vector", "matrix"):
        result: list[Series] = data["result"]
        return result
    return [{"metric": {}, "value": data["result"]}]  # scalar or string


def find_prometheus() -> str | None:
    configured = os.environ.get(ENV_BINARY)
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    return shutil.which("prometheus") or (
        DEFAULT_BINARY if os.access(DEFAULT_BINARY, os.X_OK) else None
    )


def _config(
    targets: Sequence[str], job: str, interval: str, path: str, rules: Sequence[Path]
) -> str:
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [
            {
                "job_name": job,
                "metrics_path": path,
                "scrape_timeout": interval,
                "static_configs": [{"targets": list(targets)}],
            }
        ],
    }
    if rules:
        config["rule_files"] = [str(p) for p in rules]
    text: str = yaml.safe_dump(config, sort_keys=True)
    return text


@contextlib.contextmanager
def running_prometheus(
    targets: Sequence[str],
    *,
    job: str = "sidecar",
    scrape_interval: str = "1s",
    metrics_path: str = "/metrics",
    rule_files: Sequence[Path] = (),
    start_timeout: float = 20.0,
) -> Iterator[PrometheusServer]:
    """Run Prometheus scraping `targets` ("host:port") until the block exits."""
    binary = find_prometheus()
    if binary is None:
        service_unavailable(
            f"prometheus binary not found (set {ENV_BINARY} or `apt-get install prometheus`)"
        )
    with tempfile.TemporaryDirectory(prefix="sidecar-prometheus-") as tmp:
        workdir = Path(tmp)
        config = workdir / "prometheus.yml"
        config.write_text(_config(targets, job, scrape_interval, metrics_path, rule_files))
        process, url = _start(binary, workdir, config, start_timeout)
        try:
            yield PrometheusServer(url=url, job=job)
        finally:
            _stop(process)


def _start(
    binary: str, workdir: Path, config: Path, timeout: float
) -> tuple[subprocess.Popen[bytes], str]:
    log = workdir / "prometheus.log"
    problem = ""
    # free_port() is racy: another process may take the port before Prometheus binds it.
    for _attempt in range(3):
        port = free_port()
        command = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ]
        with log.open("wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        if _wait_ready(process, url, timeout):
            return process, url
        running = process.poll() is None
        _stop(process)
        lines = log.read_text(errors="replace").strip().splitlines()
        if running:
            problem = f"not ready after {scaled(timeout):g}s"
        else:
            problem = lines[-1] if lines else f"exit status {process.returncode}"
        if "address already in use" not in problem:
            break
    service_unavailable(f"prometheus did not start: {problem}")


def _wait_ready(process: subprocess.Popen[bytes], url: str, timeout: float) -> bool:
    deadline = time.monotonic() + scaled(timeout)
    while process.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
                if response.status == 200:
                    return True
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.05)
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=scaled(10))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

"""A real `sidecar simulate` + `sidecar serve` pair as subprocesses on free loopback ports.

Used by the end-to-end tests: everything goes over real sockets to real processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.ports import free_port, wait_for_port
from tests.support.timeouts import scaled

REPO = Path(__file__).resolve().parents[2]


def sidecar_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "sidecar", *args]


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(scaled(timeout))
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start(name: str, args: list[str], tmp: Path, env: dict[str, str] | None = None) -> Process:
    log = tmp / f"{name}.log"
    handle = log.open("wb")
    popen = subprocess.Popen(
        args,
        stdout=handle,
        stderr=subprocess.STDOUT,
        cwd=tmp,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    handle.close()
    return Process(name, popen, log)


@dataclass
class Stack:
    tmp: Path
    db_url: str
    sim_port: int = field(default_factory=free_port)
    port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"  # where `serve` takes client traffic
    processes: list[Process] = field(default_factory=list)
    serve: Process | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/v1/stream"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start_sim(self, *args: str) -> Process:
        proc = start(
            "simulate",
            sidecar_cmd("simulate", "--listen", f"127.0.0.1:{self.sim_port}", *args),
            self.tmp,
        )
        self.processes.append(proc)
        self._wait(proc, self.sim_port)
        return proc

    def start_serve(
        self, *args: str, env: dict[str, str] | None = None, name: str = "serve"
    ) -> Process:
        proc = start(
            name,
            sidecar_cmd(
                "serve",
                "--listen",
                f"{self.host}:{self.port}",
                "--admin-listen",
                f"127.0.0.1:{self.admin_port}",
                "--upstream",
                self.sim_url,
                "--db",
                self.db_url,
                "--spool-dir",
                str(self.tmp),
                *args,
            ),
            self.tmp,
            env,
        )
        self.processes.append(proc)
        self.serve = proc
        self._wait_healthy(proc)
        self._wait(proc, self.port, self.host)
        return proc

    def _wait_healthy(self, proc: Process) -> None:
        """Until `/healthz` answers. The sockets listen (and accept TCP connections) before
        start-up work such as closing a crashed run's streams, which ends before the servers
        answer; a TCP probe alone once let a test read the ledger before that work was done."""
        deadline = time.monotonic() + scaled(20)
        while True:
            try:
                with urllib.request.urlopen(self.admin_url + "/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if proc.popen.poll() is not None or time.monotonic() >= deadline:
                proc.stop(signal.SIGKILL)
                raise AssertionError(f"{proc.name} did not start:\n{proc.output()}")
            time.sleep(0.05)

    def _wait(self, proc: Process, port: int, host: str = "127.0.0.1") -> None:
        try:
            wait_for_port(host, port, timeout=20)
        except TimeoutError:
            proc.stop(signal.SIGKILL)
            raise AssertionError(f"{proc.name} did not start:\n{proc.output()}") from None

    def sim_stats(self, detail: bool = True) -> dict[str, Any]:
        url = self.sim_url + "/sim/stats" + ("?detail=1" if detail else "")
        with urllib.request.urlopen(url, timeout=5) as response:
            return dict(json.load(response))

    def metrics_text(self) -> str:
        with urllib.request.urlopen(self.admin_url + "/metrics", timeout=5) as response:
            return str(response.read().decode())

    def stop_all(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()


@contextlib.contextmanager
def running_stack(tmp: Path, db_url: str | None = None) -> Iterator[Stack]:
    from sidecar.ledger import db

    url = db_url or f"sqlite:///{tmp / 'ledger.db'}"
    db.upgrade(url)
    stack = Stack(tmp, url)
    try:
        yield stack
    finally:
        stack.stop_all()

"""A throwaway `redis-server` (Debian package) on a free loopback port, for `--resume-store`.

:class:`RedisServer` starts it without persistence (a restart loses everything, as a restarted
cache would), and can be stopped and started again on the same port for outage tests.
A missing `redis-server` fails the test in CI and skips it elsewhere.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.support.ports import free_port, wait_for_port
from tests.support.unavailable import service_unavailable

__all__ = ["RedisServer", "running_redis"]


class RedisServer:
    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            service_unavailable("redis-server not installed (make debian-packages)")
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = (self.workdir / "redis.log").open("ab")
        self.popen = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        try:
            wait_for_port("127.0.0.1", self.port, timeout=10)
        except TimeoutError:
            self.stop()
            service_unavailable(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()  # as a crash: nothing is saved
            self.popen.wait()
        self.popen = None


@contextlib.contextmanager
def running_redis(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()

"""A throwaway PgBouncer in front of a test PostgreSQL cluster (Debian's `pgbouncer` package).

:func:`pgbouncer` starts one in transaction pooling mode (the mode a fleet of sidecars would
share a database through), listening on 127.0.0.1 on a free port with trust authentication,
and yields its port. As root it runs as the ``postgres`` user, like the cluster.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.ports import free_port
from tests.support.postgres import HOST, SUPERUSER, PostgresCluster
from tests.support.timeouts import scaled

BINARY = Path("/usr/sbin/pgbouncer")


class PgBouncerUnavailable(RuntimeError):
    """The pgbouncer binary is missing or it did not start."""


CONFIG = """\
[databases]
* = host={host} port={pg_port}

[pgbouncer]
listen_addr = {host}
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {dir}/users.txt
pool_mode = transaction
default_pool_size = {pool}
max_client_conn = 200
server_reset_query =
ignore_startup_parameters = extra_float_digits,options
logfile = {dir}/pgbouncer.log
"""


@contextlib.contextmanager
def pgbouncer(cluster: PostgresCluster, pool: int = 2) -> Iterator[int]:
    if not BINARY.is_file():
        raise PgBouncerUnavailable("no /usr/sbin/pgbouncer; install the Debian package pgbouncer")
    directory = Path(tempfile.mkdtemp(prefix="sidecar-pgbouncer-", dir="/tmp"))
    port = free_port(HOST)
    (directory / "users.txt").write_text(f'"{SUPERUSER}" ""\n')
    config = directory / "pgbouncer.ini"
    config.write_text(
        CONFIG.format(host=HOST, pg_port=cluster.port, port=port, dir=directory, pool=pool)
    )
    argv = [str(BINARY), str(config)]
    if os.geteuid() == 0:
        shutil.chown(directory, SUPERUSER)
        for path in directory.iterdir():
            shutil.chown(path, SUPERUSER)
        argv = ["runuser", "-u", SUPERUSER, "--", *argv]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(port, process, directory / "pgbouncer.log")
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(directory, ignore_errors=True)


def _wait_for(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + scaled(10.0)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-500:] if log.exists() else ""
            raise PgBouncerUnavailable(f"pgbouncer exited ({process.returncode}): {tail}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise PgBouncerUnavailable(f"pgbouncer did not listen on {HOST}:{port} in time")

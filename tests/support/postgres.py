"""Throwaway PostgreSQL clusters built from the Debian server binaries.

Provides:

* :class:`PostgresCluster` - one private cluster (``initdb`` into a temp dir,
  trust auth, listening on ``127.0.0.1`` only, a free port, its unix socket
  inside the temp dir) with :meth:`~PostgresCluster.start`,
  :meth:`~PostgresCluster.stop` (for outage tests: data dir and port are kept,
  so ``start()`` brings the same database back on the same URL),
  :meth:`~PostgresCluster.fresh_database` (a new, empty database per test via
  ``CREATE DATABASE ... TEMPLATE template0``, a few tens of milliseconds) and
  :meth:`~PostgresCluster.destroy` (``pg_ctl stop -m immediate`` + remove dir).
* :func:`temporary_postgres_cluster` - context manager around the above.
* :func:`postgres_cluster_fixture` / :func:`postgres_url_fixture` - pytest
  fixture factories, and the ready-made fixtures ``postgres_cluster``
  (session scoped) and ``postgres_url`` (function scoped, a fresh database
  each time) built from them.  Use them from a ``conftest.py`` with
  ``from tests.support.postgres import postgres_cluster, postgres_url``.

Why: the ledger and its migrations must be tested against the real server, and
a cluster per test session keeps that fast while a database per test keeps the
tests independent.  URLs use SQLAlchemy's psycopg 3 dialect:
``postgresql+psycopg://postgres@127.0.0.1:PORT/DBNAME``.

Speed/safety trade-off: the cluster runs with ``fsync=off``,
``synchronous_commit=off`` and ``full_page_writes=off``.  That is only unsafe
across an OS crash, which a throwaway test cluster never needs to survive;
``pg_ctl stop -m immediate`` (a PostgreSQL crash, not an OS crash) still
recovers correctly on the next ``start()``.

PostgreSQL refuses to run as root, so when the tests run as root ``initdb`` and
``pg_ctl`` run as the ``postgres`` OS user (created by the Debian package) via
``runuser``, and the temp dir is chowned to it.  The newest
``/usr/lib/postgresql/<N>/bin`` is used unless ``SIDECAR_PG_BINDIR`` points
elsewhere.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import psycopg
import pytest

from tests.support.ports import free_port
from tests.support.timeouts import scaled
from tests.support.unavailable import service_unavailable

__all__ = [
    "PostgresCluster",
    "PostgresUnavailable",
    "find_postgres_bindir",
    "postgres_cluster",
    "postgres_cluster_fixture",
    "postgres_url",
    "postgres_url_fixture",
    "temporary_postgres_cluster",
]

HOST = "127.0.0.1"
SUPERUSER = "postgres"
_db_counter = itertools.count(1)
Scope = Literal["session", "package", "module", "class", "function"]
_DB_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresUnavailable(RuntimeError):
    """PostgreSQL binaries are missing or the cluster could not be started."""


def find_postgres_bindir() -> Path:
    """Return the bin dir of the newest installed PostgreSQL server.

    ``SIDECAR_PG_BINDIR`` overrides the search.  Raises
    :class:`PostgresUnavailable` when nothing usable is found.
    """
    override = os.environ.get("SIDECAR_PG_BINDIR")
    candidates: list[Path]
    if override:
        candidates = [Path(override)]
    else:

        def version_key(path: Path) -> tuple[int, ...]:
            parts = path.parent.name.split(".")
            return tuple(int(p) if p.isdigit() else -1 for p in parts)

        candidates = sorted(
            Path("/usr/lib/postgresql").glob("*/bin"), key=version_key, reverse=True
        )
    for bindir in candidates:
        if all((bindir / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    raise PostgresUnavailable(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) under "
        f"{override or '/usr/lib/postgresql/*/bin'}; install the Debian package 'postgresql'"
    )


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _temp_parent() -> str | None:
    """Where to create the cluster dir.  As root the server runs as
    ``postgres``, which must be able to traverse every parent directory; if
    ``$TMPDIR`` does not allow that, fall back to ``/tmp``."""
    if os.geteuid() != 0:
        return None
    parent = Path(tempfile.gettempdir()).resolve()
    for directory in (parent, *parent.parents):
        if not directory.stat().st_mode & 0o001:
            return "/tmp"
    return None


class PostgresCluster:
    """A private PostgreSQL cluster in a temporary directory.

    Create it with :meth:`create` (or the :func:`postgres_cluster` context
    manager), which runs ``initdb`` and :meth:`start`.  Attributes:

    * ``port`` - the TCP port on 127.0.0.1, fixed for the cluster's life;
    * ``base_dir`` / ``data_dir`` / ``socket_dir`` / ``log_file`` - paths;
    * ``bindir`` - the PostgreSQL bin directory in use.
    """

    def __init__(self, bindir: Path, base_dir: Path, port: int) -> None:
        self.bindir = bindir
        self.base_dir = base_dir
        self.data_dir = base_dir / "data"
        self.socket_dir = base_dir / "sock"
        self.log_file = base_dir / "postgres.log"
        self.port = port
        self._as_postgres_user = os.geteuid() == 0
        self._destroyed = False

    # ------------------------------------------------------------------ setup
    @classmethod
    def create(cls, *, bindir: Path | None = None, start_timeout: float = 30.0) -> PostgresCluster:
        """``initdb`` a new cluster in a fresh temp dir and start it.

        Raises :class:`PostgresUnavailable` (after cleaning up) on any failure.
        """
        bindir = bindir or find_postgres_bindir()
        base_dir = Path(tempfile.mkdtemp(prefix="sidecar-pg-", dir=_temp_parent()))
        cluster = cls(bindir, base_dir, port=free_port(HOST))
        try:
            cluster._initdb()
            for attempt in range(3):
                try:
                    cluster.start(timeout=start_timeout)
                    break
                except PostgresUnavailable:
                    # Most likely the port was taken between free_port() and bind().
                    if attempt == 2 or "already in use" not in _tail(cluster.log_file, 40):
                        raise
                    cluster.port = free_port(HOST)
                    cluster._write_config()
        except BaseException:
            cluster.destroy()
            raise
        return cluster

    def _cmd(self, *argv: str) -> list[str]:
        if self._as_postgres_user:
            return ["runuser", "-u", SUPERUSER, "--", *argv]
        return list(argv)

    def _run(self, *argv: str, timeout: float) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                self._cmd(*argv),
                cwd=self.base_dir,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                env={**os.environ, "LC_ALL": "C", "LANG": "C"},
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PostgresUnavailable(f"{Path(argv[0]).name} failed: {exc}") from exc

    def _initdb(self) -> None:
        if self._as_postgres_user:
            try:
                pw = pwd.getpwnam(SUPERUSER)
            except KeyError:
                raise PostgresUnavailable(
                    "running as root but there is no 'postgres' OS user to run initdb as"
                ) from None
            if shutil.which("runuser") is None:
                raise PostgresUnavailable("running as root but 'runuser' is not available")
            os.chown(self.base_dir, pw.pw_uid, pw.pw_gid)
        proc = self._run(
            str(self.bindir / "initdb"),
            "--pgdata",
            str(self.data_dir),
            "--username",
            SUPERUSER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--no-locale",
            "--no-sync",
            "--no-instructions",
            timeout=scaled(120),
        )
        if proc.returncode != 0:
            err = (proc.stderr or proc.stdout).strip().splitlines()
            raise PostgresUnavailable(f"initdb failed: {err[-1] if err else proc.returncode}")
        self._write_config()

    def _write_config(self) -> None:
        """(Re)write pg_hba.conf and our postgresql.conf include."""
        (self.data_dir / "pg_hba.conf").write_text(
            "# written by tests/support/postgres.py: trust, loopback/unix socket only\n"
            "local all all trust\n"
            f"host  all all {HOST}/32 trust\n"
        )
        conf = self.data_dir / "postgresql.conf"
        marker = "# --- tests/support/postgres.py ---\n"
        text = conf.read_text()
        if marker in text:
            text = text[: text.index(marker)]
        text += (
            marker + f"listen_addresses = '{HOST}'\n"
            f"port = {self.port}\n"
            f"unix_socket_directories = '{self.socket_dir}'\n"
            "max_connections = 100\n"
            "shared_buffers = 32MB\n"
            "fsync = off\n"
            "synchronous_commit = off\n"
            "full_page_writes = off\n"
            "logging_collector = off\n"
            "log_min_messages = warning\n"
            "timezone = 'UTC'\n"
        )
        conf.write_text(text)
        self.socket_dir.mkdir(exist_ok=True)
        if self._as_postgres_user:
            pw = pwd.getpwnam(SUPERUSER)
            for path in (self.socket_dir, self.data_dir / "pg_hba.conf", conf):
                os.chown(path, pw.pw_uid, pw.pw_gid)
            self.log_file.touch()
            os.chown(self.log_file, pw.pw_uid, pw.pw_gid)

    # -------------------------------------------------------------- lifecycle
    def is_running(self) -> bool:
        """Return True if ``pg_ctl status`` reports a running server."""
        if self._destroyed:
            return False
        proc = self._run(
            str(self.bindir / "pg_ctl"), "status", "-D", str(self.data_dir), timeout=30
        )
        return proc.returncode == 0

    def start(self, timeout: float = 30.0) -> None:
        """Start the server (same data dir and port) and wait until it accepts
        connections on 127.0.0.1.  ``timeout`` is unscaled seconds."""
        if self._destroyed:
            raise PostgresUnavailable("cluster was destroyed")
        wait = scaled(timeout)
        proc = self._run(
            str(self.bindir / "pg_ctl"),
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-w",
            "-t",
            str(max(1, int(wait))),
            timeout=wait + 10,
        )
        if proc.returncode != 0:
            raise PostgresUnavailable(
                f"pg_ctl start failed on port {self.port}: "
                f"{(proc.stderr or proc.stdout).strip()}\n{_tail(self.log_file)}"
            )
        self._wait_ready(wait)

    def _wait_ready(self, wait: float) -> None:
        deadline = time.monotonic() + wait
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.dsn("postgres"), connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.Error as exc:
                last = exc
                time.sleep(0.05)
        raise PostgresUnavailable(f"PostgreSQL on {HOST}:{self.port} not ready: {last}")

    def stop(self, mode: str = "fast", timeout: float = 30.0) -> None:
        """Stop the server but keep data dir and port, so :meth:`start` can
        bring it back.  ``mode`` is a ``pg_ctl -m`` mode: ``smart``, ``fast``
        (disconnect clients cleanly) or ``immediate`` (like a crash)."""
        if mode not in {"smart", "fast", "immediate"}:
            raise ValueError(f"unknown pg_ctl stop mode {mode!r}")
        wait = scaled(timeout)
        proc = self._run(
            str(self.bindir / "pg_ctl"),
            "stop",
            "-D",
            str(self.data_dir),
            "-m",
            mode,
            "-w",
            "-t",
            str(max(1, int(wait))),
            timeout=wait + 10,
        )
        if proc.returncode != 0 and self.is_running():
            raise RuntimeError(f"pg_ctl stop failed: {(proc.stderr or proc.stdout).strip()}")

    def destroy(self) -> None:
        """``pg_ctl stop -m immediate`` (if running) and remove the temp dir.
        Idempotent and never raises."""
        if self._destroyed:
            return
        if (self.data_dir / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self.stop(mode="immediate", timeout=30)
        self._destroyed = True
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    # ---------------------------------------------------------------- access
    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL: ``postgresql+psycopg://postgres@127.0.0.1:PORT/DBNAME``."""
        return f"postgresql+psycopg://{SUPERUSER}@{HOST}:{self.port}/{dbname}"

    def dsn(self, dbname: str = "postgres") -> str:
        """libpq/psycopg connection string for ``dbname`` (TCP on 127.0.0.1)."""
        return f"host={HOST} port={self.port} user={SUPERUSER} dbname={dbname}"

    def create_database(self, name: str) -> str:
        """Create an empty database ``name`` from ``template0``; return its URL."""
        if not _DB_NAME_RE.match(name):
            raise ValueError(f"invalid database name {name!r} (use [a-z_][a-z0-9_]*)")
        with psycopg.connect(self.dsn("postgres"), autocommit=True, connect_timeout=10) as conn:
            conn.execute(f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8'")
        return self.url(name)

    def fresh_database(self, prefix: str = "test") -> str:
        """Create a new, uniquely named empty database and return its URL."""
        prefix = re.sub(r"[^a-z0-9_]", "_", prefix.lower())[:40] or "test"
        if not prefix[0].isalpha():
            prefix = f"t_{prefix}"[:40]
        return self.create_database(f"{prefix}_{os.getpid()}_{next(_db_counter)}")

    def drop_database(self, name: str) -> None:
        """Drop database ``name``, terminating its connections (``WITH (FORCE)``)."""
        if not _DB_NAME_RE.match(name):
            raise ValueError(f"invalid database name {name!r}")
        with psycopg.connect(self.dsn("postgres"), autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def temporary_postgres_cluster(
    *, bindir: Path | None = None, start_timeout: float = 30.0
) -> Iterator[PostgresCluster]:
    """Context manager: a started :class:`PostgresCluster`, destroyed on exit."""
    cluster = PostgresCluster.create(bindir=bindir, start_timeout=start_timeout)
    try:
        yield cluster
    finally:
        cluster.destroy()


def postgres_cluster_fixture(
    scope: Scope = "session", name: str = "postgres_cluster"
) -> Callable[..., Iterator[PostgresCluster]]:
    """Return a pytest fixture called ``name`` (default session scoped) that
    yields a running :class:`PostgresCluster`.  If it cannot start, the test
    fails under ``CI=true`` and is skipped otherwise."""

    @pytest.fixture(scope=scope, name=name)
    def _postgres_cluster() -> Iterator[PostgresCluster]:
        try:
            cluster = PostgresCluster.create()
        except PostgresUnavailable as exc:
            service_unavailable(f"PostgreSQL unavailable: {str(exc).splitlines()[0]}")
        try:
            yield cluster
        finally:
            cluster.destroy()

    return _postgres_cluster


def postgres_url_fixture(
    cluster_fixture: str = "postgres_cluster",
    scope: Scope = "function",
    name: str = "postgres_url",
) -> Callable[..., Iterator[str]]:
    """Return a pytest fixture yielding the SQLAlchemy URL of a fresh, empty
    database in the cluster provided by the fixture named ``cluster_fixture``.
    The database is dropped (best effort) afterwards."""

    @pytest.fixture(scope=scope, name=name)
    def _postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
        cluster: PostgresCluster = request.getfixturevalue(cluster_fixture)
        if not cluster.is_running():
            # A previous test (e.g. an outage test) left it stopped: bring it back.
            try:
                cluster.start()
            except PostgresUnavailable as exc:
                service_unavailable(f"PostgreSQL restart failed: {str(exc).splitlines()[0]}")
        url = cluster.fresh_database()
        try:
            yield url
        finally:
            with contextlib.suppress(Exception):
                if cluster.is_running():
                    cluster.drop_database(url.rsplit("/", 1)[1])

    return _postgres_url


postgres_cluster = postgres_cluster_fixture()
"""Session-scoped fixture ``postgres_cluster``: a running :class:`PostgresCluster`."""

postgres_url = postgres_url_fixture()
"""Function-scoped fixture: URL of a fresh database in ``postgres_cluster``."""

"""Network namespaces with a veth pair, for partition / half-open-peer tests.

Provides:

* :class:`NetNamespace` - a network namespace connected to the host by a veth
  pair with a private point-to-point /30 (host side ``10.213.X.1``, namespace
  side ``10.213.X.2``; these addresses exist only on the veth pair created
  here).  Methods: :meth:`~NetNamespace.run` (a command inside the namespace),
  :meth:`~NetNamespace.spawn` / :meth:`~NetNamespace.spawn_python` (asyncio
  subprocesses inside it, e.g. a sidecar client using this repo's venv),
  :meth:`~NetNamespace.drop_all` (iptables DROP on INPUT and OUTPUT *inside*
  the namespace: the peer goes silent without sending FIN or RST, i.e. a
  half-open connection as after a cable pull), :meth:`~NetNamespace.restore`
  (undo it) and :meth:`~NetNamespace.destroy`.
* :func:`network_namespace` - context manager around the above.
* :func:`netns_fixture` - pytest fixture factory; ``netns`` is the ready-made
  function-scoped fixture.

Why: a sidecar must detect a peer that vanished without closing its socket,
which cannot be simulated on loopback alone.

Requirements: root (CAP_NET_ADMIN + CAP_SYS_ADMIN), ``ip`` (iproute2) and
``iptables`` (either backend: ``iptables`` (nf_tables) is tried first, then
``iptables-legacy``).  The fixture fails under ``CI=true`` and skips otherwise
when these are missing.  Names are unique per process (``scns-<pid>-<n>``,
``sc<pid hex>h<n>``/``...n<n>``); subnets are allocated under a file lock so
parallel test processes never share one, and leftovers of dead test processes
are removed on the next allocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import pytest

from tests.support.timeouts import scaled
from tests.support.unavailable import service_unavailable

__all__ = [
    "NetNamespace",
    "NetnsUnavailable",
    "netns",
    "netns_fixture",
    "network_namespace",
]

Scope = Literal["session", "package", "module", "class", "function"]
SUBNET_PREFIX = "10.213"
NS_PREFIX = "scns-"
REPO_ROOT = Path(__file__).resolve().parents[2]
_LOCK_FILE = Path(tempfile.gettempdir()) / "sidecar-netns.lock"
_counter = itertools.count(1)
_iptables_cache: dict[str, str] = {}


class NetnsUnavailable(RuntimeError):
    """Not root, or ``ip``/``iptables`` are missing or not permitted."""


def _ip() -> str:
    found = shutil.which("ip") or next(
        (p for p in ("/usr/sbin/ip", "/sbin/ip") if os.access(p, os.X_OK)), None
    )
    if not found:
        raise NetnsUnavailable("'ip' not found; install the Debian package 'iproute2'")
    return found


def _run(argv: Sequence[str], timeout: float = 30.0, check: bool = True) -> str:
    try:
        proc = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=scaled(timeout), check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetnsUnavailable(f"{' '.join(argv)}: {exc}") from exc
    if check and proc.returncode != 0:
        raise NetnsUnavailable(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    return proc.stdout


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_namespaces(ip: str) -> None:
    """Delete ``scns-<pid>-<n>`` namespaces whose creating process is gone."""
    for line in _run([ip, "netns", "list"], check=False).splitlines():
        match = re.match(rf"^({re.escape(NS_PREFIX)}(\d+)-\d+)\b", line)
        if match and not _pid_alive(int(match.group(2))):
            _kill_pids_in(ip, match.group(1))
            _run([ip, "netns", "del", match.group(1)], check=False)


def _kill_pids_in(ip: str, name: str) -> None:
    for pid in _run([ip, "netns", "pids", name], check=False).split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), 9)


@contextlib.contextmanager
def _allocation_lock() -> Iterator[None]:
    with open(_LOCK_FILE, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _pick_subnet(ip: str) -> int:
    """Return X such that 10.213.X.0/30 is not configured on any host interface."""
    used = set(
        re.findall(
            rf"inet {re.escape(SUBNET_PREFIX)}\.(\d+)\.", _run([ip, "-o", "-4", "addr", "show"])
        )
    )
    start = (os.getpid() * 7 + next(_counter)) % 256
    for offset in range(256):
        third = (start + offset) % 256
        if str(third) not in used:
            return third
    raise NetnsUnavailable(f"all 256 {SUBNET_PREFIX}.X.0/30 test subnets are in use")


def find_iptables(namespace: str | None = None) -> str:
    """Return a working iptables binary (``iptables``, else ``iptables-legacy``),
    checked by listing rules inside ``namespace`` (or the host)."""
    key = namespace or ""
    if key in _iptables_cache:
        return _iptables_cache[key]
    errors: list[str] = []
    for name in ("iptables", "iptables-legacy"):
        binary = shutil.which(name) or (
            f"/usr/sbin/{name}" if os.access(f"/usr/sbin/{name}", os.X_OK) else None
        )
        if binary is None:
            errors.append(f"{name}: not found")
            continue
        prefix = [_ip(), "netns", "exec", namespace] if namespace else []
        try:
            proc = subprocess.run(
                [*prefix, binary, "-w", "5", "-S", "INPUT"],
                capture_output=True,
                text=True,
                timeout=scaled(30),
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            errors.append(f"{name}: {exc}")
            continue
        if proc.returncode == 0:
            _iptables_cache[key] = binary
            return binary
        errors.append(f"{name}: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}")
    raise NetnsUnavailable(
        "no working iptables (install the Debian package 'iptables'): " + "; ".join(errors)
    )


class NetNamespace:
    """A network namespace plus veth pair; see the module docstring.

    Attributes: ``name`` (namespace), ``host_if`` / ``ns_if`` (veth ends),
    ``host_addr`` / ``ns_addr`` (IPv4 addresses, /30), ``prefixlen``.
    """

    def __init__(self, name: str, host_if: str, ns_if: str, third_octet: int) -> None:
        self.name = name
        self.host_if = host_if
        self.ns_if = ns_if
        self.host_addr = f"{SUBNET_PREFIX}.{third_octet}.1"
        self.ns_addr = f"{SUBNET_PREFIX}.{third_octet}.2"
        self.prefixlen = 30
        self.dropped = False
        self._ip = _ip()
        self._destroyed = False

    @classmethod
    def create(cls) -> NetNamespace:
        """Create namespace + veth, configure addresses, bring links up.

        Raises :class:`NetnsUnavailable` (after cleaning up) on failure.
        """
        if os.geteuid() != 0:
            raise NetnsUnavailable("network namespaces need root (CAP_NET_ADMIN/CAP_SYS_ADMIN)")
        ip = _ip()
        n = next(_counter)
        pid = os.getpid()
        with _allocation_lock():
            _remove_stale_namespaces(ip)
            third = _pick_subnet(ip)
            ns = cls(f"{NS_PREFIX}{pid}-{n}", f"sc{pid:x}h{n:x}", f"sc{pid:x}n{n:x}", third)
            try:
                ns._setup()
            except BaseException:
                ns.destroy()
                raise
        return ns

    def _setup(self) -> None:
        ip, cidr = self._ip, f"/{self.prefixlen}"
        _run([ip, "netns", "add", self.name])
        _run(
            [
                ip,
                "link",
                "add",
                self.host_if,
                "type",
                "veth",
                "peer",
                "name",
                self.ns_if,
                "netns",
                self.name,
            ]
        )
        _run([ip, "addr", "add", self.host_addr + cidr, "dev", self.host_if])
        _run([ip, "link", "set", self.host_if, "up"])
        _run([ip, "-n", self.name, "addr", "add", self.ns_addr + cidr, "dev", self.ns_if])
        _run([ip, "-n", self.name, "link", "set", "lo", "up"])
        _run([ip, "-n", self.name, "link", "set", self.ns_if, "up"])
        # veth carrier comes up asynchronously; wait until both ends are UP.
        deadline = time.monotonic() + scaled(10)
        while True:
            host_up = "state UP" in _run([ip, "-o", "link", "show", self.host_if])
            ns_up = "state UP" in _run([ip, "-n", self.name, "-o", "link", "show", self.ns_if])
            if host_up and ns_up:
                return
            if time.monotonic() >= deadline:
                raise NetnsUnavailable(f"veth {self.host_if}<->{self.ns_if} did not come up")
            time.sleep(0.02)

    # -------------------------------------------------------------- commands
    def exec_argv(self, *argv: str) -> list[str]:
        """Return ``ip netns exec NAME argv...`` as an argv list."""
        return [self._ip, "netns", "exec", self.name, *argv]

    def run(
        self, *argv: str, check: bool = True, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace and wait for it (text output captured)."""
        return subprocess.run(
            self.exec_argv(*argv),
            capture_output=True,
            text=True,
            timeout=scaled(timeout),
            check=check,
        )

    async def spawn(self, *argv: str, **kwargs: Any) -> asyncio.subprocess.Process:
        """Start ``argv`` inside the namespace as an asyncio subprocess.

        ``kwargs`` go to :func:`asyncio.create_subprocess_exec` (``stdin``,
        ``stdout``, ``env``, ...).  The caller must wait for / kill it;
        :meth:`destroy` kills anything still running in the namespace.
        """
        return await asyncio.create_subprocess_exec(*self.exec_argv(*argv), **kwargs)

    async def spawn_python(
        self, *args: str, env: dict[str, str] | None = None, **kwargs: Any
    ) -> asyncio.subprocess.Process:
        """Start this interpreter (the repo's venv python) inside the namespace
        with ``args`` (e.g. ``"-c", code`` or ``"-m", "sidecar.cli", ...``).
        The repo root is on ``PYTHONPATH`` and is the working directory, and
        output is unbuffered."""
        child_env = dict(os.environ if env is None else env)
        child_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), child_env.get("PYTHONPATH", "")) if p
        )
        child_env.setdefault("PYTHONUNBUFFERED", "1")
        kwargs.setdefault("cwd", str(REPO_ROOT))
        return await self.spawn(sys.executable, *args, env=child_env, **kwargs)

    # ------------------------------------------------------------- partition
    def _iptables(self, *rule: str) -> None:
        binary = find_iptables(self.name)
        proc = self.run(binary, "-w", "5", *rule, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{binary} {' '.join(rule)} in {self.name}: {proc.stderr.strip()}")

    def drop_all(self) -> None:
        """Silently drop every packet entering or leaving the namespace.

        Connections stay "established" on both sides, nothing (not even FIN or
        RST when the namespace's process dies) reaches the host: a half-open
        peer.  Idempotent."""
        if self.dropped:
            return
        self._iptables("-I", "INPUT", "1", "-j", "DROP")
        try:
            self._iptables("-I", "OUTPUT", "1", "-j", "DROP")
        except BaseException:
            self._iptables("-D", "INPUT", "-j", "DROP")
            raise
        self.dropped = True

    def restore(self) -> None:
        """Remove the DROP rules added by :meth:`drop_all` (heal the partition)."""
        if not self.dropped:
            return
        self._iptables("-D", "INPUT", "-j", "DROP")
        self._iptables("-D", "OUTPUT", "-j", "DROP")
        self.dropped = False

    # --------------------------------------------------------------- cleanup
    def destroy(self) -> None:
        """Kill processes left in the namespace, delete it and the veth pair.
        Idempotent and never raises."""
        if self._destroyed:
            return
        self._destroyed = True
        with contextlib.suppress(Exception):
            _kill_pids_in(self._ip, self.name)
        with contextlib.suppress(Exception):
            _run([self._ip, "netns", "del", self.name], check=False)
        with contextlib.suppress(Exception):
            _run([self._ip, "link", "del", self.host_if], check=False)

    def __enter__(self) -> NetNamespace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def __repr__(self) -> str:
        return (
            f"NetNamespace({self.name!r}, host {self.host_if}={self.host_addr}, "
            f"ns {self.ns_if}={self.ns_addr}/{self.prefixlen})"
        )


@contextlib.contextmanager
def network_namespace() -> Iterator[NetNamespace]:
    """Context manager: a ready :class:`NetNamespace`, destroyed on exit."""
    ns = NetNamespace.create()
    try:
        yield ns
    finally:
        ns.destroy()


def netns_fixture(
    scope: Scope = "function", name: str = "netns", require_iptables: bool = True
) -> Callable[..., Iterator[NetNamespace]]:
    """Return a pytest fixture called ``name`` yielding a :class:`NetNamespace`.

    When root, ``ip`` or (with ``require_iptables``) a working ``iptables`` is
    missing, the test fails under ``CI=true`` and is skipped otherwise."""

    @pytest.fixture(scope=scope, name=name)
    def _netns() -> Iterator[NetNamespace]:
        try:
            ns = NetNamespace.create()
        except NetnsUnavailable as exc:
            service_unavailable(f"network namespace unavailable: {str(exc).splitlines()[0]}")
        try:
            if require_iptables:
                try:
                    find_iptables(ns.name)
                except NetnsUnavailable as exc:
                    service_unavailable(f"iptables unusable: {str(exc).splitlines()[0]}")
            yield ns
        finally:
            ns.destroy()

    return _netns


netns = netns_fixture()
"""Function-scoped fixture ``netns``: a fresh :class:`NetNamespace` per test."""

"""The processes a benchmark starts, and what /proc says about them.

Servers run as separate processes so the load generator never shares a CPU budget with what it
measures. Each child gets its own session (Ctrl-C reaches only the bench, which then cleans up
in order) and PR_SET_PDEATHSIG (if the bench itself is killed, the children follow).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

NGINX = "/usr/sbin/nginx"
_PYCACHE = shutil.ignore_patterns("__pycache__")
REPO = Path(__file__).resolve().parents[2]
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1


def raise_fd_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (inherited by every child); returns it."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def child_env(first: Path | None = None) -> dict[str, str]:
    """The environment for children: unbuffered, and `bench` importable from any cwd."""
    paths = (str(first) if first else None, str(REPO), os.environ.get("PYTHONPATH"))
    path = os.pathsep.join(p for p in paths if p)
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}


def _child_setup() -> None:
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll `url` until it answers (any HTTP status) or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """utime + stime of a process (all its threads), or of one of its threads, in seconds."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    stat = Path(path).read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat (idle and iowait are
    not busy): two readings give how busy the whole machine was in between."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
    return total - fields[3] - fields[4], total


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    url: str = ""
    admin: str = ""  # a sidecar's admin listener, http://HOST:PORT

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu(self) -> float:
        """CPU seconds of the process and its direct children (nginx workers)."""
        total = 0.0
        for pid in [self.pid, *children(self.pid)]:
            with contextlib.suppress(OSError):
                total += cpu_seconds(pid)
        return total

    def loop_cpu(self) -> float:
        """CPU seconds of the main thread alone: the event loop's, without the ledger writer's
        or the span exporter's threads (both share the GIL with it)."""
        return cpu_seconds(self.pid, thread=self.pid)

    def tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class Procs:
    """Starts processes in one temp dir and removes both on `close()`, whatever happened."""

    def __init__(self, commit: str | None = None) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="sidecar-bench-"))
        self.procs: list[Proc] = []
        # A frozen copy of the sidecar (the working tree, or `commit`): others may edit the
        # checkout during a 12-minute run, and a lazily imported module must not come from a
        # newer tree than the rest of the process.
        self.code = self.tmp / "code"
        try:
            snapshot(self.code, commit)
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise

    def start(
        self, name: str, args: list[str], url: str = "", env: dict[str, str] | None = None
    ) -> Proc:
        log = self.tmp / f"{name}.log"
        with log.open("wb") as handle:
            popen = subprocess.Popen(
                args,
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.tmp,
                env={**child_env(self.code), **(env or {})},
                preexec_fn=_child_setup,  # setsid + pdeathsig; no threads yet
            )
        proc = Proc(name, popen, log, url)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc, timeout: float = 5.0) -> None:
        if proc.popen.poll() is None:
            proc.popen.send_signal(signal.SIGTERM)
            try:
                proc.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait(5)
        if proc in self.procs:
            self.procs.remove(proc)

    def close(self, keep_logs: Path | None = None) -> None:
        """Stop everything; copy the servers' logs to `keep_logs` first, then remove the tmp dir."""
        for proc in reversed(list(self.procs)):
            with contextlib.suppress(Exception):
                self.stop(proc)
        if keep_logs is not None:
            shutil.rmtree(keep_logs, ignore_errors=True)
            keep_logs.mkdir(parents=True, exist_ok=True)
            for log in [*self.tmp.glob("*.log"), *self.tmp.glob("nginx/error.log")]:
                with contextlib.suppress(OSError):
                    shutil.copyfile(log, keep_logs / log.name)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # The servers ---------------------------------------------------------------------------

    def simulator(self, ttft: float, tokens_per_second: float, seed: int) -> Proc:
        port = free_port()
        args = [*_sidecar(), "simulate", "--listen", f"127.0.0.1:{port}", "--ttft", str(ttft)]
        args += ["--tokens-per-second", str(tokens_per_second), "--output-tokens", "max"]
        args += ["--default-max-tokens", "64", "--seed", str(seed)]
        proc = self.start("simulate", args, f"http://127.0.0.1:{port}")
        wait_http(proc.url + "/health", 20, proc.popen)
        return proc

    def sidecar(
        self,
        upstream: str,
        heartbeat: float,
        name: str = "sidecar",
        otlp: str | None = None,
        extra: tuple[str, ...] = (),
        cprofile: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> Proc:
        """`otlp`: an OTLP/HTTP endpoint to export spans to (tracing on), e.g. `otlp_sink()`'s;
        `extra`: more `serve` options; `cprofile`: run under cProfile, stats written there
        when it exits (SIGTERM); `env`: more environment variables for it."""
        port, admin = free_port(), free_port()
        template = self.tmp / "migrated.db"
        if not template.exists():  # migrate once (about a second), then copy the empty ledger
            url = f"sqlite:///{template}"
            # With this checkout's code: another version's migrations may be ahead of it.
            subprocess.run(
                [*_sidecar(), "db", "upgrade", "--db", url],
                check=True,
                capture_output=True,
                cwd=self.tmp,  # not the checkout, whose `sidecar/` would come first
                env=child_env(self.code),
            )
        shutil.copyfile(template, self.tmp / f"{name}.db")
        db = f"sqlite:///{self.tmp / (name + '.db')}"
        spool = self.tmp / f"{name}-spool"
        spool.mkdir(exist_ok=True)
        run = _sidecar() if cprofile is None else [sys.executable, "-m", "cProfile", "-o"]
        if cprofile is not None:
            run += [str(cprofile), "-m", "sidecar"]
        args = [*run, "serve", "--listen", f"127.0.0.1:{port}"]
        args += ["--admin-listen", f"127.0.0.1:{admin}", "--upstream", upstream, "--db", db]
        args += ["--spool-dir", str(spool), "--heartbeat-interval", str(heartbeat)]
        args += ["--heartbeat-timeout", str(heartbeat), *extra]
        env = {**({"OTEL_EXPORTER_OTLP_ENDPOINT": otlp} if otlp else {}), **(env or {})}
        proc = self.start(name, args, f"127.0.0.1:{port}", env)
        proc.admin = f"http://127.0.0.1:{admin}"
        wait_http(proc.admin + "/healthz", 30, proc.popen)
        return proc

    def minimal(self, upstream: str, heartbeat: float) -> Proc:
        port = free_port()
        args = [sys.executable, "-m", "bench.relay.minimal_relay", "--listen"]
        args += [f"127.0.0.1:{port}", "--upstream", upstream, "--heartbeat", str(heartbeat)]
        proc = self.start("minimal", args, f"127.0.0.1:{port}")
        wait_http(f"http://127.0.0.1:{port}/", 20, proc.popen)
        return proc

    def otlp_sink(self) -> Proc:
        port = free_port()
        args = [sys.executable, "-m", "bench.relay.otlp_sink", "--listen", f"127.0.0.1:{port}"]
        proc = self.start("otlp-sink", args, f"http://127.0.0.1:{port}")
        wait_http(proc.url + "/", 20, proc.popen)
        return proc

    def tracer(self) -> tuple[Proc, Path]:
        port, log = free_port(), self.tmp / "tracer-closes.txt"
        args = [sys.executable, "-m", "bench.relay.tracer", "--listen", f"127.0.0.1:{port}"]
        proc = self.start("tracer", [*args, "--log", str(log)], f"http://127.0.0.1:{port}")
        wait_http(proc.url + "/", 20, proc.popen)
        return proc, log

    def nginx(self, upstream_port: int) -> Proc:
        port, root = free_port(), self.tmp / "nginx"
        root.mkdir(exist_ok=True)
        conf = root / "nginx.conf"
        conf.write_text(NGINX_CONF.format(root=root, port=port, upstream=upstream_port))
        args = [NGINX, "-p", str(root), "-e", str(root / "error.log"), "-c", str(conf)]
        proc = self.start("nginx", args, f"http://127.0.0.1:{port}")
        wait_http(proc.url + "/health", 20, proc.popen)
        return proc


def snapshot(dest: Path, commit: str | None) -> None:
    """`sidecar/` (+ migrations where a wheel has them) from the working tree or a commit."""
    if commit is None:
        shutil.copytree(REPO / "sidecar", dest / "sidecar", ignore=_PYCACHE)
        shutil.copytree(REPO / "migrations", dest / "sidecar" / "_migrations", ignore=_PYCACHE)
        return
    dest.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit, "sidecar", "migrations"],
        cwd=REPO,
        capture_output=True,
        check=True,
    )
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="data")
    (dest / "migrations").rename(dest / "sidecar" / "_migrations")


def _sidecar() -> list[str]:
    return [sys.executable, "-m", "sidecar"]


def nginx_available() -> bool:
    return os.access(NGINX, os.X_OK)


NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 20000;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    upstream sim {{ server 127.0.0.1:{upstream}; keepalive 1024; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://sim;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 300s;
        }}
    }}
}}
"""

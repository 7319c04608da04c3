"""Runs the relay benchmark: starts the servers, runs the chosen scenarios, writes JSON + Markdown.

Everything it starts is stopped and its temp dir removed on the way out, including on Ctrl-C
and SIGTERM; a scenario that fails is recorded as an error and the others still run.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from bench.relay import capacity, connections, requests, streams
from bench.relay.env import SIM_BASE_TPS, Config, Env
from bench.relay.loadgen import Workers
from bench.relay.procs import REPO, Procs, raise_fd_limit
from bench.relay.report import markdown

SCENARIOS: dict[str, Callable[[Env], dict[str, Any]]] = {
    "ws": streams.ws_scenario,
    "http": streams.http_scenario,
    "requests": requests.requests_scenario,
    "ramp": streams.ramp_scenario,
    "capacity": capacity.capacity_scenario,
    "handshakes": connections.handshake_scenario,
    "idle": connections.idle_scenario,
    "close": connections.close_scenario,
}


def revision(commit: str | None) -> dict[str, Any]:
    """The commit measured, and whether the working tree's sidecar/ differed from it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    dirty = commit is None and bool(git("status", "--short", "sidecar", "migrations"))
    return {"commit": git("rev-parse", commit or "HEAD"), "sidecar_dirty": dirty}


def machine() -> dict[str, Any]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": os.getloadavg(),
    }


def _sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(config: Config) -> dict[str, Any]:
    """Run the suite; returns the results (also written to `config.out_dir`)."""
    fd_limit = raise_fd_limit()
    previous = signal.signal(signal.SIGTERM, _sigterm)
    procs = Procs(config.commit)
    workers: Workers | None = None
    t0 = time.monotonic()
    results: dict[str, Any] = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(config).items()},
        "machine": {**machine(), "fd_limit": fd_limit},
        "revision": revision(config.commit),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "scenarios": {},
        "seconds_by_scenario": {},
        "errors": {},
    }
    try:
        workers = Workers(config.workers)
        sim = procs.simulator(config.ttft, SIM_BASE_TPS, config.seed)
        env = Env(config, procs, workers, sim)
        env.servers["sidecar"] = procs.sidecar(sim.url, 20.0)
        env.servers["minimal"] = procs.minimal(sim.url, 20.0)
        if config.nginx and {"http", "requests"} & set(config.scenarios):
            env.servers["nginx"] = procs.nginx(int(sim.url.rsplit(":", 1)[1]))
        results["setup_seconds"] = time.monotonic() - t0
        for name in config.scenarios:
            started = time.monotonic()
            try:
                results["scenarios"][name] = SCENARIOS[name](env)
                results["seconds_by_scenario"][name] = time.monotonic() - started
            except Exception as exc:
                env.progress_done()
                results["errors"][name] = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
                for proc in procs.procs:
                    if proc.popen.poll() is not None:
                        results["errors"][name] += f"\n{proc.name} exited:\n{proc.tail()}"
    finally:
        if workers is not None:
            workers.close()
        procs.close(keep_logs=config.out_dir / f"logs-{config.name}")
        signal.signal(signal.SIGTERM, previous)
    results["seconds"] = time.monotonic() - t0
    write(results, config)
    return results


def write(results: dict[str, Any], config: Config) -> Path:
    out = config.out_dir
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    text = json.dumps(results, indent=1)
    (out / f"relay-{config.name}-{stamp}.json").write_text(text)
    (out / f"relay-{config.name}.json").write_text(text)
    path = out / f"relay-{config.name}.md"
    path.write_text(markdown(results))
    return path

"""Connection scenarios: handshakes per second, memory per idle connection, close → upstream closed.

Idle memory is measured on a fresh server per count (freed memory from earlier load would be
reused and hide the cost), as the RSS growth from a warmed-up baseline divided by connections.

`python -m bench.relay.connections --baseline COMMIT [--commit COMMIT]` measures idle memory
only, for two sidecar versions and the minimal relay side by side in one run.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.relay.env import SIM_BASE_TPS, Config, Env
from bench.relay.loadgen import Workers
from bench.relay.procs import Proc, Procs, raise_fd_limit, rss_bytes
from bench.relay.stats import median, percentile, ratio

CONNS_PER_SOURCE_ADDR = 10_000  # well under the ephemeral port range per (src, dst) pair


def handshake_scenario(env: Env) -> dict[str, Any]:
    """Connect + `hello` + close, as fast as the workers can; rounds alternate the servers."""
    cfg = env.config
    servers = {name: env.servers[name] for name in ("sidecar", "minimal")}
    rounds = []
    for r in range(cfg.rounds):
        row = {}
        for name, proc in servers.items():
            env.progress(f"handshakes: round {r + 1}/{cfg.rounds}, {name}")
            jobs = [
                {
                    "job": "handshakes",
                    "url": f"ws://{proc.url}/v1/stream",
                    "duration": cfg.handshake_seconds,
                    "concurrency": cfg.handshake_concurrency,
                    "local_addr": f"127.0.0.{10 + i}",
                }
                for i in range(len(env.workers))
            ]
            cpu0 = proc.cpu()
            results = env.workers.run(jobs, timeout=cfg.handshake_seconds + 60)
            cpu = proc.cpu() - cpu0
            count = sum(x["handshakes"] for x in results)
            elapsed = max(x["elapsed"] for x in results)
            row[name] = {
                "handshakes": count,
                "errors": sum(x["errors"] for x in results),
                "per_second": count / elapsed if elapsed else 0.0,
                "cpu_us_per_handshake": cpu / count * 1e6 if count else None,
            }
            time.sleep(0.2)  # let the ledger settle between rounds
        rounds.append(row)
    env.progress_done()
    summary = {
        name: {key: median([r[name][key] for r in rounds]) for key in rounds[0][name]}
        for name in servers
    }
    for key in ("per_second", "cpu_us_per_handshake"):
        summary["sidecar"][f"ratio_{key}_vs_minimal"] = ratio(
            summary["sidecar"][key], summary["minimal"][key]
        )
    return {"summary": summary, "rounds": rounds}


def idle_scenario(env: Env) -> dict[str, Any]:
    """RSS per idle WebSocket with heartbeats on, for the sidecar and the minimal relay."""
    cfg = env.config
    out = []
    for count in cfg.idle_counts:
        row: dict[str, Any] = {"connections": count}
        for name in ("sidecar", "minimal"):
            env.progress(f"idle: {count} connections, {name} (heartbeat {cfg.idle_heartbeat:g} s)")
            if not cfg.idle_fresh:
                row[name] = _idle_once(env, env.servers[name], count)
                continue
            if name == "sidecar":
                proc = env.procs.sidecar(env.sim.url, cfg.idle_heartbeat, name="sidecar-idle")
            else:
                proc = env.procs.minimal(env.sim.url, cfg.idle_heartbeat)
            try:
                row[name] = _idle_once(env, proc, count)
            finally:
                env.procs.stop(proc)
        row["ratio_sidecar_vs_minimal"] = ratio(
            row["sidecar"]["kib_per_connection"], row["minimal"]["kib_per_connection"]
        )
        out.append(row)
    env.progress_done()
    heartbeat = cfg.idle_heartbeat if cfg.idle_fresh else 20.0
    return {"heartbeat_interval_s": heartbeat, "fresh_servers": cfg.idle_fresh, "counts": out}


def _idle_once(env: Env, proc: Proc, count: int) -> dict[str, Any]:
    cfg = env.config
    url = f"ws://{proc.url}/v1/stream"
    n = len(env.workers)
    addrs_each = max(1, math.ceil(count / n / CONNS_PER_SOURCE_ADDR))

    def jobs(total: int) -> list[dict[str, Any]]:
        return [
            {
                "job": "idle_open",
                "url": url,
                "count": total // n + (i < total % n),
                "local_addrs": [f"127.0.0.{2 + i * addrs_each + j}" for j in range(addrs_each)],
                "timeout": 120,
            }
            for i in range(n)
        ]

    close = [{"job": "idle_close"}] * n
    if cfg.idle_fresh:
        env.workers.run(jobs(200), timeout=150)  # warm-up: first-use allocations, imports
        env.workers.run(close, timeout=30)
    time.sleep(min(1.0, cfg.idle_hold / 3))
    rss0 = rss_bytes(proc.pid)
    t0 = time.monotonic()
    opened = sum(r["open"] for r in env.workers.run(jobs(count), timeout=150))
    open_seconds = time.monotonic() - t0
    cpu0 = proc.cpu()
    time.sleep(cfg.idle_hold)  # at least two heartbeat rounds
    cpu = proc.cpu() - cpu0
    rss1 = rss_bytes(proc.pid)
    alive = sum(r["alive_at_close"] for r in env.workers.run(close, timeout=60))
    return {
        "opened": opened,
        "alive_after_hold": alive,
        "open_seconds": open_seconds,
        "rss_before_mib": rss0 / 2**20,
        "rss_after_mib": rss1 / 2**20,
        "kib_per_connection": (rss1 - rss0) / 1024 / opened if opened else None,
        "idle_cpu_percent": cpu / cfg.idle_hold * 100,
    }


def close_scenario(env: Env) -> dict[str, Any]:
    """Client close → upstream connection closed, timed from outside with the tracing upstream."""
    cfg = env.config
    tracer, log = env.procs.tracer()
    relays = {
        "sidecar": env.procs.sidecar(tracer.url, 20.0, name="sidecar-close"),
        "minimal": env.procs.minimal(tracer.url, 20.0),
    }
    paths = [("sidecar", "ws"), ("sidecar", "http"), ("minimal", "ws")]
    out: dict[str, Any] = {}
    try:
        for k, (name, kind) in enumerate(paths):
            env.progress(f"close: {cfg.probes} {kind} probes through {name}")
            proc = relays[name]
            url = f"ws://{proc.url}/v1/stream" if kind == "ws" else f"http://{proc.url}"
            job = {
                "job": "probe",
                "kind": kind,
                "url": url if kind == "ws" else url + "/v1/chat/completions",
                "count": cfg.probes,
                "first": k * 1_000_000,
                "concurrency": 10,
                "after": 3,
            }
            closes = env.workers.run([job], timeout=cfg.probes + 60)[0]
            time.sleep(0.5)
            out[f"{name}_{kind}"] = _close_latencies(closes, log)
    finally:
        for proc in (*relays.values(), tracer):
            env.procs.stop(proc)
    env.progress_done()
    return out


def _close_latencies(result: dict[str, Any], log: Path) -> dict[str, Any]:
    lost = {}
    for line in log.read_text().splitlines():
        probe, _, t = line.partition(" ")
        lost[probe] = float(t)
    ms = [(lost[p] - t) * 1000 for p, t in result["closes"].items() if p in lost]
    return {
        "probes": len(result["closes"]),
        "client_errors": result["errors"],
        "upstream_not_closed": sum(1 for p in result["closes"] if p not in lost),
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else None,
    }


def compare_idle(
    baseline: str, commit: str | None, counts: tuple[int, ...]
) -> list[dict[str, Any]]:
    """Idle memory of the sidecar at `baseline` and at `commit` (default: the working tree)
    and of the minimal relay, each on a fresh server per count, in one run."""
    config = replace(Config.full(), idle_counts=counts, commit=commit)
    raise_fd_limit()
    procs = Procs(commit)
    before: Procs | None = None
    workers: Workers | None = None
    rows = []
    try:
        before = Procs(baseline)
        workers = Workers(config.workers)
        sim = procs.simulator(config.ttft, SIM_BASE_TPS, config.seed)
        env = Env(config, procs, workers, sim)
        owners = {"before": before, "after": procs, "minimal": procs}
        for count in counts:
            row: dict[str, Any] = {"connections": count}
            for name, owner in owners.items():
                env.progress(f"idle: {count} connections, {name}")
                if name == "minimal":
                    proc = owner.minimal(sim.url, config.idle_heartbeat)
                else:
                    proc = owner.sidecar(sim.url, config.idle_heartbeat, name=f"sidecar-{name}")
                try:
                    row[name] = _idle_once(env, proc, count)
                finally:
                    owner.stop(proc)
            rows.append(row)
        env.progress_done()
    finally:
        if workers is not None:
            workers.close()
        procs.close()
        if before is not None:
            before.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.relay.connections")
    parser.add_argument("--baseline", required=True, help="the sidecar commit to compare with")
    parser.add_argument("--commit", default=None, help="default: the working tree")
    parser.add_argument("--counts", default="1000,10000")
    args = parser.parse_args()
    counts = tuple(int(n) for n in args.counts.split(","))
    rows = compare_idle(args.baseline, args.commit, counts)
    print("| connections | sidecar before | sidecar after | minimal relay | alive (after) |")
    print("|---:|---:|---:|---:|---:|")
    for row in rows:
        kib = [
            f"{row[name]['kib_per_connection']:.1f} KiB" for name in ("before", "after", "minimal")
        ]
        alive = f"{row['after']['alive_after_hold']}/{row['after']['opened']}"
        print(f"| {row['connections']} | {' | '.join(kib)} | {alive} |")
    for row in rows:
        for name in ("before", "after", "minimal"):
            r = row[name]
            print(
                f"{row['connections']} {name}: RSS {r['rss_before_mib']:.0f} → "
                f"{r['rss_after_mib']:.0f} MiB, idle CPU {r['idle_cpu_percent']:.1f} %"
            )


if __name__ == "__main__":
    main()

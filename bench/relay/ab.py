"""Two sidecar versions side by side: `python -m bench.relay.ab COMMIT_A COMMIT_B`.

Both run against one simulator and are measured in rotating order with the direct connection
and the minimal relay (WebSocket), as `python -m bench` does for one version. `wt` stands for the
working tree. `--tracing-b` turns tracing on for B only (OTLP/HTTP to a receiver on loopback
started here), `--bsp-b 64,500` also sets B's export batch size and delay (ms). This is how the
before/after figures of a change in docs/benchmarks.md were measured.

`--answer-tokens N` fixes the answer length (CPU per token = per-request work ÷ N + per-token
work; two lengths separate the two). `--cpu-quota 0.1` runs each relay at a tenth of a core
(bench/relay/quota.py, needs root) so that it is saturated: tokens/s ÷ quota is then its
capacity per core.

    python -m bench.relay.ab 4148767 f96901c --streams 200 --rounds 3
    python -m bench.relay.ab HEAD HEAD --tracing-b
    python -m bench.relay.ab HEAD wt --answer-tokens 60 --cpu-quota 0.1
    python -m bench.relay.ab b13ff7f HEAD --also 5145af3 --also c6e1c66   # C, D: more versions

`--also REF` (repeatable) adds versions C, D, ... to the same rotation: where between two
commits a cost came from, measured in one run instead of several runs on a noisy machine.

`--env-a` / `--env-b KEY=VALUE` (repeatable) set serve options for one side only, through their
`SIDECAR_*` variables, e.g. the resume store beside grace mode without it:

    python -m bench.relay.ab wt wt --env-a SIDECAR_ON_DISCONNECT=grace \
        --env-b SIDECAR_ON_DISCONNECT=grace --env-b SIDECAR_RESUME_STORE=redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.relay.env import Config, Env
from bench.relay.loadgen import Workers
from bench.relay.procs import Procs, nginx_available
from bench.relay.quota import CpuQuota, QuotaUnavailable, saturation
from bench.relay.streams import Target, max_tokens_for, measure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.relay.ab", description=__doc__)
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kind", choices=("ws", "sse"), default="ws")
    parser.add_argument(
        "--answer-tokens", type=int, default=None, help="tokens per answer (default: about 1 s)"
    )
    parser.add_argument(
        "--rate", type=float, default=None, help="tokens/s per stream (default: as python -m bench)"
    )
    parser.add_argument(
        "--cpu-quota", type=float, default=None, help="fraction of a core for each relay (root)"
    )
    parser.add_argument(
        "--ttft", type=float, default=None, help="the model's first token, s (default 0.02)"
    )
    parser.add_argument("--stagger", type=float, default=None, help="users start within, s")
    parser.add_argument("--tracing-b", action="store_true")
    parser.add_argument("--bsp-b", default=None, help="BATCH,DELAY_MS for B's span exports")
    parser.add_argument("--env-a", action="append", default=[], help="KEY=VALUE for A only")
    parser.add_argument("--env-b", action="append", default=[], help="KEY=VALUE for B only")
    parser.add_argument("--also", action="append", default=[], help="more versions: C, D, ...")
    args = parser.parse_args(argv)
    cfg = Config.full()
    procs_a, procs_b = Procs(_commit(args.a)), Procs(_commit(args.b))
    more = {chr(ord("C") + i): (ref, Procs(_commit(ref))) for i, ref in enumerate(args.also)}
    workers = Workers(cfg.workers)
    quotas: list[CpuQuota] = []
    try:
        sim = procs_a.simulator(cfg.ttft, 50.0, cfg.seed)
        env = Env(cfg, procs_a, workers, sim)
        rate = args.rate or cfg.rate_per_stream(args.streams)
        env.set_rate(rate, ttft=args.ttft)
        with _environment(_pairs(args.env_a)):
            side_a = procs_a.sidecar(sim.url, 20.0, "A")
        with _b_environment(procs_b, args):
            side_b = procs_b.sidecar(sim.url, 20.0, "B")
        sides = [("A", side_a), ("B", side_b)]
        sides += [(name, procs.sidecar(sim.url, 20.0, name)) for name, (_, procs) in more.items()]
        targets = [Target("direct", "sse", sim.url + "/v1/chat/completions", None)]
        for name, proc in sides:
            url = f"ws://{proc.url}/v1/stream" if args.kind == "ws" else f"http://{proc.url}"
            suffix = "" if args.kind == "ws" else "/v1/chat/completions"
            targets.append(Target(name, args.kind, url + suffix, proc))
        if args.kind == "ws":
            minimal = procs_a.minimal(sim.url, 20.0)
            targets.append(Target("minimal", "ws", f"ws://{minimal.url}/v1/stream", minimal))
        elif nginx_available():
            nginx = procs_a.nginx(int(sim.url.rsplit(":", 1)[1]))
            targets.append(Target("nginx", "sse", nginx.url + "/v1/chat/completions", nginx))
        max_tokens = args.answer_tokens or max_tokens_for(rate, cfg.answer_seconds)
        if args.cpu_quota:
            for target in targets[1:]:
                assert target.proc is not None
                quotas.append(CpuQuota(target.name, args.cpu_quota))
                quotas[-1].add(target.proc.pid)
        for target in targets[1:]:
            measure(env, target, args.streams, max_tokens, 2.0)  # warm-up
        results: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
        for r in range(args.rounds):
            k = r % len(targets)
            for target in targets[k:] + targets[:k]:
                result = measure(env, target, args.streams, max_tokens, args.seconds, args.stagger)
                results[target.name].append(result)
        refs = {"A": args.a, "B": args.b} | {name: ref for name, (ref, _) in more.items()}
        _print(results, refs, quotas[0].fraction if quotas else None)
    except QuotaUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        workers.close()
        for _, procs in more.values():
            procs.close()
        procs_b.close()
        procs_a.close()
        for quota in quotas:
            quota.close()
    return 0


def _commit(ref: str) -> str | None:
    return None if ref == "wt" else ref


def _pairs(items: list[str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in items)


@contextmanager
def _b_environment(procs: Procs, args: argparse.Namespace) -> Iterator[None]:
    """Tracing settings and `--env-b` seen by B's process only."""
    extra = _pairs(args.env_b)
    if args.tracing_b:
        extra["OTEL_EXPORTER_OTLP_ENDPOINT"] = procs.otlp_sink().url
        if args.bsp_b:
            batch, delay = args.bsp_b.split(",")
            extra |= {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": batch, "OTEL_BSP_SCHEDULE_DELAY": delay}
    with _environment(extra):
        yield


@contextmanager
def _environment(extra: dict[str, str]) -> Iterator[None]:
    """Variables seen by the processes started meanwhile (children inherit the environment)."""
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _print(
    results: dict[str, list[dict[str, Any]]], refs: dict[str, str], quota: float | None
) -> None:
    direct = results["direct"]
    for name, runs in results.items():
        if name == "direct":
            continue

        def added(key: str, runs: list[dict[str, Any]] = runs) -> str:
            pairs = zip(runs, direct, strict=True)
            diffs = [x[key] - d[key] for x, d in pairs if x[key] is not None and d[key] is not None]
            return f"{statistics.median(diffs):.2f}" if diffs else "–"  # 1-token answers: no ITL

        cpu = statistics.median(x["cpu_us_per_token"] for x in runs)
        per_request = statistics.median(x["cpu_us_per_request"] for x in runs)
        requests = statistics.median(x["request_rate"] for x in runs)
        pairs = zip(runs, direct, strict=True)
        of_direct = statistics.median(x["request_rate"] / d["request_rate"] for x, d in pairs)
        loop = statistics.median(x["loop_cpu_us_per_token"] for x in runs)
        rate = statistics.median(x["token_rate"] for x in runs)
        print(
            f"{name} {refs.get(name, '')}: +TTFT p50 {added('ttft_p50_ms')} "
            f"p99 {added('ttft_p99_ms')} +total p50 {added('total_p50_ms')} ms; "
            f"+ITL p99 {added('itl_p99_ms')} ms; "
            f"CPU {cpu:.1f} µs/token (event-loop thread {loop:.1f}), {per_request:.0f} µs/request; "
            f"{rate:.0f} tok/s, {requests:.1f} requests/s ({of_direct:.3f} of direct); "
            f"errors {sum(x['errors'] for x in runs)}"
        )
        if name != "A" and "A" in results:
            # Paired by round: a ratio per round cancels the machine's slow drifts, which move
            # every version's figure between rounds by more than the differences sought.
            ratios = sorted(
                x["cpu_us_per_request"] / a["cpu_us_per_request"]
                for x, a in zip(runs, results["A"], strict=True)
            )
            print(
                f"  CPU per request ÷ A's, round by round: median "
                f"×{statistics.median(ratios):.3f} (×{ratios[0]:.3f} to ×{ratios[-1]:.3f})"
            )
        if quota:
            saturated = saturation(cpu, rate, quota)
            print(
                f"  at {quota:g} of a core: {saturated['tokens_per_s_per_core']:,.0f} tokens/s "
                f"per core (quota {saturated['quota_used']:.0%} used; direct delivered "
                f"{statistics.median(x['token_rate'] for x in direct):.0f} tok/s)"
            )


if __name__ == "__main__":
    raise SystemExit(main())

"""Where a sidecar's CPU per request goes: `python -m bench.relay.profile [--users 16]`.

Starts the simulator and one sidecar (the working tree, or `--commit`), drives it with the
`requests` scenario's closed loop (short answers by default) and samples it with py-spy for
`--seconds`. Prints the event loop's thread by function: self time (where the CPU is) and
inclusive time of the sidecar's own functions (which step of a request costs it), as shares of
the samples. The collapsed stacks are kept (`--out`) for a flame graph (e.g. speedscope).

    python -m bench.relay.profile --users 16 --kind sse --shape short
    python -m bench.relay.profile --users 16 --kind ws --shape long --tracing
    python -m bench.relay.profile --users 16 --syscalls   # strace -c: system calls per request
"""

from __future__ import annotations

import argparse
import collections
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.relay.env import Config, Env
from bench.relay.loadgen import Workers
from bench.relay.procs import Procs
from bench.relay.streams import Target, measure

# Answer tokens, tokens/s. "slow": the A/B's WebSocket shape (bench.relay.ab at 200 streams).
SHAPES = {"short": (16, 1000.0), "long": (200, 200.0), "slow": (15, 13.0)}
OWN = ("sidecar/", "uvicorn/", "websockets/", "prometheus_client/", "opentelemetry/")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.relay.profile", description=__doc__)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--kind", choices=("sse", "ws"), default="sse")
    parser.add_argument("--shape", choices=tuple(SHAPES), default="short")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--tracing", action="store_true", help="export spans (OTLP/HTTP)")
    parser.add_argument("--commit", default=None)
    parser.add_argument(
        "--sim-commit", default=None, help="the simulator's version (default: --commit's)"
    )
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--native", action="store_true", help="C frames too (uvloop, CPython)")
    parser.add_argument(
        "--perf", action="store_true", help="perf record (C and kernel too): --out is perf.data"
    )
    parser.add_argument(
        "--gil", action="store_true", help="only samples holding the GIL (time on a CPU)"
    )
    parser.add_argument(
        "--syscalls", action="store_true", help="count system calls per request (strace -c)"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/profile.txt"))
    parser.add_argument(
        "--cprofile",
        action="store_true",
        help="deterministic: run the sidecar under cProfile; --out gets its stats (pstats)",
    )
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    cfg = Config.full()
    procs, workers = Procs(args.commit), Workers(cfg.workers)
    sim_procs = procs if args.sim_commit is None else Procs(args.sim_commit)
    try:
        # Two versions compared must share one simulator: its read pattern sets the writes.
        sim = sim_procs.simulator(cfg.ttft, 50.0, cfg.seed)
        env = Env(cfg, procs, workers, sim)
        tokens, rate = SHAPES[args.shape]
        env.set_rate(rate, ttft=cfg.request_ttft)
        otlp = procs.otlp_sink().url if args.tracing else None
        cprofile = args.out.resolve() if args.cprofile else None
        sidecar = procs.sidecar(sim.url, 20.0, otlp=otlp, cprofile=cprofile)
        url = f"ws://{sidecar.url}/v1/stream" if args.kind == "ws" else f"http://{sidecar.url}"
        target = Target(
            "sidecar",
            args.kind,
            url + ("" if args.kind == "ws" else "/v1/chat/completions"),
            sidecar,
        )
        measure(env, target, 4, 12, 2.0)  # warm-up
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if args.cprofile:
            return _cprofile(env, target, args, tokens, cfg.request_stagger, sidecar)
        if args.perf:
            command = ["perf", "record", "-F", "1999", "-o", str(args.out), "-p", str(sidecar.pid)]
        elif args.syscalls:
            command = ["strace", "-c", "-f", "-o", str(args.out), "-p", str(sidecar.pid)]
        else:
            command = [
                spy,
                "record",
                "--pid",
                str(sidecar.pid),
                "--duration",
                str(int(args.seconds)),
            ]
            command += ["--rate", str(args.rate), "--format", "raw", "--output", str(args.out)]
            command += ["--threads", *(["--native"] if args.native else ["--nonblocking"])]
            command += ["--gil"] if args.gil else []
        sampler = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        time.sleep(0.5)  # attached
        result = measure(env, target, args.users, tokens, args.seconds, cfg.request_stagger)
        if args.syscalls or args.perf:
            sampler.send_signal(signal.SIGINT)  # strace/perf detach and write what they saw
        _, errors = sampler.communicate(timeout=args.seconds + 30)
        if not args.out.exists():
            print(f"{command[0]} failed: {errors}", file=sys.stderr)
            return 1
        print(
            f"{args.kind} {args.shape} c={args.users}: {result['request_rate']:.1f} requests/s, "
            f"{result['cpu_us_per_request']:.0f} µs CPU per request "
            f"(event loop {result['loop_cpu_us_per_request']:.0f}), TTFT p50 "
            f"{result['ttft_p50_ms']:.2f} ms"
        )
        if args.syscalls:
            syscalls_per_request(args.out, result["requests"])
        elif args.perf:
            report = ["perf", "report", "-i", str(args.out), "--stdio", "--sort", "dso,sym"]
            shown = subprocess.run(report, capture_output=True, text=True, check=False).stdout
            lines = [line for line in shown.splitlines() if line and not line.startswith("#")]
            print("\n".join(lines[: args.top]))
        else:
            summarize(args.out, args.top)
    finally:
        workers.close()
        procs.close()
        if sim_procs is not procs:
            sim_procs.close()
    return 0


def _cprofile(env: Env, target: Target, args: Any, tokens: int, stagger: float, proc: Any) -> int:
    """Calls and own time per request of each function (cProfile's overhead inflates small
    functions: compare two versions under it, not with the other modes' figures)."""
    import pstats

    result = measure(env, target, args.users, tokens, args.seconds, stagger)
    proc.popen.send_signal(signal.SIGTERM)  # a clean exit writes the stats
    proc.popen.wait(60)
    requests = result["request_rate"] * args.seconds
    print(f"{args.kind} {args.shape} c={args.users}: {requests:.0f} requests measured")
    stats = pstats.Stats(str(args.out))
    rows = sorted(stats.stats.items(), key=lambda item: -item[1][2])  # type: ignore[attr-defined]
    print("   calls/req   own µs/req  cumulative µs/req  function")
    for (path, line, name), (_cc, calls, own, cumulative, _callers) in rows[: args.top]:
        where = "/".join(Path(path).parts[-2:])
        print(
            f"{calls / requests:12.2f} {own / requests * 1e6:12.1f} "
            f"{cumulative / requests * 1e6:18.1f}  {name} ({where}:{line})"
        )
    return 0


def syscalls_per_request(path: Path, requests: int) -> None:
    """strace -c's table (all threads), as calls per request answered while it was attached."""
    print(f"\nsystem calls per request ({requests} requests):")
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[0][0].isdigit() and fields[-1].isidentifier():
            calls = int(fields[3])
            print(f"  {calls / max(requests, 1):8.2f}  {fields[-1]}")
        elif fields and fields[-1] == "total":
            print(f"  {int(fields[2]) / max(requests, 1):8.2f}  total")


def summarize(path: Path, top: int) -> None:
    """Self and inclusive shares of the main thread's samples, from py-spy's collapsed stacks."""
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = stack.split(";")
        if not frames or ("MainThread" not in frames[0] and "(python" not in frames[0]):
            continue
        count = int(count_text)
        total += count
        self_time[_short(frames[-1])] += count
        for name in {_short(f) for f in frames[1:]}:
            inclusive[name] += count
    if not total:
        print("no samples of the main thread")
        return
    print(f"\nmain thread, {total} samples; self time:")
    for name, count in self_time.most_common(top):
        print(f"  {count / total:6.1%}  {name}")
    print("\ninclusive time, sidecar functions:")
    own = [(n, c) for n, c in inclusive.most_common() if "sidecar/" in n]
    for name, count in own[:top]:
        print(f"  {count / total:6.1%}  {name}")


def _short(frame: str) -> str:
    """`func (path/to/module.py:123)` → `func (module path from the package)` without the line."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in OWN:
        if marker in where:
            where = marker + where.split(marker, 1)[1]
            break
    return f"{name} ({where})"


if __name__ == "__main__":
    raise SystemExit(main())

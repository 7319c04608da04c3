"""`python -m bench [--quick]`: the default benchmark suite (the relay benchmark, issue 8).

The full run (about 15 minutes) produces the numbers in docs/benchmarks.md; `--quick` (< 30 s)
is the smoke run. The drift detector's benchmark is separate: `python -m bench.drift`.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from bench.relay.env import Config
from bench.relay.procs import nginx_available
from bench.relay.quota import available as quota_available
from bench.relay.suite import SCENARIOS, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke run, under 30 s")
    parser.add_argument(
        "--only", default=None, help=f"comma-separated scenarios ({','.join(SCENARIOS)})"
    )
    parser.add_argument("--rounds", type=int, default=None, help="rounds per level")
    parser.add_argument("--levels", default=None, help="comma-separated stream counts, e.g. 1,64")
    parser.add_argument("--duration", type=float, default=None, help="seconds per variant")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument(
        "--commit", default=None, help="measure this commit's sidecar/ (default: working tree)"
    )
    args = parser.parse_args(argv)
    config = Config.quick() if args.quick else Config.full()
    config = replace(config, out_dir=args.out, nginx=nginx_available(), commit=args.commit)
    if args.only:
        names = tuple(n.strip() for n in args.only.split(","))
        unknown = set(names) - set(SCENARIOS)
        if unknown:
            parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
        config = replace(config, scenarios=names)
    if args.rounds:
        config = replace(config, rounds=args.rounds)
    if args.levels:
        config = replace(config, levels=tuple(int(n) for n in args.levels.split(",")))
    if args.duration:
        config = replace(config, duration=args.duration)
    if "capacity" in config.scenarios and not quota_available():
        print(
            "no writable cgroup cpu controller (needs root): the capacity scenario is left out",
            file=sys.stderr,
        )
        config = replace(config, scenarios=tuple(n for n in config.scenarios if n != "capacity"))
    if not config.nginx:
        print("nginx not found at /usr/sbin/nginx: the HTTP path runs without it", file=sys.stderr)
    try:
        results = run(config)
    except KeyboardInterrupt:
        print("\ninterrupted; everything started was stopped", file=sys.stderr)
        return 130
    path = config.out_dir / f"relay-{config.name}.md"
    print(path.read_text())
    print(f"results: {path} and {path.with_suffix('.json')}", file=sys.stderr)
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())

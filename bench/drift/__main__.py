"""`python -m bench.drift [--quick]`: incident shapes x sampling (bench/drift/shapes_bench.py);
`python -m bench.drift --replay [--quick]`: the Azure-replay benchmark (bench/drift/replay.py).
Both are described in docs/benchmarks-drift.md."""

from __future__ import annotations

import sys

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--replay" in argv:
        from bench.drift.replay import main as replay_main

        replay_main([a for a in argv if a != "--replay"])
    else:
        from bench.drift.shapes_bench import main

        main(argv)

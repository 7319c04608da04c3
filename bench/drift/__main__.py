"""`python -m bench.drift [--quick]`: incident shapes x sampling (bench/drift/shapes_bench.py);
`python -m bench.drift --replay [--quick]`: the Azure-replay benchmark (bench/drift/replay.py);
`python -m bench.drift --labelled DIR`: labelled real series in NAB's layout (labelled.py).
All are described in docs/benchmarks-drift.md."""

from __future__ import annotations

import sys

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--labelled" in argv:
        from bench.drift.labelled import main as labelled_main

        labelled_main([a for a in argv if a != "--labelled"])
    elif "--replay" in argv:
        from bench.drift.replay import main as replay_main

        replay_main([a for a in argv if a != "--replay"])
    else:
        from bench.drift.shapes_bench import main

        main(argv)

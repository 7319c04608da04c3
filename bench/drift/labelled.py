"""`python -m bench.drift --labelled DIR`: ours and both simple rules on labelled real series.

DIR holds the Numenta Anomaly Benchmark's layout (https://github.com/numenta/NAB, AGPL-3.0: read
from a local copy, never committed here): `labels/combined_windows.json` and `data/<category>/
<name>.csv` (`timestamp,value[,label]`, one value per 5 min). Every labelled file whose name
matches `--match` (default "latency") and exists under DIR/data is replayed: ours through
`drift backtest`'s replay of an aggregated series (sidecar/drift/backtest.py), the two rules of
the shapes benchmark fed one point per bucket (bench/drift/simple.py).

Scoring, event by event, no point-adjust: a window is caught when some page falls inside it; a
page outside every window is a false alarm. As in NAB, the first 15 % of each file is a
probationary period: pages there are not counted (everyone is still learning), and the fixed
rule's threshold is tuned there (just above the highest level two consecutive points reached).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.drift.simple import FixedRule, RatioRule, highest_pair
from sidecar.drift.backtest import Row, replay
from sidecar.drift.config import DetectorConfig

PROBATION = 0.15
CONTENDERS = ("ours", "ratio 1h/day > 1.2 twice", "fixed p95 twice")


@dataclass(frozen=True)
class Series:
    name: str
    points: list[tuple[float, float]]  # (t, seconds)
    windows: list[tuple[float, float]]


def _time(text: str) -> float:
    return datetime.fromisoformat(text.strip()).replace(tzinfo=UTC).timestamp()


def load(root: Path, match: str, scale: float) -> list[Series]:
    labels = root / "labels" / "combined_windows.json"
    try:
        windows = json.loads(labels.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"cannot read {labels}: {exc} (is {root} a NAB checkout?)") from None
    out = []
    for key, spans in sorted(windows.items()):
        path = root / "data" / key
        if match not in key or not path.exists():
            continue
        points = []
        for line in path.read_text().splitlines()[1:]:
            fields = line.split(",")
            if len(fields) >= 2 and fields[1]:
                points.append((_time(fields[0]), float(fields[1]) * scale))
        points.sort()
        out.append(Series(key, points, [(_time(a), _time(b)) for a, b in spans]))
    if not out:
        raise SystemExit(f"no labelled file matching {match!r} under {root / 'data'}")
    return out


def pages(series: Series, floor: float) -> dict[str, list[float]]:
    points = series.points
    cut = int(PROBATION * len(points))
    limit = 1.01 * highest_pair([[v] for _, v in points[:cut]])
    rules = (RatioRule(CONTENDERS[1]), FixedRule(CONTENDERS[2], limit))
    for t, v in points:
        for rule in rules:
            rule.feed(t, [v])
    result = replay([Row(t, v) for t, v in points], DetectorConfig(floor=floor))
    out = {"ours": sorted(a.fired_at for a in result.alerts)}
    out.update({rule.name: rule.pages for rule in rules})
    return out


def score(series: Series, fired: list[float]) -> tuple[int, int]:
    """(windows caught, false alarms) after the probationary period."""
    start = series.points[int(PROBATION * len(series.points))][0]
    counted = [t for t in fired if t >= start]
    caught = sum(1 for a, b in series.windows if any(a <= t <= b for t in counted))
    false = sum(1 for t in counted if not any(a <= t <= b for a, b in series.windows))
    return caught, false


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.drift --labelled", description=__doc__)
    parser.add_argument("root", type=Path, help="a NAB checkout (labels/, data/)")
    parser.add_argument("--match", default="latency", help="files whose name contains this")
    parser.add_argument("--scale", type=float, default=0.001, help="to seconds (default: ms)")
    parser.add_argument("--floor", type=float, default=0.001, help="ours' floor, seconds")
    args = parser.parse_args(argv)
    rows = ["| series | points | days | windows | contender | caught | false alarms |",
            "|---|---|---|---|---|---|---|"]  # fmt: skip
    totals = dict.fromkeys(CONTENDERS, (0, 0))
    n_windows = 0
    days = 0.0
    for series in load(args.root, args.match, args.scale):
        span = (series.points[-1][0] - series.points[0][0]) / 86400
        days += span * (1 - PROBATION)
        n_windows += len(series.windows)
        for name, fired in pages(series, args.floor).items():
            caught, false = score(series, fired)
            totals[name] = (totals[name][0] + caught, totals[name][1] + false)
            rows.append(f"| {series.name} | {len(series.points)} | {span:.1f} | "
                        f"{len(series.windows)} | {name} | {caught} | {false} |")  # fmt: skip
    rows.append("")
    rows.append(f"Total over {days:.1f} scored days, {n_windows} windows:")
    rows += [f"- {name}: {c}/{n_windows} caught, {f} false alarms" for name, (c, f) in
             totals.items()]  # fmt: skip
    print("\n".join(rows))


if __name__ == "__main__":
    main(sys.argv[1:])

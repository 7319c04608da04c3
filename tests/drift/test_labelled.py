"""The labelled-series benchmark's reading and event scoring (bench/drift/labelled.py)."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench.drift.labelled import Series, load, main, pages, score

T0 = datetime(2014, 3, 1, tzinfo=UTC)


def _stamp(i: int) -> str:
    return (T0 + timedelta(minutes=5 * i)).strftime("%Y-%m-%d %H:%M:%S")


def _nab(root: Path, high: range) -> None:
    """Four days of 5-min points (ms) with one incident, in NAB's layout; plus a CPU series."""
    rng = random.Random(1)
    lines = ["timestamp,value"] + [
        f"{_stamp(i)},{45 * math.exp(rng.gauss(0, 0.03)) * (1.6 if i in high else 1.0):.3f}"
        for i in range(4 * 288)
    ]
    (root / "data" / "realKnownCause").mkdir(parents=True)
    (root / "data" / "realKnownCause" / "x_latency.csv").write_text("\n".join(lines) + "\n")
    (root / "labels").mkdir()
    window = [f"{_stamp(high.start - 6)}.000000", f"{_stamp(high.stop + 6)}.000000"]
    labels = {"realKnownCause/x_latency.csv": [window], "realKnownCause/cpu.csv": [window]}
    (root / "labels" / "combined_windows.json").write_text(json.dumps(labels))


def test_reads_the_latency_files_in_seconds_and_their_windows(tmp_path: Path) -> None:
    _nab(tmp_path, range(900, 930))
    (series,) = load(tmp_path, "latency", 0.001)  # the CPU file is absent: skipped
    assert series.name == "realKnownCause/x_latency.csv" and len(series.points) == 4 * 288
    assert 0.04 < series.points[0][1] < 0.05
    assert len(series.windows) == 1


def test_an_incident_is_caught_by_a_page_inside_its_window_and_nothing_else_pages(
    tmp_path: Path,
) -> None:
    _nab(tmp_path, range(900, 930))
    (series,) = load(tmp_path, "latency", 0.001)
    fired = pages(series, floor=0.001)
    assert score(series, fired["ours"]) == (1, 0)
    assert score(series, fired["ratio 1h/day > 1.2 twice"])[0] == 1


def test_scoring_is_event_by_event_without_point_adjust() -> None:
    series = Series("s", [(float(t), 1.0) for t in range(100)], [(50.0, 60.0), (80.0, 90.0)])
    # probation: the first 15 points; one page in a window, two outside (one in probation)
    assert score(series, [5.0, 30.0, 55.0, 56.0]) == (1, 1)


def test_a_directory_without_labels_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"is .* a NAB checkout"):
        main([str(tmp_path)])

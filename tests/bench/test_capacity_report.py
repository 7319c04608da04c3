"""The capacity scenario's verdicts and table, from hand-made results (no processes)."""

from __future__ import annotations

from typing import Any

import pytest

from bench.relay.quota import CpuQuota, QuotaUnavailable, saturation
from bench.relay.report import markdown, targets


def _row(rate: float, cpu: float | None, quota: float = 0.1) -> dict[str, Any]:
    saturated = saturation(cpu, rate, quota) if cpu is not None else {}
    return {
        "token_rate": rate,
        "cpu_us_per_token": cpu,
        "tokens_per_s_per_core": saturated.get("tokens_per_s_per_core"),
        "quota_used": saturated.get("quota_used"),
        "errors": 0,
    }


def _results(traced_cpu: float, traced_rate: float) -> dict[str, Any]:
    shape = {
        "streams": 16,
        "rate_per_stream": 400.0,
        "answer_tokens": 400,
        "summary": {
            "direct": _row(6100, None),
            "sidecar": _row(5900, 16.6),
            "sidecar+tracing": _row(traced_rate, traced_cpu),
            "minimal": _row(5300, 18.0),
        },
        "rounds": [],
    }
    return {
        "machine": {
            "nproc": 2,
            "cpu_model": "x",
            "kernel": "k",
            "python": "3.11",
            "loadavg_at_start": [0.1, 0.1, 0.1],
        },
        "config": {"name": "full", "rounds": 3, "duration": 6.0, "cpu_levels": [200]},
        "revision": {"commit": "0" * 40, "sidecar_dirty": False},
        "scenarios": {"capacity": {"quota": 0.1, "shapes": [shape]}},
    }


def test_saturated_cost_meets_or_misses_the_targets() -> None:
    met = {name: verdict for name, _, _, verdict in targets(_results(20.0, 4800))}
    assert met["sidecar CPU per token, saturated, 16 × 400 tok/s, tracing on"] == "met"
    assert met["… tokens/s per core"] == "met"  # 4,800 at a tenth of a core: 48,000 per core
    missed = {name: verdict for name, _, _, verdict in targets(_results(30.0, 3300))}
    assert missed["sidecar CPU per token, saturated, 16 × 400 tok/s, tracing on"] == "**missed**"
    assert missed["… tokens/s per core"] == "**missed**"
    assert missed["… vs minimal relay"] == "met"  # 30 / 18 = 1.67


def test_capacity_table_shows_rate_per_core_and_quota_use() -> None:
    text = markdown(_results(20.0, 4800))
    assert "## Capacity (each relay held to 0.1 of a core, saturated)" in text
    assert "| 16 × 400 | 400 | sidecar+tracing | 4800 | 20.0 | 48000 | 96% |" in text
    assert "| 16 × 400 | 400 | direct | 6100 | – | – | – |" in text


def test_saturation_figures() -> None:
    # 1,400 tokens/s at a tenth of a core, 68 µs each: 14,000 per core, 95 % of the quota used
    figures = saturation(68.0, 1400.0, 0.1)
    assert figures["tokens_per_s_per_core"] == pytest.approx(14_000)
    assert figures["quota_used"] == pytest.approx(0.952)


@pytest.mark.parametrize("fraction", [0.0, 1.5])
def test_quota_out_of_range_is_one_clear_line(fraction: float) -> None:
    with pytest.raises(QuotaUnavailable, match=r"out of range: use 0\.01 to 1\.0"):
        CpuQuota("test", fraction)

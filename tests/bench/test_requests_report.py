"""The per-request scenario's verdicts against nginx, from hand-made results (no processes)."""

from __future__ import annotations

from typing import Any

from bench.relay.report import request_targets


def _summary(sidecar_p50: float, sidecar_cpu: float, rate_ratio: float) -> dict[str, Any]:
    def row(p50: float, p99: float, cpu: float, rate: float | None) -> dict[str, Any]:
        return {
            "added_ttft_p50_ms": p50,
            "added_ttft_p99_ms": p99,
            "cpu_us_per_request": cpu,
            "ratio_request_rate": rate,
        }

    return {
        "direct": {"cpu_us_per_request": None},
        "nginx": row(0.3, 0.5, 700.0, 1.0),
        "sidecar": row(sidecar_p50, 4.0, sidecar_cpu, rate_ratio),
        "sidecar+tracing": row(0.9, 9.0, 1500.0, 0.99),
    }


def _verdicts(summary: dict[str, Any], users: int = 16) -> dict[str, str]:
    shape = {"shape": "short", "levels": [{"users": users, "summary": summary}]}
    return {name: verdict for name, _value, _bound, verdict in request_targets(shape)}


def test_sidecar_is_judged_against_nginx_in_the_same_level() -> None:
    verdicts = _verdicts(_summary(sidecar_p50=1.2, sidecar_cpu=1300.0, rate_ratio=0.98))
    assert verdicts["added TTFT p50 − nginx's, short, c=16, sidecar"] == "met"  # 0.9 ms over
    assert verdicts["added TTFT p99 − nginx's, short, c=16, sidecar"] == "met"
    assert verdicts["CPU per request ÷ nginx's, short, c=16, sidecar"] == "met"  # 1.86×
    assert verdicts["requests/s ÷ direct, short, c=16, sidecar"] == "met"
    assert verdicts["added TTFT p99 − nginx's, short, c=16, sidecar+tracing"] == "**missed**"
    assert verdicts["CPU per request ÷ nginx's, short, c=16, sidecar+tracing"] == "**missed**"


def test_misses_are_reported() -> None:
    verdicts = _verdicts(_summary(sidecar_p50=1.4, sidecar_cpu=1500.0, rate_ratio=0.96))
    assert verdicts["added TTFT p50 − nginx's, short, c=16, sidecar"] == "**missed**"
    assert verdicts["CPU per request ÷ nginx's, short, c=16, sidecar"] == "**missed**"
    assert verdicts["requests/s ÷ direct, short, c=16, sidecar"] == "**missed**"


def test_requests_per_second_is_judged_at_short_16_only() -> None:
    verdicts = _verdicts(_summary(sidecar_p50=0.5, sidecar_cpu=900.0, rate_ratio=0.5), users=64)
    assert not [name for name in verdicts if name.startswith("requests/s")]

"""Every PromQL expression in the dashboards and rules, run against a real Prometheus.

Prometheus scrapes a fake exposition of the DESIGN §6 metrics (tests/dashboards/exposition.py)
once a second; each expression must parse and return at least one series. This catches what
promtool's syntax check cannot: a misspelt label, a `by` that drops a label a later join needs,
a ratio whose sides never match.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

from sidecar.dashboards import all_promql
from sidecar.dashboards.build import RULES_FILE
from tests.dashboards.exposition import FakeSidecarMetrics, serving
from tests.dashboards.test_build import REPO
from tests.support.prometheus import PrometheusQueryError, PrometheusServer, running_prometheus

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def prometheus() -> Iterator[PrometheusServer]:
    with (
        serving(FakeSidecarMetrics()) as target,
        running_prometheus([target], rule_files=[REPO / "dashboards" / RULES_FILE]) as server,
    ):
        server.wait_for_targets_up()
        server.wait_for_scrapes(3)  # rate() needs two samples; a third absorbs scrape jitter
        yield server


def test_the_helper_sees_the_exposition(prometheus: PrometheusServer) -> None:
    (up,) = prometheus.query('up{job="sidecar"}')
    assert up["value"][1] == "1"
    assert prometheus.query("sidecar_sessions_active")[0]["value"][1] == "12"


EXPRESSIONS = all_promql()


# Rules about the scrape itself: while the fake sidecar is scraped they must find nothing.
SCRAPE_HEALTH = {"SidecarDown", "SidecarNotScraped"}


@pytest.mark.parametrize(("where", "expr"), EXPRESSIONS, ids=[w for w, _ in EXPRESSIONS])
def test_expression_returns_series(prometheus: PrometheusServer, where: str, expr: str) -> None:
    if where.split()[-1] in SCRAPE_HEALTH:
        assert prometheus.query(expr) == [], f"{where} fires on a healthy target: {expr}"
        selector = expr.removeprefix("absent(").removesuffix(")").removesuffix(" == 0")
        assert prometheus.query(selector), f"{where}: {selector} selects no scrape target"
        return
    series = prometheus.query(expr)
    assert series, f"{where}: no series for {expr}"
    values = [float(s["value"][1]) for s in series]
    assert any(math.isfinite(v) for v in values), f"{where}: only NaN/Inf for {expr}"


def test_prometheus_loads_the_generated_rules(prometheus: PrometheusServer) -> None:
    groups = prometheus._get("/api/v1/rules", {})["groups"]
    loaded = {rule["name"]: rule["health"] for g in groups for rule in g["rules"]}
    expected = {where.split()[-1] for where, _ in EXPRESSIONS if where.startswith("rules ")}
    assert set(loaded) == expected
    assert set(loaded.values()) <= {"ok", "unknown"}


@pytest.mark.parametrize("binary", ["/nonexistent/prometheus", "/bin/false"])
def test_unavailable_prometheus_fails_in_ci(monkeypatch: pytest.MonkeyPatch, binary: str) -> None:
    monkeypatch.setenv("SIDECAR_PROMETHEUS", binary)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception), running_prometheus(["127.0.0.1:9"]):
        pass


def test_unavailable_prometheus_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIDECAR_PROMETHEUS", "/bin/false")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="did not start"), running_prometheus([]):
        pass


def test_a_bad_query_raises_with_prometheus_message(prometheus: PrometheusServer) -> None:
    with pytest.raises(PrometheusQueryError, match="parse error"):
        prometheus.query("sum(rate(sidecar_streams_total[1m])")

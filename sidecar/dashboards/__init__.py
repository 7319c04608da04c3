"""Grafana dashboards and Prometheus alert rules, as code, over the DESIGN §6 metrics.

`promql` composes queries from `sidecar.telemetry.names`; `panels` and `layout` give every panel
and dashboard the same frame; `overview`, `cost` and `drift` are the dashboards; `rules` the fleet
alerts; `build` renders them to `dashboards/` (`sidecar dashboards build`) and lists their PromQL.
"""

from sidecar.dashboards.build import TEST_VARIABLES, all_promql, build_all, render_all

__all__ = ["TEST_VARIABLES", "all_promql", "build_all", "render_all"]

"""`sidecar dashboards`: regenerate the Grafana dashboards and the Prometheus alert rules."""

from __future__ import annotations

from pathlib import Path

import click

from sidecar.cli.options import option
from sidecar.dashboards import rules
from sidecar.dashboards.build import build_all

command = click.Group(
    "dashboards",
    help="Grafana dashboards and Prometheus alert rules.\n\n\b\nExample:\n"
    "  sidecar dashboards build --out dashboards/",
)


@command.command("build")
@option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("dashboards"),
    show_default=True,
    help="Directory for the dashboard JSON files; rules go to its rules/ folder.",
)
@option(
    "--prometheus-rule",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the rules as a Prometheus Operator PrometheusRule manifest here.",
)
def build(out: Path, prometheus_rule: Path | None) -> None:
    """Write the Grafana dashboards (*.json) and the fleet alert rules (rules/*.yml).

    The output is deterministic: rebuilding unchanged code rewrites identical files.

    \b
    Example:
      sidecar dashboards build --out dashboards/ \\
          --prometheus-rule deploy/kubernetes/base/prometheusrule.yaml
      promtool check rules dashboards/rules/sidecar-alerts.yml
    """
    for path in build_all(out):
        click.echo(str(path))
    if prometheus_rule is not None:
        prometheus_rule.parent.mkdir(parents=True, exist_ok=True)
        prometheus_rule.write_text(rules.render_prometheus_rule(), encoding="utf-8")
        click.echo(str(prometheus_rule))

"""Panel constructors shared by the dashboards: one look for every panel of a kind.

Every panel sets its plugin options in full (legend, tooltip, reduce options) rather than relying on
Grafana's frontend defaults, so the committed JSON validates against the panel schemas and renders
the same in every Grafana version that reads schema 41.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus, stat, statetimeline, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

# Panels follow the dashboard's datasource variable, so one JSON works against any Prometheus.
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")

PanelBuilder = Builder[model.Panel]


@dataclass(frozen=True, slots=True)
class Query:
    expr: str
    legend: str = "__auto"


@dataclass(frozen=True, slots=True)
class Bound:
    """A threshold line/colour: at `value` and above, the panel turns `color`."""

    value: float
    color: str = "red"


def _targets(queries: Sequence[Query], *, instant: bool = False) -> list[Builder[Dataquery]]:
    out: list[Builder[Dataquery]] = []
    for index, query in enumerate(queries):
        target = (
            prometheus.Dataquery()
            .expr(query.expr)
            .legend_format(query.legend)
            .ref_id(chr(ord("A") + index))
            .datasource(DATASOURCE)
        )
        out.append(target.instant() if instant else target.range())
    return out


def _thresholds(bounds: Sequence[Bound]) -> dashboard_builders.ThresholdsConfig:
    # The first step has no value: Grafana reads null as -Infinity.
    steps = [model.Threshold(value=None, color="green")]
    steps += [model.Threshold(value=b.value, color=b.color) for b in bounds]
    return dashboard_builders.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(steps)


def _legend(calcs: list[str]) -> common_builders.VizLegendOptions:
    legend = (
        common_builders.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.TABLE)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(calcs)
    )
    # Worst series first: the one someone opened the dashboard for.
    return legend.sort_by("Max").sort_desc(True) if "max" in calcs else legend


def _tooltip() -> common_builders.VizTooltipOptions:
    return (
        common_builders.VizTooltipOptions()
        .mode(common.TooltipDisplayMode.MULTI)
        .sort(common.SortOrder.DESCENDING)
    )


def graph(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    *,
    width: int = 12,
    height: int = 8,
    stacked: bool = False,
    bounds: Sequence[Bound] = (),
    dashed: str | None = None,
) -> timeseries.Panel:
    """A time series; `dashed` is a regex of series names drawn dashed (baselines)."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(_targets(queries))
        .unit(unit)
        .min(0)
        .span(width)
        .height(height)
        .legend(_legend(["mean", "max", "lastNotNull"]))
        .tooltip(_tooltip())
        .line_width(1)
        .fill_opacity(30 if stacked else 8)
        .show_points(common.VisibilityMode.NEVER)
        .thresholds(_thresholds(bounds))
    )
    if stacked:
        panel = panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    if bounds:
        style = common_builders.GraphThresholdsStyleConfig()
        panel = panel.thresholds_style(style.mode(common.GraphThresholdsStyleMode.DASHED))
    if dashed is not None:
        line = {"fill": "dash", "dash": [10, 10]}
        panel = panel.override_by_regexp(
            dashed, [model.DynamicConfigValue(id_val="custom.lineStyle", value=line)]
        )
    return panel


def single(
    title: str,
    description: str,
    unit: str,
    query: Query,
    *,
    width: int = 6,
    height: int = 4,
    bounds: Sequence[Bound] = (),
    decimals: int | None = None,
) -> stat.Panel:
    """One big number (the last value), coloured by `bounds`."""
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(_targets([query], instant=True))
        .unit(unit)
        .span(width)
        .height(height)
        .thresholds(_thresholds(bounds))
        .color_mode(common.BigValueColorMode.VALUE)
        .graph_mode(common.BigValueGraphMode.NONE)
        .text_mode(common.BigValueTextMode.VALUE)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    return panel if decimals is None else panel.decimals(decimals)


def states(
    title: str,
    description: str,
    query: Query,
    labels: dict[float, tuple[str, str]],
    *,
    width: int = 24,
    height: int = 8,
) -> statetimeline.Panel:
    """A state timeline; `labels` maps a value to (text, colour)."""
    mapping = model.ValueMap(
        options={
            _number(value): model.ValueMappingResult(text=text, color=color, index=index)
            for index, (value, (text, color)) in enumerate(sorted(labels.items()))
        }
    )
    return (
        statetimeline.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(_targets([query]))
        .span(width)
        .height(height)
        .mappings([mapping])
        .show_value(common.VisibilityMode.NEVER)
        .merge_values(True)
        .row_height(0.8)
        .line_width(0)
        .fill_opacity(80)
        .legend(_legend([]).display_mode(common.LegendDisplayMode.LIST).show_legend(False))
        .tooltip(_tooltip())
    )


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)

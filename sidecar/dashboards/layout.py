"""Dashboard frame: template variables, rows, panel ids.

Panels are laid out by the SDK (left to right, 24 columns, wrapping); ids are numbered here in
reading order because the SDK leaves them unset and Grafana needs them unique per dashboard for
links and `viewPanel=` URLs that people bookmark.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from grafana_foundation_sdk.builders import dashboard as builders
from grafana_foundation_sdk.models import dashboard as model

from sidecar.dashboards.panels import DATASOURCE, PanelBuilder

VariableBuilder = builders.DatasourceVariable | builders.QueryVariable

# Part of every dashboard's URL and of cross-links between them; changing one breaks bookmarks.
TAGS = ["ai-stream-sidecar"]


@dataclass(frozen=True, slots=True)
class Section:
    title: str
    panels: Sequence[PanelBuilder]


def datasource_variable() -> builders.DatasourceVariable:
    return builders.DatasourceVariable("datasource").label("Prometheus").type("prometheus")


def label_variable(name: str, label: str, query: str) -> builders.QueryVariable:
    """A multi-select over `label_values(...)`; "All" sends `.*`, so queries use `=~"$name"`."""
    everything = model.VariableOption(selected=True, text="All", value="$__all")
    return (
        builders.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(query)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(everything)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC)
    )


def assemble(
    *,
    uid: str,
    title: str,
    description: str,
    variables: Sequence[VariableBuilder],
    sections: Sequence[Section],
) -> model.Dashboard:
    board = (
        builders.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .editable()
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .time("now-6h", "now")
        .refresh("30s")
        .timezone("browser")
        .link(
            builders.DashboardLink("Sidecar dashboards")
            .type(model.DashboardLinkType.DASHBOARDS)
            .tags(TAGS)
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )
    for variable in variables:
        board = board.with_variable(variable)
    for section in sections:
        board = board.with_row(builders.Row(section.title))
        for panel in section.panels:
            board = board.with_panel(panel)
    built = board.build()
    for number, placed in enumerate(built.panels or [], start=1):
        placed.id_val = number
    return built

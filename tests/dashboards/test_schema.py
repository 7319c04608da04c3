"""Every generated dashboard is valid Grafana 11.6 JSON, down to each panel's plugin options."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from sidecar.dashboards import render_all
from tests.dashboards.grafana_schema import PANEL_KINDS, SCHEMAS, validate

Json = dict[str, Any]
DASHBOARDS = {p.stem: json.loads(c) for p, c in render_all().items() if p.suffix == ".json"}


def _panel(board: Json, type_: str) -> Json:
    return next(p for p in board["panels"] if p["type"] == type_)


@pytest.mark.parametrize("uid", sorted(DASHBOARDS))
def test_dashboard_is_valid(uid: str) -> None:
    assert validate(DASHBOARDS[uid]) == []


def test_schemas_are_vendored_with_provenance() -> None:
    assert (SCHEMAS / "PROVENANCE.txt").is_file()
    assert "Apache-2.0" in (SCHEMAS / "PROVENANCE.txt").read_text()
    used = {p["type"] for board in DASHBOARDS.values() for p in board["panels"]} - {"row"}
    assert used <= set(PANEL_KINDS)


def test_every_panel_is_set_up_completely() -> None:
    for board in DASHBOARDS.values():
        ids = [p["id"] for p in board["panels"]]
        assert ids == list(range(1, len(ids) + 1))
        for panel in board["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            if panel["type"] != "state-timeline":  # states are text, not quantities
                assert panel["fieldConfig"]["defaults"].get("unit"), panel["title"]
            assert panel["description"], panel["title"]


def test_units_follow_the_quantity() -> None:
    units = {
        p["title"]: p["fieldConfig"]["defaults"]["unit"]
        for board in DASHBOARDS.values()
        for p in board["panels"]
        if p["type"] not in ("row", "state-timeline")
    }
    assert units["Time to first token"] == "s"
    assert units["Cost per hour by model"] == "currencyUSD"
    assert units["Waste by model"] == "percent"


def _set(path: str, value: object) -> Callable[[Json], None]:
    def mutate(panel: Json) -> None:
        *parents, last = path.split(".")
        node = panel
        for key in parents:
            node = node[key]
        node[last] = value

    return mutate


def _drop(path: str) -> Callable[[Json], None]:
    def mutate(panel: Json) -> None:
        *parents, last = path.split(".")
        node = panel
        for key in parents:
            node = node[key]
        del node[last]

    return mutate


def _first_target(mutate: Callable[[Json], None]) -> Callable[[Json], None]:
    return lambda panel: mutate(panel["targets"][0])


BROKEN = {
    "legend mode": ("timeseries", _set("options.legend.displayMode", "sideways"), "sideways"),
    "missing tooltip": ("timeseries", _drop("options.tooltip"), "'tooltip' is a required"),
    "custom type": ("timeseries", _set("fieldConfig.defaults.custom.fillOpacity", "lots"), "lots"),
    "custom unknown": ("timeseries", _set("fieldConfig.defaults.custom.glow", True), "glow"),
    "stat reduce": ("stat", _drop("options.reduceOptions.calcs"), "'calcs' is a required"),
    "stat custom": ("stat", _set("fieldConfig.defaults.custom", {"lineWidth": 1}), "no custom"),
    "unit": ("stat", _set("fieldConfig.defaults.unit", "dollars"), "dollars"),
    "threshold": (
        "stat",
        lambda p: p["fieldConfig"]["defaults"]["thresholds"]["steps"].append(
            {"value": "high", "color": "red"}
        ),
        "'high' is not of type",
    ),
    "target key": ("timeseries", _first_target(_set("exprr", "up")), "exprr"),
    "target refId": ("timeseries", _first_target(_drop("refId")), "'refId' is a required"),
    "grid": ("timeseries", _set("gridPos.w", 30), "30 is greater than"),
    "panel type": ("timeseries", _set("type", "graph"), "no schema for panel type 'graph'"),
    "state row height": ("state-timeline", _set("options.rowHeight", 3), "3 is greater than"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_panel_fails_validation(case: str) -> None:
    type_, mutate, expected = BROKEN[case]
    uid = next(u for u, b in DASHBOARDS.items() if any(p["type"] == type_ for p in b["panels"]))
    board = copy.deepcopy(DASHBOARDS[uid])
    mutate(_panel(board, type_))
    errors = validate(board)
    assert errors, f"{case}: broken panel passed validation"
    assert any(expected in e for e in errors), errors


def test_a_broken_override_fails_validation() -> None:
    board = copy.deepcopy(DASHBOARDS["sidecar-drift"])
    panel = next(p for p in board["panels"] if p.get("fieldConfig", {}).get("overrides"))
    panel["fieldConfig"]["overrides"][0]["properties"][0]["value"] = {"fill": "wavy"}
    assert any("'wavy' is not one of" in e for e in validate(board))

"""Validate dashboard JSON against Grafana 11.6's JSON Schemas (tests/data/grafana-schema-11.6).

The schemas are Grafana "kind" schemas, one file per kind, all `definitions` and no root for the
panel plugins. The dashboard schema leaves each panel's `options`, `fieldConfig.defaults.custom`
and `targets` open (plain objects); the plugin decides what goes there. So validation has layers:

1. the whole dashboard against `dashboard.jsonschema.json` (`#/definitions/Dashboard`);
2. per panel, by its `type`: `options` against `<plugin>#/definitions/Options`,
   `fieldConfig.defaults.custom` and `custom.*` overrides against its `FieldConfig`;
3. each target against `prometheus.jsonschema.json` (`#/definitions/dataquery`);
4. every unit against the ids in `units.jsonschema.json`.

Known false positives of the generated schemas (see the README there) are relaxed here, narrowly.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError, best_match

SCHEMAS = Path(__file__).resolve().parents[1] / "data" / "grafana-schema-11.6"
# Panel `type` → schema file stem (Grafana's plugin ids are not always the kind names).
PANEL_KINDS = {"timeseries": "timeseries", "stat": "stat", "state-timeline": "statetimeline"}

Json = dict[str, Any]


@cache
def load(kind: str) -> Json:
    schema: Json = json.loads((SCHEMAS / f"{kind}.jsonschema.json").read_text())
    return schema


@cache
def _dashboard_validator() -> Draft7Validator:
    schema = copy.deepcopy(load("dashboard"))
    definitions = schema["definitions"]
    # The base threshold step is {"value": null}: null means -Infinity.
    definitions["Threshold"]["properties"]["value"] = {"type": ["number", "null"]}
    # Typed `object` but Grafana stores units, regexes, numbers and lists here.
    definitions["DynamicConfigValue"]["properties"]["value"] = {}
    definitions["MatcherConfig"]["properties"]["options"] = {}
    # Not a relaxation: `oneOf: [Panel, RowPanel]` picked by `type`, so an invalid panel reports
    # its own error instead of "not valid under any of the given schemas".
    panels = definitions["Dashboard"]["properties"]["panels"]
    assert [b["$ref"] for b in panels["items"]["oneOf"]] == [
        "#/definitions/Panel",
        "#/definitions/RowPanel",
    ]
    panels["items"] = {
        "if": {"properties": {"type": {"const": "row"}}, "required": ["type"]},
        "then": {"$ref": "#/definitions/RowPanel"},
        "else": {"$ref": "#/definitions/Panel"},
    }
    return Draft7Validator(schema)


@cache
def _definition(kind: str, name: str) -> Draft7Validator:
    definitions = load(kind)["definitions"]
    return Draft7Validator({"$ref": f"#/definitions/{name}", "definitions": definitions})


@cache
def units() -> frozenset[str]:
    return frozenset(d["const"] for d in load("units")["definitions"].values())


def _field_config_properties(kind: str) -> Json | None:
    """The plugin's `FieldConfig` properties (following `$ref`), or None if it has none."""
    definitions = load(kind)["definitions"]
    node = definitions.get("FieldConfig")
    while node is not None and "$ref" in node:
        node = definitions[node["$ref"].rsplit("/", 1)[-1]]
    return None if node is None else node.get("properties", {})


def _messages(where: str, errors: Iterator[ValidationError]) -> list[str]:
    out = []
    for error in errors:
        # For oneOf/anyOf, the sub-error that got furthest says what is actually wrong.
        shown = best_match(error.context) if error.context else error
        path = "/".join(str(p) for p in shown.absolute_path)
        out.append(f"{where}: {path or '(root)'}: {shown.message}")
    return out


def _panels(panels: list[Json]) -> Iterator[Json]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def validate(board: Json) -> list[str]:
    """Every schema violation in `board`, one line each; [] when it is valid."""
    errors = _messages(board.get("uid", "dashboard"), _dashboard_validator().iter_errors(board))
    for panel in _panels(board.get("panels", [])):
        if panel.get("type") != "row":
            errors += _validate_panel(panel)
    return errors


def _validate_panel(panel: Json) -> list[str]:
    where = f"panel {panel.get('id')} {panel.get('title')!r}"
    kind = PANEL_KINDS.get(panel.get("type", ""))
    if kind is None:
        return [f"{where}: no schema for panel type {panel.get('type')!r}"]
    # A missing `options` is validated as {}: the plugin's required options must all be set.
    errors = _messages(
        f"{where} options", _definition(kind, "Options").iter_errors(panel.get("options", {}))
    )
    field_config = panel.get("fieldConfig", {})
    defaults = field_config.get("defaults", {})
    errors += _validate_custom(where, kind, defaults.get("custom", {}))
    errors += _validate_unit(where, defaults.get("unit"))
    for override in field_config.get("overrides", []):
        for prop in override.get("properties", []):
            if prop["id"].startswith("custom."):
                name = prop["id"].removeprefix("custom.")
                errors += _validate_custom(where, kind, {name: prop.get("value")})
            elif prop["id"] == "unit":
                errors += _validate_unit(where, prop.get("value"))
    query = _definition("prometheus", "dataquery")
    for index, target in enumerate(panel.get("targets", [])):
        errors += _messages(f"{where} target {index}", query.iter_errors(target))
    return errors


def _validate_custom(where: str, kind: str, custom: Json) -> list[str]:
    properties = _field_config_properties(kind)
    if properties is None:
        return [f"{where}: {kind} has no custom field config, got {custom}"] if custom else []
    schema = {"type": "object", "additionalProperties": False, "properties": properties}
    validator = Draft7Validator({**schema, "definitions": load(kind)["definitions"]})
    return _messages(f"{where} fieldConfig custom", validator.iter_errors(custom))


def _validate_unit(where: str, unit: object) -> list[str]:
    if unit is None or unit in units():
        return []
    return [f"{where}: unit {unit!r} is not a Grafana unit id"]

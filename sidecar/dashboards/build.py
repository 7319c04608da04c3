"""Render every artefact (dashboards JSON, rules YAML) and list the PromQL inside them.

Output is deterministic (sorted keys, fixed ids, trailing newline) so the committed files can be
compared byte for byte with a fresh build in tests and CI.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped,unused-ignore]  # types-PyYAML is optional
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from sidecar.dashboards import cost, drift, overview, rules

DASHBOARDS: dict[str, Callable[[], Dashboard]] = {
    overview.UID: overview.build,
    cost.UID: cost.build,
    drift.UID: drift.build,
}
RULES_FILE = Path("rules") / "sidecar-alerts.yml"

# What Grafana would put in for its variables, chosen so every query runs against a test Prometheus.
TEST_VARIABLES: Mapping[str, str] = {
    "model": ".*",
    "tenant": ".*",
    "datasource": "prometheus",
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
}

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
_LABEL_VALUES = re.compile(r"^label_values\((?:(.+),\s*)?(\w+)\)$")


def render_dashboard(board: Dashboard) -> str:
    return json.dumps(board, cls=JSONEncoder, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def render_all() -> dict[Path, str]:
    """Relative path → file content for everything `build_all` writes."""
    files = {Path(f"{uid}.json"): render_dashboard(make()) for uid, make in DASHBOARDS.items()}
    files[RULES_FILE] = rules.render()
    return files


def build_all(out_dir: Path) -> list[Path]:
    written = []
    for relative, content in render_all().items():
        path = out_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        written.append(path)
    return written


def all_promql(variables: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """(where, expr) for every panel target, variable query and alert rule.

    Grafana variables are replaced from `variables` (names with or without `$`; default
    `TEST_VARIABLES`); a variable missing from the mapping raises `KeyError`. `label_values(m, l)`
    variable queries become the equivalent PromQL `group by (l) (m)`.
    """
    given = TEST_VARIABLES if variables is None else variables
    mapping = {name.lstrip("$"): value for name, value in given.items()}
    found = []
    for relative, content in render_all().items():
        if relative == RULES_FILE:
            found += list(_rule_exprs(yaml.safe_load(content)))
        else:
            found += list(_dashboard_exprs(json.loads(content)))
    return [(where, substitute(expr, mapping)) for where, expr in found]


def substitute(expr: str, mapping: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in mapping:
            raise KeyError(f"no value for Grafana variable ${name} in {expr!r}")
        return mapping[name]

    return _VARIABLE.sub(replace, expr)


def _dashboard_exprs(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    uid = board["uid"]
    for variable in board.get("templating", {}).get("list", []):
        if variable["type"] == "query":
            yield f"{uid} variable ${variable['name']}", _variable_promql(variable["query"])
    for panel in _panels(board.get("panels", [])):
        for target in panel.get("targets", []):
            where = f"{uid} panel {panel['id']} {panel['title']!r} target {target['refId']}"
            yield where, target["expr"]


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # panels inside collapsed rows


def _variable_promql(query: str) -> str:
    match = _LABEL_VALUES.match(query.strip())
    if match is None:
        return query
    metric, label = match.group(1), match.group(2)
    series = metric or "{" + label + '!=""}'
    return f"group by ({label}) ({series})"


def _rule_exprs(document: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for group in document["groups"]:
        for rule in group["rules"]:
            yield f"rules {group['name']} {rule['alert']}", rule["expr"]

"""The committed dashboards and rules are exactly what the code generates."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.dashboards import all_promql, build_all, render_all, rules
from sidecar.dashboards.build import RULES_FILE, substitute

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "dashboards"


@pytest.mark.parametrize("relative", sorted(render_all()), ids=str)
def test_committed_file_matches_the_builder(relative: Path) -> None:
    committed = (COMMITTED / relative).read_text(encoding="utf-8")
    assert committed == render_all()[relative], (
        f"dashboards/{relative} is stale: run `sidecar dashboards build`"
    )


def test_output_is_deterministic_and_newline_terminated() -> None:
    first, second = render_all(), render_all()
    assert first == second
    for content in first.values():
        assert content.endswith("\n")
        assert not content.endswith("\n\n")


def test_build_all_writes_every_file(tmp_path: Path) -> None:
    written = build_all(tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out") for p in written) == sorted(render_all())
    assert (tmp_path / "out" / RULES_FILE).is_file()


def test_cli_build_writes_the_same_files(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from sidecar.dashboards.cli import command

    result = CliRunner().invoke(command, ["build", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    files = render_all()
    assert result.output.splitlines() == [str(tmp_path / p) for p in files]
    for relative, content in files.items():
        assert (tmp_path / relative).read_text(encoding="utf-8") == content


def test_cli_help_has_an_example() -> None:
    from click.testing import CliRunner

    from sidecar.dashboards.cli import command

    result = CliRunner().invoke(command, ["build", "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output
    assert "sidecar dashboards build --out dashboards/" in result.output
    assert "SIDECAR_OUT" in result.output


def test_all_promql_covers_panels_variables_and_rules() -> None:
    wheres = [where for where, _ in all_promql()]
    assert len(wheres) == len(set(wheres))
    for uid in ("sidecar-overview", "sidecar-cost", "sidecar-drift"):
        assert any(w.startswith(f"{uid} panel ") for w in wheres)
        assert f"{uid} variable $model" in wheres
    assert sum(w.startswith("rules ") for w in wheres) == len(rules.rules())
    assert not any("$" in expr for _, expr in all_promql())


def test_variables_are_substituted_from_the_mapping() -> None:
    mapping = {"$model": "(a|b)", "tenant": "t", "__rate_interval": "5m", "__range": "2h"}
    found = dict(all_promql(mapping))
    waste = found["sidecar-cost panel 12 'Waste by model' target A"]
    assert 'model=~"(a|b)"' in waste
    assert 'tenant=~"t"' in waste
    assert "[5m]" in waste
    assert found["sidecar-cost variable $tenant"] == (
        'group by (tenant) (sidecar_cost_usd_total{model=~"(a|b)"})'
    )


def test_braced_variables_and_unknown_variables() -> None:
    assert substitute("x[${__range}] ${model:regex}", {"__range": "1h", "model": "m"}) == "x[1h] m"
    with pytest.raises(KeyError, match=r"\$tenant"):
        substitute('x{tenant=~"$tenant"}', {})

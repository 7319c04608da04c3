"""The generated rules pass `promtool check rules` and the hand-written `promtool test rules`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from sidecar.dashboards import rules
from sidecar.dashboards.build import RULES_FILE
from sidecar.telemetry import alerts
from tests.dashboards.test_build import COMMITTED
from tests.support.timeouts import scaled
from tests.support.unavailable import service_unavailable

RULES = COMMITTED / RULES_FILE
TESTS = RULES.with_name("sidecar-alerts.test.yml")
RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "runbook.md"


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(binary).is_file():
        service_unavailable("promtool not found (`apt-get install prometheus`)")
    return subprocess.run(
        [binary, *args], cwd=cwd, capture_output=True, text=True, timeout=scaled(30), check=False
    )


def test_promtool_check_rules() -> None:
    result = _promtool("check", "rules", str(RULES), cwd=RULES.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules.rules())} rules found" in result.stdout


def test_promtool_test_rules() -> None:
    result = _promtool("test", "rules", TESTS.name, cwd=TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_has_a_firing_and_a_quiet_case() -> None:
    document = yaml.safe_load(TESTS.read_text())
    firing: set[str] = set()
    quiet: set[str] = set()
    for test in document["tests"]:
        for case in test["alert_rule_test"]:
            (firing if case["exp_alerts"] else quiet).add(case["alertname"])
    names = {r.alert for r in rules.rules()}
    assert firing == names
    assert quiet == names


def test_promtool_test_rules_catches_a_wrong_bound(tmp_path: Path) -> None:
    """The unit tests are not vacuous: the same tests fail against looser rules."""
    loose = rules.render(rules.Bounds(waste_percent=60, ledger_queue_rows=50_000))
    (tmp_path / RULES.name).write_text(loose)
    shutil.copy(TESTS, tmp_path / TESTS.name)
    result = _promtool("test", "rules", TESTS.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "SidecarTokenWasteHigh" in result.stdout + result.stderr
    assert "SidecarLedgerBacklog" in result.stdout + result.stderr


def test_every_rule_is_documented() -> None:
    readme = (COMMITTED / "README.md").read_text()
    for rule in rules.rules():
        assert f"`{rule.alert}`" in readme


def test_one_owner_per_alert_one_severity_vocabulary_and_a_runbook_each() -> None:
    """A rule named like a pushed alert paged every drift twice, with another severity."""
    document = yaml.safe_load(RULES.read_text())
    entries = document["groups"][0]["rules"]
    names = {e["alert"] for e in entries}
    assert names.isdisjoint(alerts.PUSHED_ALERTS)
    assert {e["labels"]["severity"] for e in entries} <= set(alerts.SEVERITIES)
    headings = set(re.findall(r"^## (\w+)$", RUNBOOK.read_text(), re.MULTILINE))
    for entry in entries:
        assert entry["annotations"]["runbook_url"] == alerts.runbook_url(entry["alert"])
    assert names | alerts.PUSHED_ALERTS <= headings, "docs/runbook.md has a section per alert"
    assert {"SidecarDown", "SidecarNotScraped"} <= names

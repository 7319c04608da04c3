"""The deployment options of `sidecar serve` reach `ServeSettings` as deploy/ relies on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from sidecar import serve
from sidecar.cli.main import cli

# Through the group: it names the options' environment variables (sidecar.cli.options), and
# the command alone would read unscoped names (a test that passed only after another test
# imported the group).
command = cli.commands["serve"]


def settings(
    monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str | None]
) -> serve.ServeSettings:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(serve, "main", lambda s: seen.setdefault("settings", s))
    result = CliRunner().invoke(command, args, env=env)
    assert result.exit_code == 0, result.output
    found: serve.ServeSettings = seen["settings"]
    return found


def test_env_driven_like_the_image(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = {
        "SIDECAR_SERVE_LISTEN": "0.0.0.0:8080",
        "SIDECAR_ADMIN_LISTEN": "0.0.0.0:9464",
        "SIDECAR_STATE_DIR": str(tmp_path),
        "SIDECAR_LOG_FORMAT": "json",
        "SIDECAR_LOG_LEVEL": "WARNING",
        "SIDECAR_ACCESS_LOG": "false",
        "SIDECAR_MIGRATE": "1",
        "SIDECAR_ADMIN_URL": "http://10.0.0.7:9464/",
    }
    s = settings(monkeypatch, [], env)
    assert (s.listen, s.admin_listen) == ("0.0.0.0:8080", "0.0.0.0:9464")
    assert s.spool_dir == tmp_path / "spool"
    assert (s.log_format, s.log_level, s.access_log, s.migrate) == ("json", "warning", False, True)
    assert s.drift.generator_url == "http://10.0.0.7:9464/metrics"


def test_defaults_follow_systemd_and_a_spool_dir_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    s = settings(monkeypatch, [], {"STATE_DIRECTORY": str(tmp_path), "SIDECAR_STATE_DIR": None})
    assert s.spool_dir == tmp_path / "spool"
    assert (s.log_format, s.log_level, s.access_log, s.migrate) == ("text", "info", True, False)
    assert s.drift.generator_url.endswith(":9464/metrics")
    s = settings(monkeypatch, ["--spool-dir", str(tmp_path / "elsewhere")], {})
    assert s.spool_dir == tmp_path / "elsewhere"
    s = settings(monkeypatch, [], {"STATE_DIRECTORY": None, "SIDECAR_STATE_DIR": None})
    assert s.spool_dir == Path("spool")

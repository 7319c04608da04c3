"""`sidecar keys create | list | revoke` through click."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from sidecar.cli.main import cli
from sidecar.ledger import db


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    db.upgrade(url)
    runner = CliRunner()
    created = runner.invoke(cli, ["keys", "create", "--tenant", "acme", "--db", url])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    assert key.startswith("sk_sc_") and "cannot be shown again" in created.stderr
    made = runner.invoke(cli, ["keys", "create", "--tenant", "b", "--db", url, "--format", "json"])
    info = json.loads(made.stdout)
    assert info["tenant"] == "b" and info["key"].startswith(f"sk_sc_{info['id']}_")
    listed = json.loads(
        runner.invoke(cli, ["keys", "list", "--db", url, "--format", "json"]).stdout
    )
    assert sorted(k["tenant"] for k in listed["keys"]) == ["acme", "b"]
    assert key not in json.dumps(listed)
    revoked = runner.invoke(cli, ["keys", "revoke", info["id"], "--db", url])
    assert revoked.exit_code == 0 and revoked.stdout == f"revoked {info['id']}\n"
    again = runner.invoke(cli, ["keys", "revoke", info["id"], "--db", url])
    assert again.exit_code == 1 and "no live key" in again.output
    live = runner.invoke(cli, ["keys", "list", "--db", url]).stdout
    assert "acme" in live and info["id"] not in live
    assert info["id"] in runner.invoke(cli, ["keys", "list", "--all", "--db", url]).stdout
    bad = runner.invoke(cli, ["keys", "create", "--tenant", "bad tenant", "--db", url])
    assert bad.exit_code == 2 and "--tenant" in bad.output

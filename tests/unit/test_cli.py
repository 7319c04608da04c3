"""The CLI surface: help with examples everywhere, config precedence, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from sidecar.cli.main import cli


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        path = (*prefix, name)
        found.append(path)
        if isinstance(command, click.Group):
            found += all_commands(command, path)
    return found


COMMANDS = all_commands(cli)


def test_the_design_commands_exist() -> None:
    for path in [("serve",), ("simulate",), ("report",), ("db", "upgrade"), ("demo",),
                 ("drift", "backtest"), ("dashboards", "build"),
                 ("prices", "import"), ("prices", "list"), ("prices", "set")]:  # fmt: skip
        assert path in COMMANDS


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output, f"`sidecar {' '.join(path)} --help` shows no example"


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        timeout=60,
    )


def test_serve_refuses_an_unmigrated_database_in_one_line(tmp_path: Path) -> None:
    result = run("serve", "--db", f"sqlite:///{tmp_path}/new.db", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "is empty" in lines[0] and "run `sidecar db upgrade --db sqlite:///" in lines[0]


def test_bad_input_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("listen = [")
    cases = [
        (["--config", str(bad_toml), "report"], "is not valid TOML"),
        (["report", "--db", "mysql://nope"], "not a database URL"),
        (["simulate", "--output-tokens", "lots"], "--output-tokens 'lots'"),
        (["serve", "--listen", "localhost"], "expected HOST:PORT"),
    ]
    for args, message in cases:
        result = run(*args, cwd=tmp_path)
        assert result.returncode != 0, args
        assert "Traceback" not in result.stderr, result.stderr
        assert message in result.stderr, (args, result.stderr)


def test_flags_beat_environment_beat_config_file(tmp_path: Path) -> None:
    from sidecar.ledger import db

    for name in ("file", "env", "flag"):
        db.upgrade(f"sqlite:///{tmp_path}/{name}.db")
    config = tmp_path / "sidecar.toml"
    config.write_text(f'[report]\ndb = "sqlite:///{tmp_path}/file.db"\nformat = "json"\n')
    runner = CliRunner()

    def used_db(args: list[str], env: dict[str, str]) -> str:
        result = runner.invoke(cli, ["--config", str(config), "report", *args], env=env)
        assert result.exit_code == 0, result.output
        assert result.output.startswith("{")  # format came from the file
        return "ok"

    assert used_db([], {}) == "ok"
    # The file names a database; env and flag override it. A wrong URL proves which one won.
    wrong = "sqlite:////nonexistent-dir/x.db"
    env_wins = runner.invoke(cli, ["--config", str(config), "report"], env={"SIDECAR_DB": wrong})
    assert env_wins.exit_code != 0
    flag_wins = runner.invoke(
        cli,
        ["--config", str(config), "report", "--db", f"sqlite:///{tmp_path}/flag.db"],
        env={"SIDECAR_DB": wrong},
    )
    assert flag_wins.exit_code == 0, flag_wins.output

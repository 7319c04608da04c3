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


# Environment variables: one name per meaning ------------------------------------------------


def every_option() -> list[tuple[tuple[str, ...], click.Option]]:
    from sidecar.cli.options import leaf_commands

    found: list[tuple[tuple[str, ...], click.Option]] = [
        (("sidecar",), p) for p in cli.params if isinstance(p, click.Option)
    ]
    for path, command in leaf_commands(cli):
        found += [(path, p) for p in command.params if isinstance(p, click.Option)]
    return [(path, p) for path, p in found if p.name not in ("help", "version")]


def test_no_two_options_with_different_meanings_read_the_same_variable() -> None:
    readers: dict[str, list[tuple[tuple[str, ...], click.Option]]] = {}
    for path, param in every_option():
        assert isinstance(param.envvar, str), f"sidecar {' '.join(path)} {param.opts} has no env"
        readers.setdefault(param.envvar, []).append((path, param))
    for variable, options in readers.items():
        meanings = {(p.opts[-1], p.help, repr(p.type), p.is_flag) for _, p in options}
        assert len(meanings) == 1, f"{variable} is read by {[' '.join(c) for c, _ in options]}"
    # the cases the issue found
    assert readers["SIDECAR_REPORT_OUTPUT"][0][0] == ("report",)
    assert readers["SIDECAR_PRICES_SET_OUTPUT"][0][0] == ("prices", "set")
    assert "SIDECAR_OUTPUT" not in readers and "SIDECAR_FORMAT" not in readers
    assert "SIDECAR_LISTEN" not in readers
    assert readers["SIDECAR_LATENCY"][0][1].opts == ["--latency"]  # not .../__NO_LATENCY
    assert len(readers["SIDECAR_DB"]) > 5  # one meaning everywhere: the ledger


def test_the_environment_table_in_the_docs_is_the_code() -> None:
    from sidecar.cli.envdoc import render_configuration_doc

    docs = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    assert docs.read_text(encoding="utf-8") == render_configuration_doc(), (
        "run `python -m sidecar.cli.envdoc > docs/configuration.md`"
    )


def test_boolean_flags_are_settable_from_the_environment(tmp_path: Path) -> None:
    from sidecar.ledger import db

    url = f"sqlite:///{tmp_path / 'l.db'}"
    db.upgrade(url)
    runner = CliRunner()
    for value, expected in (("1", True), ("true", True), ("0", False), ("off", False)):
        result = runner.invoke(
            cli, ["report", "--db", url, "--format", "json"], env={"SIDECAR_LATENCY": value}
        )
        assert result.exit_code == 0, result.output
        assert ("ttft_p50_s" in result.output) is expected, value
    flags = [(c, p) for c, p in every_option() if p.is_flag]
    assert flags and all(isinstance(p.envvar, str) for _, p in flags)


def test_a_variable_meant_for_another_command_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sidecar.ledger import db

    url = f"sqlite:///{tmp_path / 'l.db'}"
    db.upgrade(url)
    env = {"SIDECAR_OUTPUT": "0.60", "SIDECAR_PRICES_SET_OUTPUT": "0.60", "SIDECAR_FORMAT": "csv"}
    monkeypatch.chdir(tmp_path)
    report = CliRunner().invoke(cli, ["report", "--db", url], env=env)
    keys = CliRunner().invoke(cli, ["keys", "list", "--db", url], env=env)
    assert not (tmp_path / "0.60").exists()
    assert report.exit_code == 0 and report.output == "no streams in this period\n"
    assert keys.exit_code == 0, keys.output


# The config file: checked, one line per mistake --------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[reprot]\nformat = "json"\n', "sidecar.toml:1: [reprot] is not a sidecar command; "
         "did you mean [report]?"),
        ('db = "sqlite:///x.db"\n[report]\nlatncy = true\n', "sidecar.toml:3: latncy is not an "
         "option at [report]; did you mean latency?"),
        ('listen = "127.0.0.1:1"\n', "sidecar.toml:1: listen means different things in [serve], "
         "[simulate]: set it in one of those"),
        ('[prices]\nsource = "x"\n', "sidecar.toml:2: source means different things in "
         "[prices.import], [prices.set]"),
        ('[prices.sett]\nsource = "x"\n', "sidecar.toml:1: [prices.sett] is not a sidecar "
         "command; did you mean [prices.set]?"),
        ('\n[report]\n\ntop = "x"\n', "sidecar.toml:4: [report] top = 'x': 'x' is not a valid "
         "integer range"),  # blamed on the file, not on SIDECAR_TOP
        ("colour = 1\n", "sidecar.toml:1: colour is not an option at the top level"),
    ],
)  # fmt: skip
def test_config_file_mistakes_are_one_line_with_the_place(
    text: str, message: str, tmp_path: Path
) -> None:
    (tmp_path / "sidecar.toml").write_text(text)
    result = run("--config", "sidecar.toml", "report", cwd=tmp_path)
    assert result.returncode == 2, result.stdout
    assert result.stderr.startswith(f"error: {message}"), result.stderr
    assert result.stderr.count("\n") == 1 and "env var" not in result.stderr


def test_config_tables_reach_subcommands(tmp_path: Path) -> None:
    from sidecar.cli.config import apply_config, load_config

    config = tmp_path / "sidecar.toml"
    config.write_text(
        'db = "sqlite:///a.db"\n[prices.set]\nsource = "sheet"\n[serve]\nlisten = "x:1"\n'
    )
    ctx = click.Context(cli)
    apply_config(ctx, load_config(str(config)))
    assert ctx.default_map is not None
    assert ctx.default_map["prices"]["set"] == {"db": "sqlite:///a.db", "source": "sheet"}
    assert ctx.default_map["serve"]["listen"] == "x:1"
    assert ctx.default_map["report"] == {"db": "sqlite:///a.db"}

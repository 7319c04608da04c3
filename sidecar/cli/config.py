"""The `--config` TOML file, checked against the commands it configures.

Top-level keys set an option for every command that has it, and must mean one thing there (the
same rule as the environment: `db = ...` is fine, `listen = ...` names two different options, of
`serve` and `simulate`, and belongs in a `[serve]` or `[simulate]` table). A `[command]` table
sets one command's options (`[prices]` keys reach its subcommands, `[prices.set]` one of them).
Unknown tables, unknown keys and values of the wrong type are errors, each one line naming the
file, its line and the fix; nothing runs with a file that has one.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from pathlib import Path
from typing import Any

import click

from sidecar.cli.options import PREFIX, leaf_commands, long_name
from sidecar.errors import ConfigError


def load_config(path: str | None) -> dict[str, Any]:
    """Read a TOML config file (not yet checked: that needs the commands)."""
    if path is None:
        return {}
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path}: cannot read ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return {"__path__": path, "__text__": text, "__data__": data}


def apply_config(ctx: click.Context, config: dict[str, Any]) -> None:
    """Check the loaded file and turn it into click's `default_map`."""
    if not config:
        return
    group = ctx.command
    assert isinstance(group, click.Group)
    checker = _Checker(group, config["__path__"], config["__text__"])
    ctx.default_map = checker.default_map(config["__data__"])


def _key(name: str) -> str:
    return name.replace("-", "_")


def _options(command: click.Command) -> dict[str, click.Option]:
    return {
        long_name(p.opts): p
        for p in command.params
        if isinstance(p, click.Option) and p.name != "help"
    }


class _Checker:
    def __init__(self, group: click.Group, path: str, text: str) -> None:
        self.group = group
        self.path = path
        self.lines = text.splitlines()
        self.leaves = dict(leaf_commands(group))

    def fail(self, table: tuple[str, ...], key: str | None, message: str) -> ConfigError:
        return ConfigError(f"{self.path}:{self._line(table, key)}: {message}")

    def _line(self, table: tuple[str, ...], key: str | None) -> int:
        """The line of `key` in `[table]` (or of the table header), 1 if not found."""
        current: tuple[str, ...] = ()
        header = re.compile(r"^\s*\[+\s*([^\]]+?)\s*\]+")
        for number, line in enumerate(self.lines, 1):
            match = header.match(line)
            if match:
                current = tuple(p.strip().strip('"') for p in match.group(1).split("."))
                if key is None and current == table:
                    return number
                continue
            pattern = rf'^\s*"?{re.escape(key or "")}"?\s*='
            if key is not None and current == table and re.match(pattern, line):
                return number
        return 1

    def default_map(self, data: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        common = {k: v for k, v in data.items() if not isinstance(v, dict)}
        for key, value in common.items():
            for path, name in self._unambiguous(key, (), self.leaves):
                self._set(result, path, name, value, (), key)
        for table, content in data.items():
            if isinstance(content, dict):
                self._table((table,), content, result)
        return result

    def _table(
        self, table: tuple[str, ...], content: dict[str, Any], result: dict[str, Any]
    ) -> None:
        within = {p: c for p, c in self.leaves.items() if p[: len(table)] == table}
        if not within:
            raise self.fail(table, None, self._unknown_table(table))
        for key, value in content.items():
            if isinstance(value, dict):
                self._table((*table, key), value, result)
                continue
            for path, name in self._unambiguous(key, table, within):
                self._set(result, path, name, value, table, key)

    def _unknown_table(self, table: tuple[str, ...]) -> str:
        names = sorted({".".join(p[: len(table)]) for p in self.leaves})
        wanted = ".".join(table)
        close = difflib.get_close_matches(wanted, names, n=1)
        hint = f"did you mean [{close[0]}]?" if close else f"tables: {', '.join(names)}"
        return f"[{wanted}] is not a sidecar command; {hint}"

    def _unambiguous(
        self,
        key: str,
        table: tuple[str, ...],
        commands: dict[tuple[str, ...], click.Command],
    ) -> list[tuple[tuple[str, ...], str]]:
        """The (command, option name) pairs `key` sets, if it means one thing there."""
        name = _key(key)
        found = [(p, o) for p, c in commands.items() if (o := _options(c).get(name))]
        where = f"[{'.'.join(table)}]" if table else "the top level"
        if not found:
            known = sorted({n for c in commands.values() for n in _options(c)})
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]}?" if close else "see `sidecar COMMAND --help`"
            raise self.fail(table, key, f"{key} is not an option at {where}; {hint}")
        variables = {str(o.envvar) for _, o in found}
        if len(found) > 1 and (len(variables) > 1 or not variables.pop().startswith(PREFIX)):
            names = ", ".join(f"[{'.'.join(p)}]" for p, _ in found)
            raise self.fail(
                table, key, f"{key} means different things in {names}: set it in one of those"
            )
        return [(p, str(o.name)) for p, o in found]

    def _set(
        self,
        result: dict[str, Any],
        path: tuple[str, ...],
        name: str,
        value: Any,
        table: tuple[str, ...],
        key: str,
    ) -> None:
        command = self.leaves[path]
        param = next(p for p in command.params if p.name == name)
        try:
            with click.Context(command) as ctx:
                param.type_cast_value(ctx, value)
        except click.BadParameter as exc:
            where = f"[{'.'.join(table)}] " if table else ""
            raise self.fail(table, key, f"{where}{key} = {value!r}: {exc.message}") from None
        target = result
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target.setdefault(path[-1], {})[name] = value

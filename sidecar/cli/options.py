"""Shared click plumbing: `SIDECAR_<OPTION>` environment variables, a TOML config file, and
one-line errors for user mistakes (never a traceback).

Precedence is click's own: a flag beats its environment variable, which beats the config file
(loaded into `default_map`), which beats the built-in default.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def option(*decls: str, **attrs: Any) -> Callable[[F], F]:
    """A click option that also reads `SIDECAR_<NAME>` from the environment."""
    long = next(d for d in decls if d.startswith("--"))
    attrs.setdefault("envvar", "SIDECAR_" + long[2:].replace("-", "_").upper())
    attrs.setdefault("show_envvar", True)
    return click.option(*decls, **attrs)


def load_config(path: str | None) -> dict[str, Any]:
    """Read a TOML config file into click's `default_map` shape.

    Top-level keys apply to every command; a `[serve]`-style table applies to one command.
    Keys may use dashes or underscores (`admin-listen` or `admin_listen`).
    """
    if path is None:
        return {}
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text())
    except FileNotFoundError:
        raise click.UsageError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise click.UsageError(f"config file {path} is not valid TOML: {exc}") from None
    common = {_key(k): v for k, v in data.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    return {"__common__": common, **tables}


def _key(name: str) -> str:
    return name.replace("-", "_")


def apply_config(ctx: click.Context, config: dict[str, Any]) -> None:
    """Turn the loaded file into click's `default_map`, keyed by parameter name.

    Keys are option names as typed on the command line (`format`, `admin-listen`), mapped to
    each command's parameter names, so `format = "json"` reaches the `--format` option.
    """
    common = config.get("__common__", {})
    group = ctx.command
    assert isinstance(group, click.Group)
    ctx.default_map = _defaults(ctx, group, common, config)


def _defaults(
    ctx: click.Context, group: click.Group, common: dict[str, Any], tables: dict[str, Any]
) -> dict[str, Any]:
    default_map: dict[str, Any] = {}
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None:
            continue
        table = tables.get(name, {})
        if isinstance(command, click.Group):
            merged_common = {
                **common,
                **{k: v for k, v in table.items() if not isinstance(v, dict)},
            }
            default_map[name] = _defaults(ctx, command, merged_common, table)
            continue
        by_option = _option_names(command)
        values = {**common, **{_key(k): v for k, v in table.items()}}
        mapped = {by_option[k]: v for k, v in values.items() if k in by_option}
        if mapped:
            default_map[name] = mapped
    return default_map


def _option_names(command: click.Command) -> dict[str, str]:
    names: dict[str, str] = {}
    for param in command.params:
        names[str(param.name)] = str(param.name)
        for opt in param.opts:
            if opt.startswith("--"):
                names[_key(opt[2:])] = str(param.name)
    return names

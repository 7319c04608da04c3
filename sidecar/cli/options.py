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
    common = config.get("__common__", {})
    default_map: dict[str, Any] = {}
    group = ctx.command
    assert isinstance(group, click.Group)
    for name in group.list_commands(ctx):
        table = config.get(name, {})
        merged = dict(common)
        for key, value in table.items():
            if isinstance(value, dict):
                merged[_key(key)] = {_key(k): v for k, v in value.items()}
            else:
                merged[_key(key)] = value
        if merged:
            default_map[name] = merged
    ctx.default_map = default_map

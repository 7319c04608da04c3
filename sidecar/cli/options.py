"""Shared click plumbing: environment variables, the TOML config file, one-line errors.

Precedence is click's own: a flag beats its environment variable, which beats the config file
(loaded into `default_map`), which beats the built-in default.

Environment variables: one name per meaning. An option reads `SIDECAR_<OPTION>` when no other
command has an option of that name, or when every option of that name means the same thing
(`SHARED`: `--db` is the ledger everywhere, `--admin-token` the admin listener's token).
Where two commands' options share a name but not a meaning (`report --output` is a file,
`prices set --output` a price), each reads
`SIDECAR_<COMMAND>_<OPTION>` instead (`SIDECAR_REPORT_OUTPUT`, `SIDECAR_PRICES_SET_OUTPUT`), so
a variable set for one command never leaks into another. `scope_environment` assigns the names
once every command is registered; docs/configuration.md lists them (checked by a test).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any, Final, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])
PREFIX: Final = "SIDECAR_"
# Options whose meaning is the same in every command that has them.
SHARED: Final = frozenset({"db", "admin_token"})


class SidecarOption(click.Option):
    """An option whose environment variable is named by `scope_environment`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.long_name = long_name(self.opts)


def long_name(opts: list[str]) -> str:
    """`report_output`-style key of the first long option (`--latency/--no-latency` → latency)."""
    first = next((o for o in opts if o.startswith("--")), opts[0])
    return first.lstrip("-").replace("-", "_")


def option(*decls: str, **attrs: Any) -> Callable[[F], F]:
    """A click option that also reads `SIDECAR_<NAME>` (or its scoped name) from the
    environment; flags (`--x/--no-x`, `is_flag`) accept 1/0, true/false, yes/no, on/off."""
    if "envvar" not in attrs:  # an explicit name (e.g. a standard variable) is kept
        attrs.setdefault("cls", SidecarOption)
    attrs.setdefault("show_envvar", True)
    decorator: Callable[[F], F] = click.option(*decls, **attrs)
    return decorator


def leaf_commands(
    group: click.Group, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name in sorted(group.commands):
        command = group.commands[name]
        if isinstance(command, click.Group):
            yield from leaf_commands(command, (*path, name))
        else:
            yield (*path, name), command


def _env_key(text: str) -> str:
    return text.replace("-", "_").replace(" ", "_").upper()


def scope_environment(group: click.Group) -> None:
    """Name every `SidecarOption`'s environment variable (see the module docstring)."""
    readers: dict[str, list[tuple[tuple[str, ...], SidecarOption]]] = defaultdict(list)
    for path, command in leaf_commands(group):
        for param in command.params:
            if isinstance(param, SidecarOption):
                readers[param.long_name].append((path, param))
    for name, found in readers.items():
        scoped = len(found) > 1 and name not in SHARED
        for path, param in found:
            scope = "_".join(path) + "_" if scoped else ""
            param.envvar = PREFIX + _env_key(scope + name)


def environment_table(group: click.Group) -> str:
    """The Markdown table of every environment variable, for docs/configuration.md."""
    lines = ["| variable | command | option |", "|---|---|---|"]
    rows: dict[str, list[str]] = defaultdict(list)
    options: dict[str, str] = {}
    for path, command in [(("(every command)",), group), *leaf_commands(group)]:
        for param in command.params:
            if isinstance(param, click.Option) and isinstance(param.envvar, str):
                rows[param.envvar].append(" ".join(path))
                options[param.envvar] = "/".join(o for o in param.opts if o.startswith("--"))
    for variable in sorted(rows):
        commands = ", ".join(f"`{c}`" for c in rows[variable])
        lines.append(f"| `{variable}` | {commands} | `{options[variable]}` |")
    return "\n".join(lines) + "\n"


# One option, one meaning: `serve` requires the token, `top` sends it (SIDECAR_ADMIN_TOKEN).
admin_token_option = option(
    "--admin-token",
    default=None,
    help="Bearer token of the admin listener: serve requires it on /sessions and /metrics "
    "(the probes and the /ui page, which asks for it, stay open); top sends it.",
)

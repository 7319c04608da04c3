"""Entry point: `sidecar <command>`. Each command lives in its own module."""

from __future__ import annotations

import sys

import click

from sidecar.cli.config import apply_config, load_config
from sidecar.cli.options import scope_environment
from sidecar.errors import SidecarError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "config_path",
    envvar="SIDECAR_CONFIG",
    type=click.Path(dir_okay=False),
    help="TOML file with defaults for any option; flags and SIDECAR_* variables beat it.",
)
@click.version_option(package_name="ai-stream-sidecar")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Observability sidecar and cost accountant for AI token streams.

    \b
    Example:
      sidecar simulate --listen 127.0.0.1:8000 &
      sidecar serve --upstream http://127.0.0.1:8000
      sidecar report --since 24h --by model,tenant
    """
    apply_config(ctx, load_config(config_path))


def _register() -> None:
    from sidecar.cli import db, demo, keys, prices, report, serve, simulate, top
    from sidecar.dashboards import cli as dashboards
    from sidecar.drift import cli as drift

    for module in (serve, simulate, report, prices, keys, db, demo, drift, dashboards, top):
        cli.add_command(module.command)
    scope_environment(cli)


_register()


def main() -> None:
    try:
        cli.main(prog_name="sidecar", standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except SidecarError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)

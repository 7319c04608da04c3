"""`sidecar top`: who is connected right now, in a terminal."""

from __future__ import annotations

import click

from sidecar.cli.options import admin_token_option, option
from sidecar.live.query import SORTS


@click.command("top")
@option(
    "--admin",
    default="http://127.0.0.1:9464",
    show_default=True,
    help="The sidecar's admin listener (serve --admin-listen); in a pod, port-forward it.",
)
@admin_token_option
@option(
    "--sort",
    type=click.Choice(list(SORTS)),
    default="waste",
    show_default=True,
    help="Sessions first by: waste (generated, not yet delivered), rtt, rtt_p50, ...",
)
@option("--tenant", default=None, help="Only this tenant's sessions and streams.")
@option("--model", default=None, help="Only sessions running this model, and those streams.")
@option(
    "--stuck",
    is_flag=True,
    default=False,
    help="Only stuck streams: their client stopped reading or acking, or is away.",
)
@option(
    "--limit",
    type=click.IntRange(min=1, max=10_000),
    default=50,
    show_default=True,
    help="Sessions shown.",
)
@option(
    "--interval", type=click.FloatRange(min=0.2), default=1.0, show_default=True, help="Seconds."
)
@option(
    "--count",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Refreshes before exiting (0: until Ctrl-C).",
)
@option(
    "--format",
    "format_",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="json: each refresh's /sessions answer on one line.",
)
def command(**options: object) -> None:
    """Show the live sessions of a running sidecar: RTT, tokens generated and delivered per
    stream, stuck streams, streams that just ended. Refreshes in place on a terminal.

    \b
    Example:
      sidecar top --admin http://127.0.0.1:9464 --sort rtt
      kubectl port-forward pod/llm-0 9464 & sidecar top --stuck
    """
    from sidecar.live.top import TopSettings, run

    options["format"] = options.pop("format_")
    options["admin_token"] = options.get("admin_token") or None
    run(TopSettings(**options))  # type: ignore[arg-type]

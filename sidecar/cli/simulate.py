"""`sidecar simulate`."""

from __future__ import annotations

import asyncio
import contextlib

import click

from sidecar.cli.options import option


@click.command("simulate")
@option("--listen", default="127.0.0.1:8000", show_default=True, help="Where to serve.")
@option(
    "--ttft",
    type=click.FloatRange(min=0),
    default=0.05,
    show_default=True,
    help="Seconds before the first token.",
)
@option("--tokens-per-second", type=click.FloatRange(min=0.001), default=50.0, show_default=True)
@option(
    "--output-tokens",
    default="max",
    show_default=True,
    help="'max' (the request's max_tokens), N, or 'lognormal:MEDIAN:SIGMA' (capped by max_tokens).",
)
@option(
    "--default-max-tokens",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Output cap when a request sets no max_tokens.",
)
@option(
    "--jitter",
    type=click.FloatRange(min=0, max=0.99),
    default=0.0,
    show_default=True,
    help="Relative ± jitter on every delay.",
)
@option(
    "--error-rate",
    type=click.FloatRange(min=0, max=1),
    default=0.0,
    show_default=True,
    help="Fraction of requests answered with HTTP 500.",
)
@option("--seed", type=int, default=None, help="Seed for reproducible lengths and jitter.")
def command(listen: str, seed: int | None, **options: object) -> None:
    """Run a simulated OpenAI-compatible model server (streams, usage, disconnect aborts).

    It stops generating when its client disconnects, as vLLM does, and reports what it really
    generated at GET /sim/stats. POST /sim/latency {"ttft_factor": 1.5} slows it at run time.

    \b
    Example:
      sidecar simulate --listen 127.0.0.1:8000 --ttft 0.2 --tokens-per-second 30
      curl -s 127.0.0.1:8000/sim/stats
    """
    from sidecar.netaddr import parse_listen
    from sidecar.serve import loop_factory
    from sidecar.simulate.model import SimSettings
    from sidecar.simulate.server import serve

    host, port = parse_listen(listen, "--listen")
    settings = SimSettings(seed=seed, **options)  # type: ignore[arg-type]
    click.echo(f"simulated model server on http://{listen}", err=True)
    with (
        asyncio.Runner(loop_factory=loop_factory()) as runner,
        contextlib.suppress(KeyboardInterrupt),
    ):
        runner.run(serve(settings, host, port))

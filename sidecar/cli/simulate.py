"""`sidecar simulate`."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import click

from sidecar.cli.options import option

SECONDS = click.FloatRange(min=0)
COUNT = click.IntRange(min=0)


class StallSeconds(click.ParamType[float, Any]):
    """Seconds, or "forever" (stored as 0: silent until the client leaves)."""

    name = "SECONDS|forever"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if value == "forever":
            return 0.0
        return float(SECONDS.convert(value, param, ctx))


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
    "--served-model-name",
    "served_models",
    multiple=True,
    default=("sim-small",),
    show_default=True,
    help="A model GET /v1/models lists (repeat for more); requests may name any model.",
)
@option(
    "--error-rate",
    type=click.FloatRange(min=0, max=1),
    default=0.0,
    show_default=True,
    help="Fraction of requests answered with --error-status and Retry-After.",
)
@option(
    "--error-status",
    type=click.IntRange(400, 599),
    default=503,
    show_default=True,
    help="HTTP status of an error answer (429, 500, 503, ...).",
)
@option(
    "--retry-after",
    type=COUNT,
    default=1,
    show_default=True,
    help="Seconds in the Retry-After header of an error answer.",
)
@option(
    "--stall-before-first-byte",
    type=SECONDS,
    default=0.0,
    help="Seconds of silence before the status line.",
)
@option(
    "--stall-before-first-token",
    type=SECONDS,
    default=0.0,
    help="Seconds of silence after 200 and the headers.",
)
@option("--stall-after-tokens", type=COUNT, default=None, help="Go silent after N tokens...")
@option(
    "--stall-seconds",
    type=StallSeconds(),
    default="forever",
    show_default=True,
    help="...for this long ('forever' or 0: until the client leaves).",
)
@option(
    "--drop-after-tokens",
    type=COUNT,
    default=None,
    help="Close the connection after N tokens, with no end marker.",
)
@option(
    "--error-after-tokens",
    type=COUNT,
    default=None,
    help="Send an in-stream error event after N tokens, then end the stream.",
)
@option(
    "--malformed-every",
    type=COUNT,
    default=0,
    help="Make every K-th SSE event `data: {not json` (K ≥ 2; no token is lost).",
)
@option("--seed", type=int, default=None, help="Seed for reproducible lengths and jitter.")
def command(
    listen: str,
    seed: int | None,
    served_models: tuple[str, ...],
    ttft: float,
    tokens_per_second: float,
    output_tokens: str,
    default_max_tokens: int,
    jitter: float,
    **fault_options: Any,
) -> None:
    """Run a simulated OpenAI-compatible model server (streams, usage, disconnect aborts).

    Routes: /v1/chat/completions, /v1/completions, /v1/responses, /v1/messages (Anthropic),
    /v1/embeddings, /v1/models and the /v1/realtime WebSocket. It stops generating when its
    client disconnects, as vLLM does, and reports what it really generated at GET /sim/stats.
    POST /sim/latency {"ttft_factor": 1.5} slows it at run time; POST /sim/faults (same names
    as the fault options, with underscores) changes the faults, GET shows them, DELETE resets
    them; a request body's "sim_fault" object overrides them for that request only.

    \b
    Example:
      sidecar simulate --listen 127.0.0.1:8000 --ttft 0.2 --tokens-per-second 30
      sidecar simulate --stall-after-tokens 5 --stall-seconds 30 --error-rate 0.1
      curl -s 127.0.0.1:8000/sim/stats
    """
    from sidecar.errors import ConfigError
    from sidecar.netaddr import parse_listen
    from sidecar.serve import loop_factory
    from sidecar.simulate.faults import FaultError, Faults, parse_faults
    from sidecar.simulate.model import SimSettings
    from sidecar.simulate.server import serve

    host, port = parse_listen(listen, "--listen")
    try:
        faults = parse_faults(fault_options, Faults(), "simulate")
    except FaultError as exc:  # only --malformed-every 1 gets past click's own checks
        raise ConfigError(str(exc).replace("simulate.", "--").replace("_", "-")) from None
    settings = SimSettings(
        ttft=ttft,
        tokens_per_second=tokens_per_second,
        output_tokens=output_tokens,
        default_max_tokens=default_max_tokens,
        jitter=jitter,
        faults=faults,
        served_models=served_models,
        seed=seed,
    )
    click.echo(f"simulated model server on http://{listen}", err=True)
    with (
        asyncio.Runner(loop_factory=loop_factory()) as runner,
        contextlib.suppress(KeyboardInterrupt),
    ):
        runner.run(serve(settings, host, port))

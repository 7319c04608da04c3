"""`sidecar serve`."""

from __future__ import annotations

from pathlib import Path

import click

from sidecar.cli.options import option
from sidecar.upstream.flavour import Flavour


@click.command("serve")
@option(
    "--listen",
    default="127.0.0.1:8080",
    show_default=True,
    help="Client traffic: /v1/stream WebSocket and the OpenAI HTTP routes.",
)
@option(
    "--admin-listen",
    default="127.0.0.1:9464",
    show_default=True,
    help="Operators' endpoints: /metrics, /healthz, /readyz.",
)
@option(
    "--upstream",
    default="http://127.0.0.1:8000",
    show_default=True,
    help="Base URL of the OpenAI-compatible model server.",
)
@option(
    "--upstream-flavour",
    "flavour",
    type=click.Choice([f.value for f in Flavour]),
    default="openai",
    show_default=True,
    help="What the upstream is: enables continuous usage (vllm, sglang) and SGLang aborts.",
)
@option(
    "--upstream-api-key",
    default=None,
    help="Sent upstream as a bearer token; never shown to clients.",
)
@option("--db", default="sqlite:///sidecar.db", show_default=True, help="Ledger database URL.")
@option(
    "--prices",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="TOML price file ([[price]] model, input_per_mtok, output_per_mtok, effective_from).",
)
@option(
    "--instance-id",
    default=None,
    help="This sidecar's id in a shared ledger [default: host-random].",
)
@option(
    "--spool-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Where ledger rows wait while the database is unreachable.",
)
@option(
    "--heartbeat-interval",
    type=click.FloatRange(min=0.1),
    default=20.0,
    show_default=True,
    help="Seconds between WebSocket protocol pings.",
)
@option(
    "--heartbeat-timeout",
    type=click.FloatRange(min=0.1),
    default=20.0,
    show_default=True,
    help="Seconds a pong may take before the client is judged gone.",
)
@option(
    "--tcp-user-timeout",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Kernel TCP_USER_TIMEOUT in seconds for client sockets (0 = off).",
)
@option(
    "--drain-timeout",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="On SIGTERM, seconds running streams may finish before they end as shutdown.",
)
@option(
    "--default-model",
    default="unknown",
    show_default=True,
    help="Model name recorded when a request names none.",
)
@option(
    "--tenant-top-n",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Tenants with their own metric label; the rest are folded into 'other'.",
)
@option("--max-streams-per-connection", type=click.IntRange(min=1), default=16, show_default=True)
@option(
    "--max-buffered-bytes",
    type=click.IntRange(min=1024),
    default=1024 * 1024,
    show_default=True,
    help="Unsent bytes per connection before its client is too slow.",
)
@option(
    "--send-buffer-bytes",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Kernel send buffer per client socket (0 = kernel default); small values find "
    "clients that stopped reading sooner.",
)
@option(
    "--send-timeout",
    type=click.FloatRange(min=1),
    default=10.0,
    show_default=True,
    help="Seconds a client's send buffer may stay stuck before it is judged gone.",
)
@option(
    "--trace-console",
    is_flag=True,
    default=False,
    help="Print spans to stdout (OTLP export is configured with OTEL_* variables).",
)
@option(
    "--capture-content",
    is_flag=True,
    default=False,
    help="Put prompt and completion text on spans (off: never recorded anywhere).",
)
@option("--alertmanager-url", default=None, help="Send drift alerts to this Alertmanager.")
@option("--drift-webhook-url", default=None, help="POST drift alerts as JSON to this URL.")
@option(
    "--drift-threshold",
    type=click.FloatRange(min=0.1),
    default=None,
    help="CUSUM threshold h [default: 10]; +1 ≈ 2.7× fewer false alarms, ~48 samples later.",
)
@option(
    "--drift-profile",
    type=click.Choice(["production", "fast"]),
    default="production",
    show_default=True,
    help="'fast' arms within ~20 s: for demos and tests, not paging.",
)
def command(**options: object) -> None:
    """Relay client WebSockets and OpenAI HTTP requests to a model server, and account for them.

    \b
    Example:
      sidecar db upgrade --db sqlite:///sidecar.db
      sidecar serve --upstream http://127.0.0.1:8000 --upstream-flavour vllm \\
          --prices prices.toml --listen 0.0.0.0:8080
    """
    from sidecar import serve
    from sidecar.drift.live import DriftSettings

    options["drift"] = DriftSettings(
        profile=str(options.pop("drift_profile")),
        threshold=options.pop("drift_threshold"),  # type: ignore[arg-type]
        alertmanager_url=options.pop("alertmanager_url") or None,  # type: ignore[arg-type]
        webhook_url=options.pop("drift_webhook_url") or None,  # type: ignore[arg-type]
    )
    options["flavour"] = Flavour(str(options["flavour"]))
    options["upstream_api_key"] = options.get("upstream_api_key") or None
    serve.main(serve.ServeSettings(**options))  # type: ignore[arg-type]

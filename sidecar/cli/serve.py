"""`sidecar serve`."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import click

from sidecar.cli.options import admin_token_option, option
from sidecar.logs import FORMATS, LEVELS
from sidecar.upstream.flavour import Flavour


def _passthrough_routes(
    _ctx: click.Context, _param: click.Parameter, value: str
) -> frozenset[str] | None:
    from sidecar.ingress.families import parse_passthrough_routes

    try:
        return parse_passthrough_routes(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("serve")
@option(
    "--listen",
    default="127.0.0.1:8080",
    show_default=True,
    help="Client traffic: /v1/stream and /v1/realtime WebSockets, the OpenAI and Anthropic HTTP "
    "routes.",
)
@option(
    "--admin-listen",
    default="127.0.0.1:9464",
    show_default=True,
    help="Operators' endpoints: /metrics, /healthz, /readyz, /sessions, /ui.",
)
@admin_token_option
@option(
    "--admin-metrics-open",
    is_flag=True,
    default=False,
    help="Serve /metrics without --admin-token (for a Prometheus that sends no credential).",
)
@option(
    "--trace-link",
    default=None,
    help="Your tracing UI's URL for a trace, with {trace_id}, for links on /ui "
    "(e.g. http://jaeger:16686/trace/{trace_id}).",
)
@option(
    "--upstream",
    default="http://127.0.0.1:8000",
    show_default=True,
    help="Base URL of the OpenAI-compatible model server (http(s)://, or ws(s)://: the same).",
)
@option(
    "--realtime-upstream",
    default=None,
    help="ws(s):// base URL of the model server's realtime WebSocket (/v1/realtime sessions) "
    "[default: --upstream's host and port].",
)
@option(
    "--passthrough-routes",
    default="all",
    show_default=True,
    callback=_passthrough_routes,
    help="API families of the unaccounted /v1/* routes passed to the model server with "
    "--upstream-api-key, comma-separated (e.g. models,files; other = any other /v1 path), "
    "all, or none. The rest get 403 route_not_allowed.",
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
    default=None,
    help="Where ledger rows wait while the database is unreachable [default: STATE_DIR/spool].",
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
    "--upstream-first-byte-timeout",
    type=click.FloatRange(min=0),
    default=300.0,
    show_default=True,
    help="Seconds the model server may take before its answer's first byte (a queueing vLLM "
    "can take minutes) before the stream ends as timeout; 0 = wait for ever.",
)
@option(
    "--upstream-idle-timeout",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds of silence from the model server while streaming before the stream ends as "
    "timeout (a hung GPU, a stuck NCCL); 0 = wait for ever.",
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
    help="Tenants with their own metric label (busiest first; at most twice this many); the "
    "rest are folded into 'other'.",
)
@option(
    "--model-label",
    "model_labels",
    multiple=True,
    help="Model that always gets its own metric label and drift detectors (repeat). Others "
    "get one when the upstream's GET /v1/models lists them (up to 64); the rest are 'other'.",
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
    "--app-ping-interval",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help='Seconds between protocol-v1 {"type":"ping"} frames to clients (0 = off); for '
    "clients that cannot see WebSocket pings. Clients may always ping the sidecar.",
)
@option(
    "--on-disconnect",
    type=click.Choice(["cancel", "grace"]),
    default="cancel",
    show_default=True,
    help="When a client vanishes: cancel the upstream at once, or keep it running for "
    "--resume-grace seconds so the client can reconnect and resume.",
)
@option(
    "--resume-grace",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Seconds a vanished client's streams are kept for a resume (with grace).",
)
@option(
    "--resume-buffer",
    type=click.IntRange(min=16),
    default=4096,
    show_default=True,
    help="Deltas kept per stream for replay after a reconnect (with grace).",
)
@option(
    "--resume-buffer-bytes",
    type=click.IntRange(min=1024),
    default=1024 * 1024,
    show_default=True,
    help="Bytes of kept deltas per connection (with grace); past it a stream drops its "
    "oldest, and a resume from before them is refused as resume_too_late.",
)
@option(
    "--resume-store",
    default="",
    help="redis://HOST:PORT/DB: share parked sessions with the other replicas (with grace), "
    "so a client can resume on any of them. Default: this process only.",
)
@option(
    "--resume-memory",
    type=click.IntRange(min=0),
    default=128 * 1024 * 1024,
    show_default=True,
    help="Bytes of kept deltas in the whole process (with grace; 0 = no bound); past it "
    "the stream appending drops its oldest.",
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
    help="CUSUM threshold h [default: 12]; +1 ≈ 2.7× fewer false alarms, ~48 samples later.",
)
@option(
    "--drift-profile",
    type=click.Choice(["production", "fast"]),
    default="production",
    show_default=True,
    help="'fast' arms within ~20 s: for demos and tests, not paging.",
)
@option(
    "--auth",
    type=click.Choice(["none", "apikey", "jwt"]),
    multiple=True,
    default=["none"],
    show_default=True,
    help="Client authentication; repeat for both (apikey and jwt). 'none': anonymous clients "
    "choose their tenant.",
)
@option("--jwt-secret", default=None, help="HS256 shared secret (at least 32 bytes).")
@option(
    "--jwt-jwks",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="JWKS file with the RS256 public keys tokens are signed with.",
)
@option("--jwt-issuer", default=None, help="Required `iss` of tokens.")
@option("--jwt-audience", default=None, help="Required `aud` of tokens.")
@option(
    "--jwt-leeway",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds of clock skew allowed on `exp` and `nbf`.",
)
@option(
    "--jwt-tenant-claim",
    default="tenant",
    show_default=True,
    help="Claim (dotted path for nested) holding the tenant.",
)
@option(
    "--key-refresh",
    type=click.FloatRange(min=0.5),
    default=5.0,
    show_default=True,
    help="Seconds between API-key reloads: a revoked key is refused within this.",
)
@option(
    "--allowed-origin",
    "allowed_origins",
    multiple=True,
    help="Browser Origin allowed to open a WebSocket (repeat; none given: any).",
)
@option(
    "--tls-cert",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="PEM certificate (chain) for https:// and wss:// on --listen.",
)
@option(
    "--tls-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="PEM private key for --tls-cert.",
)
@option(
    "--max-connections",
    type=click.IntRange(min=0),
    default=10_000,
    show_default=True,
    help="Concurrent client connections (WebSockets and HTTP relays); 0 = no limit.",
)
@option(
    "--max-connections-per-tenant",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Concurrent connections per tenant; 0 = no limit.",
)
@option(
    "--max-messages-per-second",
    type=click.FloatRange(min=0),
    default=50.0,
    show_default=True,
    help="Client messages per second per WebSocket (burst of the same); 0 = no limit.",
)
@option(
    "--max-frame-bytes",
    type=click.IntRange(min=1024),
    default=1024 * 1024,
    show_default=True,
    help="Largest client WebSocket message; bigger closes the connection with 1009.",
)
@option(
    "--handshake-timeout",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds a connection may take to send its request head; 0 = no limit.",
)
@option(
    "--body-timeout",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds an HTTP request body may take to arrive whole (else 408); 0 = no limit.",
)
@option(
    "--body-idle-timeout",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Longest gap in seconds between an HTTP request body's bytes (else 408); 0 = no limit.",
)
@option(
    "--idle-timeout",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Close a WebSocket with no message and no stream for this long; 0 = never.",
)
@option(
    "--max-tokens-limit",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Largest max_tokens a request may ask for (absent: this); 0 = no limit.",
)
@option(
    "--tenant-daily-token-budget",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Tokens (prompt + generated) per tenant per UTC day; spent: new streams rejected.",
)
# --- deployment (deploy/, docs/deploy.md): logs, state, migrations, links in alerts ---------
@option(
    "--log-format",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="Log lines on stderr: text, or json (one object per line: ts, level, event, ids).",
)
@option(
    "--log-level",
    type=click.Choice(LEVELS, case_sensitive=False),
    default="info",
    show_default=True,
    help="Least severe level logged (info shows the access log and drift resolutions).",
)
@option(
    "--access-log/--no-access-log",
    envvar="SIDECAR_ACCESS_LOG",  # the derived name would include the /--no- half
    default=True,
    show_default=True,
    help="One info line per finished stream: outcome, token counts, duration, ids.",
)
@option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=lambda: os.environ.get("STATE_DIRECTORY") or ".",
    show_default="$STATE_DIRECTORY (systemd) or the working directory",
    help="Local state: the ledger spool (STATE_DIR/spool). In a pod: an emptyDir volume.",
)
@option(
    "--migrate",
    is_flag=True,
    default=False,
    help="Run `sidecar db upgrade` before serving: for one replica (fleets: an init container).",
)
@option(
    "--admin-url",
    default=None,
    help="How people reach --admin-listen, for links in pushed alerts (generatorURL) "
    "[default: http://HOSTNAME:ADMIN_PORT].",
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
    if options.pop("on_disconnect") == "cancel":
        options["resume_grace"] = 0.0
    options["resume_store"] = options.get("resume_store") or None
    options["edge"] = _edge_settings(options)
    options["flavour"] = Flavour(str(options["flavour"]))
    options["model_labels"] = tuple(options.get("model_labels") or ())  # type: ignore[arg-type]
    options["upstream_api_key"] = options.get("upstream_api_key") or None
    options["admin_token"] = options.get("admin_token") or None
    options["realtime_upstream"] = options.get("realtime_upstream") or None
    _deployment_settings(options)
    serve.main(serve.ServeSettings(**options))  # type: ignore[arg-type]


def _deployment_settings(options: dict[str, Any]) -> None:
    """Resolves the deployment options: the spool under the state directory, the alert link."""
    state_dir = options.pop("state_dir")
    if options["spool_dir"] is None:
        options["spool_dir"] = state_dir / "spool"
    admin_url = options.pop("admin_url")
    if not admin_url:
        _, _, port = str(options["admin_listen"]).rpartition(":")
        admin_url = f"http://{socket.gethostname()}:{port}"
    options["drift"].generator_url = str(admin_url).rstrip("/") + "/metrics"
    options["log_level"] = str(options["log_level"]).lower()


def _edge_settings(options: dict[str, object]) -> object:
    """Pops the security options into `EdgeSettings`."""
    from sidecar.security.edge import EdgeSettings
    from sidecar.security.jwt import JwtSettings

    o: dict[str, Any] = options
    jwt = JwtSettings(
        secret=o.pop("jwt_secret") or None,
        jwks_file=o.pop("jwt_jwks"),
        issuer=o.pop("jwt_issuer") or None,
        audience=o.pop("jwt_audience") or None,
        tenant_claim=str(o.pop("jwt_tenant_claim")),
        leeway=float(o.pop("jwt_leeway")),
    )
    return EdgeSettings(
        auth=tuple(o.pop("auth")),
        jwt=jwt,
        key_refresh=o.pop("key_refresh"),
        allowed_origins=tuple(o.pop("allowed_origins")),
        tls_cert=o.pop("tls_cert"),
        tls_key=o.pop("tls_key"),
        max_connections=o.pop("max_connections"),
        max_connections_per_tenant=o.pop("max_connections_per_tenant"),
        max_messages_per_second=o.pop("max_messages_per_second"),
        max_frame_bytes=o.pop("max_frame_bytes"),
        handshake_timeout=o.pop("handshake_timeout"),
        body_timeout=o.pop("body_timeout"),
        body_idle_timeout=o.pop("body_idle_timeout"),
        idle_timeout=o.pop("idle_timeout"),
        max_tokens_limit=o.pop("max_tokens_limit"),
        tenant_daily_token_budget=o.pop("tenant_daily_token_budget"),
    )

"""Cost and waste: what the fleet spends per model and tenant, and how much of it nobody read.

Definitions are DESIGN §4: wasted = generated − delivered, and cost is prompt + generated (the
delivered/wasted cost kinds split `generated` and are never added to it).
"""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import Dashboard

from sidecar.dashboards import promql as q
from sidecar.dashboards.layout import Section, assemble, datasource_variable, label_variable
from sidecar.dashboards.panels import Bound, Query, graph, single
from sidecar.telemetry import names

UID = "sidecar-cost"

COST = q.total(names.COST_USD)
TOKENS = q.total(names.TOKENS)
HOUR = 3600
WASTE_BOUNDS = [Bound(10, "yellow"), Bound(25, "red")]


def _per_hour(by: tuple[str, ...], *matchers: str) -> str:
    # rate() is per second; people budget per hour.
    return f"{HOUR} * {q.sum_by(by, q.rate(COST, *matchers, *q.BY_MODEL_TENANT))}"


def _in_range(metric: str, *matchers: str) -> str:
    return q.sum_by((), q.increase(metric, *matchers, *q.BY_MODEL_TENANT))


def _totals() -> Section:
    wasted = _in_range(TOKENS, 'kind="wasted"')
    generated = _in_range(TOKENS, 'kind="generated"')
    return Section(
        "In the selected time range",
        [
            single(
                "Cost",
                "Prompt + generated tokens, priced when each stream started.",
                "currencyUSD",
                Query(_in_range(COST, q.PAID_KINDS)),
                decimals=2,
            ),
            single(
                "Wasted cost",
                "What the tokens generated but never delivered cost.",
                "currencyUSD",
                Query(_in_range(COST, 'kind="wasted"')),
                decimals=2,
                bounds=[Bound(1, "yellow"), Bound(100, "red")],
            ),
            single(
                "Waste",
                "Wasted tokens as a share of generated tokens.",
                "percent",
                Query(f"100 * {wasted} / {generated}"),
                decimals=1,
                bounds=WASTE_BOUNDS,
            ),
            single(
                "Generated tokens",
                "Tokens the model servers produced for the selected models and tenants.",
                "short",
                Query(generated),
            ),
        ],
    )


def _spend() -> Section:
    unpriced = f"{HOUR} * {q.sum_by(('model',), q.rate(q.total(names.UNPRICED_STREAMS), q.MODEL))}"
    return Section(
        "Spend",
        [
            graph(
                "Cost per hour by model",
                "Spend rate (prompt + generated) by model, in USD per hour.",
                "currencyUSD",
                [Query(_per_hour(("model",), q.PAID_KINDS), "{{model}}")],
                stacked=True,
            ),
            graph(
                "Cost per hour by tenant",
                "Spend rate (prompt + generated) by tenant, in USD per hour. Tenants beyond the "
                "configured top-N are folded into `other`.",
                "currencyUSD",
                [Query(_per_hour(("tenant",), q.PAID_KINDS), "{{tenant}}")],
                stacked=True,
            ),
            graph(
                "Streams without a price per hour",
                "Streams on a model with no price in force: their cost is missing from the "
                "figures above. Add the price with `sidecar prices`.",
                "short",
                [Query(unpriced, "{{model}}")],
                width=24,
                height=6,
            ),
        ],
    )


def _waste() -> Section:
    kinds = 'kind=~"generated|delivered|wasted"'
    return Section(
        "Waste",
        [
            graph(
                "Generated vs delivered vs wasted tokens / s",
                "Tokens per second: generated = delivered + wasted.",
                "short",
                [Query(q.sum_by(("kind",), q.rate(TOKENS, kinds, *q.BY_MODEL_TENANT)), "{{kind}}")],
            ),
            graph(
                "Waste by model",
                "Wasted tokens as a share of generated tokens, by model.",
                "percent",
                [Query(q.waste_percent(("model",), *q.BY_MODEL_TENANT), "{{model}}")],
                bounds=WASTE_BOUNDS,
            ),
            graph(
                "Wasted cost per hour by model",
                "USD per hour spent on tokens nobody received.",
                "currencyUSD",
                [Query(_per_hour(("model",), 'kind="wasted"'), "{{model}}")],
                stacked=True,
            ),
            graph(
                "Wasted cost per hour by tenant",
                "USD per hour spent on tokens nobody received, by tenant.",
                "currencyUSD",
                [Query(_per_hour(("tenant",), 'kind="wasted"'), "{{tenant}}")],
                stacked=True,
            ),
        ],
    )


def _routes() -> Section:
    tokens = q.total(names.ROUTE_TOKENS)
    bypass = q.total(names.UNACCOUNTED_REQUESTS)
    generated = q.sum_by(("route",), q.rate(tokens, 'kind="generated"'))
    wasted = q.sum_by(("route",), q.rate(tokens, 'kind="wasted"'))
    return Section(
        "Routes (all models and tenants)",
        [
            graph(
                "Prompt + generated tokens / s by route",
                "Chat and text completions, Responses, Messages, embeddings (prompt tokens), "
                "realtime; by route and ingress.",
                "short",
                [
                    Query(
                        q.sum_by(("route", "ingress"), q.rate(tokens, 'kind=~"generated|prompt"')),
                        "{{route}} ({{ingress}})",
                    )
                ],
                stacked=True,
            ),
            graph(
                "Waste by route",
                "Wasted tokens as a share of generated tokens, by route.",
                "percent",
                [Query(f"100 * {wasted} / {generated}", "{{route}}")],
                bounds=WASTE_BOUNDS,
            ),
            graph(
                "Requests bypassing accounting / s",
                "`/v1/*` requests passed to the model server without a ledger row (the model "
                "list, files, batches, ...), by API family: traffic the bill does not see.",
                "reqps",
                [Query(q.sum_by(("route",), q.rate(bypass)), "{{route}}")],
                width=24,
                height=6,
            ),
        ],
    )


def build() -> Dashboard:
    return assemble(
        uid=UID,
        title="AI stream sidecar / Cost and waste",
        description="Spend per model and tenant, and the tokens generated that nobody received.",
        variables=[
            datasource_variable(),
            label_variable("model", "Model", f"label_values({COST}, model)"),
            label_variable("tenant", "Tenant", f"label_values({q.sel(COST, q.MODEL)}, tenant)"),
        ],
        sections=[_totals(), _spend(), _waste(), _routes()],
    )

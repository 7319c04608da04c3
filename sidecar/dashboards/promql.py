"""PromQL fragments composed from the metric contract in `sidecar.telemetry.names`.

Dashboards and alert rules build their queries from these helpers instead of spelling metric
names, so renaming a metric in `names.py` changes every consumer at once and a misspelt name
cannot hide in a panel. Grafana variables (`$model`, `$__rate_interval`, ...) stay as text; the
dashboards resolve them and `all_promql()` substitutes them for tests.
"""

from __future__ import annotations

from sidecar.telemetry import names

RATE_INTERVAL = "$__rate_interval"
RANGE = "$__range"

# Multi-value variables render as a regex alternation `(a|b)`, so they need `=~`.
MODEL = 'model=~"$model"'
TENANT = 'tenant=~"$tenant"'
BY_MODEL_TENANT = (MODEL, TENANT)

# Total cost is what was paid for: the prompt plus everything generated. Delivered and wasted
# split `generated` and would count it twice.
PAID_KINDS = 'kind=~"prompt|generated"'


def total(counter: str) -> str:
    """The exposed name of a counter (`names.py` holds the name without `_total`)."""
    return f"{counter}_total"


def sel(metric: str, *matchers: str) -> str:
    """`metric{m1,m2}`; matchers are already PromQL (`'kind="wasted"'`)."""
    return f"{metric}{{{','.join(matchers)}}}" if matchers else metric


def rate(metric: str, *matchers: str, window: str = RATE_INTERVAL, offset: str = "") -> str:
    shift = f" offset {offset}" if offset else ""
    return f"rate({sel(metric, *matchers)}[{window}]{shift})"


def increase(metric: str, *matchers: str, window: str = RANGE) -> str:
    return f"increase({sel(metric, *matchers)}[{window}])"


def sum_by(labels: tuple[str, ...], expr: str) -> str:
    return aggregate("sum", labels, expr)


def max_by(labels: tuple[str, ...], expr: str) -> str:
    """For per-sidecar gauges that must not be summed (a p95, an alert flag): the worst one."""
    return aggregate("max", labels, expr)


def aggregate(op: str, labels: tuple[str, ...], expr: str) -> str:
    if not labels:
        return f"{op}({expr})"
    return f"{op} by ({', '.join(labels)}) ({expr})"


def quantile(
    q: float,
    histogram: str,
    *matchers: str,
    by: tuple[str, ...] = ("model",),
    window: str = RATE_INTERVAL,
) -> str:
    """`histogram_quantile` over the summed bucket rates, keeping `le` and the `by` labels."""
    buckets = rate(f"{histogram}_bucket", *matchers, window=window)
    return f"histogram_quantile({q}, {sum_by(('le', *by), buckets)})"


def waste_percent(by: tuple[str, ...], *matchers: str, window: str = RATE_INTERVAL) -> str:
    """Wasted tokens as a percentage of generated tokens (DESIGN §4: wasted ⊆ generated)."""
    tokens = total(names.TOKENS)
    wasted = sum_by(by, rate(tokens, 'kind="wasted"', *matchers, window=window))
    generated = sum_by(by, rate(tokens, 'kind="generated"', *matchers, window=window))
    return f"100 * {wasted} / {generated}"

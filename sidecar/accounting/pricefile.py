"""Price files (TOML), checked against their schema before anything is imported.

    [[price]]                        # per-token price of a model (USD per million tokens)
    model = "llama-3.1-8b-instruct"  # required
    input_per_mtok = "0.20"          # required
    output_per_mtok = "0.60"         # required
    cached_input_per_mtok = "0.10"   # optional
    effective_from = 2026-01-01      # required

    [[hourly]]                       # a self-hosted server's cost per hour (docs/accounting.md)
    instance = "gpu-node-1"          # one replica (its sidecar's --instance-id), or: model = "..."
    usd_per_hour = "2.40"            # required
    effective_from = 2026-01-01T00:00:00Z   # required, on a whole hour
    capacity_tokens_per_hour = 9000000      # optional: weighted tokens it can serve per hour
    prompt_weight = "0.25"           # optional (default 1): a prompt token's share of a decode

Every mistake is one line naming the file, the line and the fix: a missing or misspelt key, a
value of the wrong type, an unknown table, a file with no prices at all.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from sidecar.accounting.hourly import HourlyPrice, Scope
from sidecar.accounting.pricing import Price, parse_instant
from sidecar.errors import ConfigError

MAX_MODEL: Final = 128
PRICE_KEYS: Final = {
    "model": True,
    "input_per_mtok": True,
    "output_per_mtok": True,
    "cached_input_per_mtok": False,
    "effective_from": True,
}  # key: required
HOURLY_KEYS: Final = {
    "instance": False,
    "model": False,
    "usd_per_hour": True,
    "effective_from": True,
    "capacity_tokens_per_hour": False,
    "prompt_weight": False,
}
EXAMPLES: Final = {
    "model": '"llama-3.1-8b-instruct"',
    "instance": '"gpu-node-1"',
    "input_per_mtok": '"0.20"',
    "output_per_mtok": '"0.60"',
    "cached_input_per_mtok": '"0.10"',
    "usd_per_hour": '"2.40"',
    "effective_from": "2026-01-01",
    "capacity_tokens_per_hour": "9000000",
    "prompt_weight": '"0.25"',
}


@dataclass(frozen=True, slots=True)
class PriceFile:
    prices: tuple[Price, ...]
    hourly: tuple[HourlyPrice, ...]


def parse_price_file(text: str, source: str = "price file") -> PriceFile:
    """Parse and check a whole price file; raises `ConfigError` at the first mistake."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML: {exc}") from None
    where = _Locator(source, text)
    for name, value in data.items():
        if name not in ("price", "hourly"):
            close = difflib.get_close_matches(name, ["price", "hourly"], n=1)
            hint = f"did you mean [[{close[0]}]]?" if close else "use [[price]] or [[hourly]]"
            raise ConfigError(f"{where.at(name, 0, None)}: unknown table or key {name!r}; {hint}")
        if not isinstance(value, list):
            raise ConfigError(f"{where.at(name, 0, None)}: write [[{name}]] (an array of tables)")
    prices = tuple(_entries(data, "price", PRICE_KEYS, where, _price))
    hourly = tuple(_entries(data, "hourly", HOURLY_KEYS, where, _hourly))
    if not prices and not hourly:
        raise ConfigError(f"{source}: no [[price]] or [[hourly]] tables; nothing to import")
    _no_duplicates(prices, hourly, where)
    return PriceFile(prices, hourly)


class _Locator:
    """`file:line` of the n-th `[[table]]` or of a key in it (TOML parsers forget lines)."""

    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.lines = text.splitlines()

    def at(self, table: str, index: int, key: str | None) -> str:
        header = re.compile(rf"^\s*\[\[\s*{re.escape(table)}\s*\]\]")
        seen, number = -1, 0
        for n, line in enumerate(self.lines, 1):
            if re.match(r"^\s*\[", line):
                if seen == index:
                    break  # past the wanted table
                if header.match(line):
                    seen += 1
                    number = n
                continue
            if seen == index and key is not None and re.match(rf"^\s*{re.escape(key)}\s*=", line):
                return f"{self.source}:{n}"
        return f"{self.source}:{number or 1}"


def _entries(
    data: Mapping[str, Any],
    table: str,
    schema: Mapping[str, bool],
    where: _Locator,
    build: Callable[[dict[str, Any], Callable[[str | None], str]], Any],
) -> list[Any]:
    found = []
    for index, entry in enumerate(data.get(table, [])):

        def place(key: str | None, index: int = index) -> str:
            return f"{where.at(table, index, key)}: [[{table}]] #{index + 1}"

        if not isinstance(entry, dict):
            raise ConfigError(f"{place(None)}: expected a table")
        for key in entry:
            if key not in schema:
                close = difflib.get_close_matches(key, list(schema), n=1)
                hint = f"did you mean {close[0]}?" if close else f"keys: {', '.join(schema)}"
                raise ConfigError(f"{place(key)}: unknown key {key!r}; {hint}")
        for key, required in schema.items():
            if required and key not in entry:
                example = f"{key} = {EXAMPLES[key]}"
                raise ConfigError(f"{place(None)}: {key} is required (e.g. {example})")
        found.append(build(entry, place))
    return found


def _price(entry: dict[str, Any], place: Callable[[str | None], str]) -> Price:
    cached = entry.get("cached_input_per_mtok")
    return Price(
        model=_name(entry, "model", place),
        input_per_mtok=_amount(entry, "input_per_mtok", place),
        output_per_mtok=_amount(entry, "output_per_mtok", place),
        cached_input_per_mtok=None
        if cached is None
        else _amount(entry, "cached_input_per_mtok", place),
        effective_from=_instant(entry, place),
    )


def _hourly(entry: dict[str, Any], place: Callable[[str | None], str]) -> HourlyPrice:
    scopes = [s for s in ("instance", "model") if s in entry]
    if len(scopes) != 1:
        raise ConfigError(
            f'{place(None)}: give exactly one of instance = "gpu-node-1" (one replica) '
            'or model = "..." (every replica serving it)'
        )
    scope: Scope = "instance" if scopes[0] == "instance" else "model"
    effective = _instant(entry, place)
    if effective.minute or effective.second or effective.microsecond:
        raise ConfigError(
            f"{place('effective_from')}: an hourly price starts on a whole hour, "
            f"e.g. {effective.strftime('%Y-%m-%dT%H:00:00Z')}"
        )
    capacity = entry.get("capacity_tokens_per_hour")
    if capacity is not None and (
        isinstance(capacity, bool) or not isinstance(capacity, int) or capacity <= 0
    ):
        raise ConfigError(
            f"{place('capacity_tokens_per_hour')}: expected a positive whole number of tokens"
        )
    weight = entry.get("prompt_weight")
    return HourlyPrice(
        scope=scope,
        target=_name(entry, scopes[0], place),
        usd_per_hour=_amount(entry, "usd_per_hour", place),
        effective_from=effective,
        capacity_tokens_per_hour=capacity,
        prompt_weight=Decimal(1) if weight is None else _amount(entry, "prompt_weight", place),
    )


def _name(entry: dict[str, Any], key: str, place: Callable[[str | None], str]) -> str:
    value = entry[key]
    if not isinstance(value, str) or not value or len(value) > MAX_MODEL:
        raise ConfigError(f"{place(key)}: {key} must be a string of 1 to {MAX_MODEL} characters")
    return value


def _amount(entry: dict[str, Any], key: str, place: Callable[[str | None], str]) -> Decimal:
    value = entry[key]
    fix = f"write a non-negative number, e.g. {key} = {EXAMPLES[key]}"
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f"{place(key)}: {key} = {value!r} is not a number; {fix}")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ConfigError(f"{place(key)}: {key} = {value!r} is not a number; {fix}") from None
    if not amount.is_finite() or amount < 0:
        raise ConfigError(f"{place(key)}: {key} = {value!r}; {fix}")
    return amount


def _instant(entry: dict[str, Any], place: Callable[[str | None], str]) -> datetime:
    return parse_instant(entry["effective_from"], f"{place('effective_from')}: effective_from")


def _no_duplicates(
    prices: tuple[Price, ...], hourly: tuple[HourlyPrice, ...], where: _Locator
) -> None:
    seen: set[str] = set()
    for kind, keys in (("price", [p.key for p in prices]), ("hourly", [h.key for h in hourly])):
        for index, key in enumerate(keys):
            if key in seen:
                raise ConfigError(
                    f"{where.at(kind, index, None)}: [[{kind}]] #{index + 1} repeats {key}; "
                    "keep one price per model (or instance) and effective_from"
                )
            seen.add(key)

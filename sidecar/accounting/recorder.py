"""Turns a finished stream into metrics and a ledger row: the one place where counts, prices
and outcomes meet. Runs on the event loop but never waits: the ledger writer has a queue."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sidecar.accounting.pricing import PriceBook
from sidecar.accounting.stream import Outcome, StreamAccount
from sidecar.ledger.models import NANO
from sidecar.ledger.pricecolumns import price_columns
from sidecar.ledger.writer import Row
from sidecar.logs import log_access
from sidecar.telemetry.metrics import Metrics
from sidecar.telemetry.names import INGRESSES, OTHER_ROUTE, ROUTE_LABELS


def utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class Recorder:
    def __init__(
        self,
        metrics: Metrics,
        submit: Callable[[Row], None],
        prices: PriceBook,
        instance_id: str,
        wall_clock: Callable[[], float],
        access_log: Callable[[dict[str, Any]], None] | None = log_access,
        journal_only: Callable[[Row], None] | None = None,
    ) -> None:
        """`access_log` takes each finished stream's access-log fields (`serve` passes a
        batching `sidecar.logs.AccessLog`; None for `--no-access-log`). `journal_only` writes
        a row to the crash journal without queueing it (`Journal.note`): start rows then
        reach the database only for streams still running after a second."""
        self.journal_only = journal_only
        # Running streams whose start row is only in the journal (see `started`).
        self._journaled_only: set[str] = set()
        self.metrics = metrics
        self.access_log = access_log
        self.submit = submit
        self.prices = prices
        self.instance_id = instance_id
        self.wall_clock = wall_clock
        self.running: dict[str, StreamAccount] = {}
        # Per running stream: its counts when its last row was written (see `checkpoint_all`).
        self._written_marks: dict[str, tuple[int, int, int | None, int | None]] = {}
        # Per stream whose end is on its way to the client: the final row already journaled
        # (`completed_ahead`) and what it was computed from.
        self._ahead: dict[str, tuple[tuple[Any, ...] | None, dict[str, Any]]] = {}
        # Per model: tokens per upstream delta, learned from completed streams with usage.
        self.tokens_per_delta: dict[str, float] = {}
        self._series: dict[tuple[str, str, str], _Series] = {}
        # (path, ingress) → route streams counter, then its token counters by kind. Paths and
        # ingresses are the sidecar's own (a few), so this stays small.
        self._routes: dict[tuple[str, str], tuple[Any, ...]] = {}

    def stream_row(self, account: StreamAccount, now_mono: float | None = None) -> dict[str, Any]:
        """The ledger row for a stream, final or a checkpoint of a running one."""
        started = utc(account.started_at)
        price = self.prices.price_at(account.model, started)
        prompt, generated, delivered = (
            account.prompt_tokens,
            account.generated_tokens,
            account.delivered_tokens,
        )
        wasted = max(0, generated - delivered)  # `account.wasted_tokens`, without recounting
        row: dict[str, Any] = {
            "id": account.stream_id,
            "session_id": account.session_id,
            "instance_id": self.instance_id,
            "request_id": account.request_id,
            "model": account.model,
            "tenant": account.tenant,
            "ingress": account.ingress,
            "path": account.path,
            "started_at": started,
            "ended_at": None,
            "outcome": None if account.outcome is None else account.outcome.value,
            "finish_reason": account.finish_reason,
            "error_code": account.error_code,
            "count_source": account.count_source.value,
            "prompt_tokens": prompt,
            "generated_tokens": generated,
            "delivered_tokens": delivered,
            "wasted_tokens": wasted,
            "ttft_s": account.time_to_first_token,
            "duration_s": account.duration,
            "trace_id": account.trace_id,
            **price_columns(price, prompt, generated, delivered, wasted),
        }
        if account.t_end is not None and now_mono is not None:
            row["ended_at"] = utc(self.wall_clock() - (now_mono - account.t_end))
        return row

    def started(self, account: StreamAccount) -> None:
        """Record the start durably, so that a crash leaves no started stream unaccounted.
        With `journal_only` the row goes to the crash journal alone: most streams end within
        a second, and their final row is then the only one the database sees."""
        account.tokens_per_delta_hint = self.tokens_per_delta.get(account.model)
        self.running[account.stream_id] = account
        if self.journal_only is None:
            self.checkpoint(account)
            return
        self._written_marks[account.stream_id] = _mark(account)
        self.journal_only(Row("streams", self.stream_row(account), final=False))
        self._journaled_only.add(account.stream_id)

    def submit_journaled(self) -> None:
        """Queue every start row that is only in the journal (its segment is about to go)."""
        for stream_id in list(self._journaled_only):
            self.checkpoint(self.running[stream_id])

    def checkpoint_all(
        self, now_mono: float, min_age: float = 1.0, part: int = 0, parts: int = 1
    ) -> int:
        """Called about once a second (or `parts` times, one part each): the counts so far of
        running streams that changed since their last row. Streams younger than `min_age` are
        left to their start row, and so are idle ones: building rows for them would only cost
        the event loop time. Returns how many rows were submitted."""
        submitted = 0
        for stream_id, account in self.running.items():
            if now_mono - account.t_start < min_age or hash(stream_id) % parts != part:
                continue
            mark = _mark(account)
            if self._written_marks.get(stream_id) != mark or stream_id in self._journaled_only:
                self.checkpoint(account)
                submitted += 1
        return submitted

    def finished(self, account: StreamAccount, now_mono: float) -> None:
        stream_id = account.stream_id
        self.running.pop(stream_id, None)
        self._written_marks.pop(stream_id, None)
        self._journaled_only.discard(stream_id)
        ahead = self._ahead.pop(stream_id, None)
        self._learn(account)
        if ahead is not None and ahead[0] is not None and ahead[0] == _final_key(account):
            # The row written ahead is this one (its end time is when the end was handed to
            # the client's socket, a moment ago): a second copy would only cost a journal
            # write and a database upsert per stream.
            row = ahead[1]
        else:
            row = self.stream_row(account, now_mono)
            self.submit(Row("streams", row))
        self._count(account, row)
        if self.access_log is not None:
            self.access_log(access_fields(row))

    def submit_session(self, values: dict[str, Any]) -> None:
        row = dict(values)
        for key in ("started_at", "ended_at"):
            if isinstance(row.get(key), float):
                row[key] = utc(row[key])
        self.submit(Row("sessions", row))

    def completed_ahead(self, account: StreamAccount, now_mono: float) -> None:
        """The upstream finished and its end is about to be written to the client: the final
        row as it will be if that write succeeds goes first, so a crash between the two cannot
        turn a finished answer into `interrupted`. If the write fails instead, the stream's
        real final row (e.g. `client_gone`) replaces this one."""
        # The account as it will be, for the moment of building its row (a copy of its ~40
        # fields would cost more than the row).
        was = account.outcome, account.t_end, account.written
        account.outcome, account.t_end, account.written = (
            Outcome.COMPLETED,
            now_mono,
            account.deltas,
        )
        try:
            row = self.stream_row(account, now_mono)
            key = _final_key(account)
        finally:
            account.outcome, account.t_end, account.written = was
        self.submit(Row("streams", row))
        self._ahead[account.stream_id] = (key, row)

    def checkpoint(self, account: StreamAccount) -> None:
        self._journaled_only.discard(account.stream_id)
        self._written_marks[account.stream_id] = _mark(account)
        self.submit(Row("streams", self.stream_row(account), final=False))

    def _learn(self, account: StreamAccount) -> None:
        """Streams cut short rarely get a usage report; completed ones teach how many tokens
        this model packs into a delta, so cut streams can be estimated instead of counted."""
        if account.usage_completion is None or account.deltas < 8:
            return
        sample = account.usage_completion / account.deltas
        previous = self.tokens_per_delta.get(account.model, sample)
        self.tokens_per_delta[account.model] = 0.9 * previous + 0.1 * sample

    def _count(self, account: StreamAccount, row: dict[str, Any]) -> None:
        outcome = row["outcome"]
        tenant = self.metrics.tenant(account.tenant)  # also counts the stream for the label
        model = self.metrics.model(account.model, answered=account.deltas > 0)
        series = self._series.get((model, tenant, outcome))
        if series is None:
            series = self._series_for(model, tenant, outcome)
        series.streams.inc()
        counts = [row[key] for key in TOKEN_COLUMNS]
        for counter, count in zip(series.tokens, counts, strict=True):
            if count:  # a child exists from `labels()`: adding 0 changes nothing
                counter.inc(count)
        if row["price_key"] is None:
            series.unpriced.inc()
        else:
            if series.cost is None:  # created on the first priced stream, never for unpriced
                series.cost = self._cost_children(model, tenant)
            prompt, generated, wasted, delivered = series.cost
            prompt.inc(row["prompt_cost_nusd"] / NANO)
            generated.inc(row["generated_cost_nusd"] / NANO)
            wasted.inc(row["wasted_cost_nusd"] / NANO)
            delivered.inc((row["generated_cost_nusd"] - row["wasted_cost_nusd"]) / NANO)
        if account.duration is not None:
            series.duration.observe(account.duration)
        key = (account.path, account.ingress)
        route = self._routes.get(key)
        if route is None:
            route = self._routes[key] = self._route_series(*key)
        route[0].inc()
        for counter, count in zip(route[1:], counts, strict=True):
            if count:
                counter.inc(count)

    def _route_series(self, path: str, ingress: str) -> tuple[Any, ...]:
        """The route's children; both labels come from fixed sets (bounded)."""
        m = self.metrics
        route = ROUTE_LABELS.get(path, OTHER_ROUTE)
        ingress = ingress if ingress in INGRESSES else OTHER_ROUTE
        tokens = (m.route_tokens.labels(route, ingress, kind) for kind in TOKEN_KINDS)
        return (m.route_streams.labels(route, ingress), *tokens)

    def _cost_children(self, model: str, label: str) -> tuple[Any, ...]:
        return tuple(self.metrics.cost.labels(model, label, kind) for kind in COST_KINDS)

    def _series_for(self, model: str, label: str, outcome: str) -> _Series:
        """The labelled children for one (model, tenant label, outcome), looked up once:
        `labels()` costs several µs per call and a stream's end touches ten of them."""
        m = self.metrics
        series = _Series(
            streams=m.streams.labels(model, label, outcome),
            tokens=tuple(m.tokens.labels(model, label, kind) for kind in TOKEN_KINDS),
            cost=None,
            unpriced=m.unpriced.labels(model),
            duration=m.duration.labels(model, outcome),
        )
        if len(self._series) < MAX_CACHED_SERIES:
            self._series[(model, label, outcome)] = series
        return series


TOKEN_KINDS = ("prompt", "generated", "delivered", "wasted")
TOKEN_COLUMNS = tuple(f"{kind}_tokens" for kind in TOKEN_KINDS)
COST_KINDS = ("prompt", "generated", "wasted", "delivered")
MAX_CACHED_SERIES = 10_000


@dataclass(slots=True)
class _Series:
    streams: Any
    tokens: tuple[Any, ...]
    cost: tuple[Any, ...] | None  # None until the first priced stream of the series
    unpriced: Any
    duration: Any


ACCESS_FIELDS = (
    "id",
    "session_id",
    "request_id",
    "trace_id",
    "ingress",
    "path",
    "model",
    "tenant",
    "outcome",
    "finish_reason",
    "error_code",
    "prompt_tokens",
    "generated_tokens",
    "delivered_tokens",
    "wasted_tokens",
    "ttft_s",
    "duration_s",
)


def access_fields(row: dict[str, Any]) -> dict[str, Any]:
    """The access log's fields, from the stream's final ledger row (no text, only counts)."""
    fields = {"event": "stream_end", "stream_id": row["id"]}
    fields.update({key: row[key] for key in ACCESS_FIELDS[1:]})
    for key in ("ttft_s", "duration_s"):
        if fields[key] is not None:
            fields[key] = round(fields[key], 6)
    return fields


def _final_key(account: StreamAccount) -> tuple[Any, ...] | None:
    """What a completed stream's final row depends on besides its times; None otherwise (only
    a completed end is written ahead)."""
    if account.outcome is not Outcome.COMPLETED:
        return None
    return (
        account.finish_reason,
        account.error_code,
        account.usage_prompt,
        account.usage_completion,
        account.deltas,
        account.written - account.unsent,
        account.tokens_per_delta_hint,
    )


def _mark(account: StreamAccount) -> tuple[int, int, int | None, int | None]:
    """What a checkpoint row's counts depend on, as they move while a stream runs."""
    return (account.deltas, account.written, account.acked, account.usage_completion)

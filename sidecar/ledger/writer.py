"""Batched ledger writer on its own thread: the relay only enqueues, it never awaits storage.

Rows are upserts keyed by id, so writing one twice is harmless: that makes checkpoints, final
rows and spool replays idempotent. Each final stream row marks its hour's rollup stale in the
same transaction (`ledger/rollup.py`), so rollups count it once, at its final state.

When the database fails, each batch is appended to a local spool file (fsynced) and replayed,
in order, once the database answers again.

A database that is unreachable is an outage: wait and retry. A database that refuses a row
(a value it cannot store) is not: retrying would block every row behind it forever. Such a
batch is written again row by row; the rows it refuses go to a dead-letter file beside the
spool, with the error, and everything else lands (`ledger/failures.py` tells the two apart).
Every text value is bounded and cleaned (`ledger/text.py`) before the driver sees it.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import orjson
from sqlalchemy import Dialect, Engine, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from sidecar.ledger.failures import is_bad_row
from sidecar.ledger.models import Alert, Session, Stream
from sidecar.ledger.rollup import mark_stale, marks_of
from sidecar.ledger.text import bounded, string_limits

if TYPE_CHECKING:
    from sidecar.telemetry.metrics import Metrics

log = logging.getLogger("sidecar.ledger")

TableName = Literal["streams", "sessions", "alerts"]
TABLES: dict[str, Table] = {
    "streams": Stream.__table__,  # type: ignore[dict-item]
    "sessions": Session.__table__,  # type: ignore[dict-item]
    "alerts": Alert.__table__,  # type: ignore[dict-item]
}
DATETIME_COLUMNS = {
    name: {c.name for c in table.columns if c.type.python_type is datetime}
    for name, table in TABLES.items()
}


@dataclass(frozen=True, slots=True)
class Row:
    table: TableName
    values: dict[str, Any]
    final: bool = True  # a checkpoint never overwrites a row that already has an outcome


@dataclass(frozen=True, slots=True)
class Barrier:
    """Queued behind rows: `then()` runs on the writer thread once every row queued before it
    is in the database or the spool (the crash journal deletes a segment this way)."""

    then: Callable[[], None]


def row_line(row: Row) -> bytes:
    """A row as one line of the spool, the dead-letter file and the crash journal."""
    return _dumps({"t": row.table, "f": row.final, "v": row.values}) + b"\n"


@dataclass(slots=True)
class WriterStats:
    written: int = 0
    spooled: int = 0
    errors: int = 0
    dead_letters: int = 0  # rows the database refused, set aside in the dead-letter file


class _Refused(Exception):
    """The database refused a row of the batch (not an outage): write it row by row."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


class LedgerWriter:
    def __init__(
        self,
        engine: Engine,
        spool_path: Path,
        *,
        batch_size: int = 500,
        flush_interval: float = 0.2,
        retry_interval: float = 1.0,
        max_queue: int = 50_000,
        on_change: Callable[[LedgerWriter], None] | None = None,
    ) -> None:
        self.engine = engine
        self.spool_path = spool_path
        self.dead_letter_path = dead_letter_path_for(spool_path)
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.retry_interval = retry_interval
        self.max_queue = max_queue  # rows in memory before the backlog goes to the spool
        self.stats = WriterStats()
        self._queue: queue.SimpleQueue[Row | Barrier | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._on_change = on_change or (lambda _writer: None)
        self._spooled_rows = self._count_spool()
        self._next_retry = 0.0
        self._idle = threading.Event()
        self._closing = threading.Event()

    # Called from the event loop -------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def replay_now(self) -> None:
        """Before `start()`: write what a previous run left in the spool, if the database is up."""
        if self._spooled_rows:
            self._replay_spool()
            self._on_change(self)

    def submit(self, row: Row | Barrier) -> None:
        """Never blocks: the queue is drained by the writer thread."""
        self._idle.clear()
        self._queue.put(row)

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    @property
    def spooled_rows(self) -> int:
        return self._spooled_rows

    def health(self) -> str | None:
        """Why the ledger is degraded, or None: rows wait in the spool (the database is
        unreachable), or rows the database refused wait in the dead-letter file for an operator
        (who clears this by moving the file away once handled)."""
        if self._spooled_rows:
            return "ledger_spooling"
        if self.dead_letter_path.exists():
            return "ledger_dead_letters"
        return None

    def close(self, timeout: float = 30.0) -> None:
        """Flush everything (to the database or the spool) and stop the thread."""
        if self._thread.is_alive():
            self._closing.set()
            self._queue.put(None)
            self._thread.join(timeout)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """For tests and drains: wait until every submitted row has been handled."""
        return self._idle.wait(timeout)

    # Writer thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch, barriers, stopping = self._collect()
            if self._spooled_rows and time.monotonic() >= self._next_retry:
                self._replay_spool()
            if batch:
                if self._spooled_rows:
                    self._spool(batch)  # keep order: older spooled rows go first
                else:
                    unwritten = self._write_isolating(batch)
                    if unwritten:
                        self._spool(unwritten)
            _run_barriers(barriers)
            if self._queue.qsize() > self.max_queue:
                stopping = self._spill() or stopping
            if self._queue.empty():
                self._idle.set()
            self._on_change(self)
        if self._spooled_rows:
            self._replay_spool()
        self._on_change(self)

    def _spill(self) -> bool:
        """The database is up but slower than the traffic: move the backlog to the spool (an
        append, no SQL) so memory stays bounded; it is replayed like after an outage."""
        backlog: list[Row] = []
        barriers: list[Barrier] = []
        stopping = False
        while True:
            try:
                row = self._queue.get_nowait()
            except queue.Empty:
                break
            if row is None:
                stopping = True
                break
            if isinstance(row, Barrier):
                barriers.append(row)
            else:
                backlog.append(row)
        if backlog:
            log.warning("ledger backlog of %d rows spilled to %s", len(backlog), self.spool_path)
            self._spool(backlog)
            self._next_retry = time.monotonic() + self.retry_interval
        _run_barriers(barriers)
        return stopping

    def _collect(self) -> tuple[list[Row], list[Barrier], bool]:
        """Sleep until a row arrives, let the rest of the flush interval's rows queue up, then
        drain them (and the barriers among them). Blocking in `get()` for each row would wake
        this thread once per row, and every wake takes the GIL from the event loop in the
        middle of relaying."""
        try:
            first = self._queue.get(timeout=self.flush_interval)
        except queue.Empty:
            return [], [], False
        if first is None:
            return [], [], True
        if self._queue.qsize() < self.batch_size:
            self._closing.wait(self.flush_interval)
        batch: list[Row] = []
        barriers: list[Barrier] = []
        item: Row | Barrier | None = first
        while True:
            if item is None:
                return batch, barriers, True
            if isinstance(item, Barrier):
                barriers.append(item)
            else:
                batch.append(item)
            if len(batch) >= self.batch_size:
                return batch, barriers, False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch, barriers, False

    def _write_isolating(self, batch: list[Row]) -> list[Row]:
        """Write `batch`; a row the database refuses goes to the dead-letter file and the rest
        land. Returns the rows left unwritten by an outage (to spool), in order."""
        try:
            if self._write(batch):
                return []
            return batch
        except _Refused:
            pass
        for index, row in enumerate(batch):  # one transaction per row, to find the bad ones
            try:
                if not self._write([row]):
                    return batch[index:]
            except _Refused as refused:
                self._dead_letter(row, refused.cause)
        return []

    def _write(self, batch: list[Row]) -> bool:
        """True when written, False on an outage (retry later); raises `_Refused` when the
        database refused the data itself."""
        try:
            with self.engine.begin() as connection:
                finished: list[dict[str, Any]] = []
                for table_name, final, values in _group(batch):
                    upsert = _prepared(self.engine.dialect, table_name, final)
                    connection.exec_driver_sql(upsert.sql, upsert.parameters(values))
                    if table_name == "streams":
                        finished += values if final else [v for v in values if v.get("outcome")]
                # Last, so the mark rows stay locked only for the commit (ledger/rollup.py).
                mark_stale(connection, marks_of(finished))
        except (SQLAlchemyError, ValueError, TypeError, OverflowError, UnicodeError) as exc:
            self.stats.errors += 1
            if is_bad_row(exc):
                raise _Refused(exc) from exc
            self._next_retry = time.monotonic() + self.retry_interval
            if not self._spooled_rows:  # once per outage, not once per retry
                log.warning(
                    "ledger unreachable, spooling to %s: %s", self.spool_path, _first_line(exc)
                )
            return False
        self.stats.written += len(batch)
        return True

    def _spool(self, batch: list[Row]) -> None:
        lines = b"".join(row_line(r) for r in batch)
        with self.spool_path.open("ab") as spool:
            spool.write(lines)
            spool.flush()
            _fsync(spool.fileno())
        self._spooled_rows += len(batch)
        self.stats.spooled += len(batch)

    def _dead_letter(self, row: Row, exc: Exception) -> None:
        """Set a refused row aside, with why, for an operator; never retried automatically."""
        line = _dumps(
            {
                "t": row.table,
                "f": row.final,
                "v": row.values,
                "error": f"{type(exc).__name__}: {_first_line(exc)}",
                "at": datetime.now(UTC),
            }
        )
        with self.dead_letter_path.open("ab") as dead:
            dead.write(line + b"\n")
            dead.flush()
            _fsync(dead.fileno())
        self.stats.dead_letters += 1
        log.warning(
            "ledger refused a %s row (%s); set aside in %s",
            row.table,
            _first_line(exc),
            self.dead_letter_path,
        )

    def _replay_spool(self) -> None:
        rows = list(read_spool(self.spool_path))
        for start in range(0, len(rows), self.batch_size):
            if self._write_isolating(rows[start : start + self.batch_size]):
                # Rows already written stay written; upserts make their replay harmless.
                return
        self.spool_path.unlink(missing_ok=True)
        self._spooled_rows = 0
        log.warning("ledger reachable again: %d spooled rows written", len(rows))

    def _count_spool(self) -> int:
        if not self.spool_path.exists():
            return 0
        with self.spool_path.open("rb") as spool:
            return sum(1 for line in spool if line.strip())


class LedgerGauges:
    """`on_change` for a writer: its state on the ledger metrics (called on the writer thread;
    prometheus_client's metrics are thread-safe)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._errors = self._dead = 0

    def __call__(self, writer: LedgerWriter) -> None:
        m, stats = self.metrics, writer.stats
        m.ledger_queue_depth.set(writer.depth)
        m.ledger_spooled_rows.set(writer.spooled_rows)
        if stats.errors > self._errors:
            m.ledger_write_errors.inc(stats.errors - self._errors)
            self._errors = stats.errors
        if stats.dead_letters > self._dead:
            m.ledger_dead_letter_rows.inc(stats.dead_letters - self._dead)
            self._dead = stats.dead_letters


def _run_barriers(barriers: list[Barrier]) -> None:
    for barrier in barriers:
        try:
            barrier.then()
        except OSError as exc:  # a journal segment someone removed: nothing to do
            log.warning("ledger barrier failed: %s", exc)


def dead_letter_path_for(spool_path: Path) -> Path:
    """Beside the spool: `sidecar-spool-X.jsonl` → `sidecar-spool-X.dead-letter.jsonl`."""
    return spool_path.with_name(f"{spool_path.stem}.dead-letter{spool_path.suffix or '.jsonl'}")


def read_spool(path: Path) -> list[Row]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_bytes().splitlines():
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # a torn last line from a crash mid-write: its batch was never acknowledged
        table = item["t"]
        values = item["v"]
        for column in DATETIME_COLUMNS[table]:
            if isinstance(values.get(column), str):
                values[column] = datetime.fromisoformat(values[column])
        rows.append(Row(table, values, item["f"]))
    return rows


def _group(batch: list[Row]) -> list[tuple[str, bool, list[dict[str, Any]]]]:
    """One executemany per table and kind, checkpoints first; later rows win.

    A checkpoint whose stream also has a final row in this batch is dropped: the final row
    replaces all of it, in the same transaction. A short stream's start row and final row
    usually share a batch, and alternating kinds used to cost an executemany each.
    """
    groups: dict[tuple[str, bool], dict[str, dict[str, Any]]] = {}
    for row in batch:
        groups.setdefault((row.table, row.final), {})[row.values["id"]] = row.values
    merged = []
    for (table_name, final), by_id in sorted(groups.items(), key=lambda item: item[0][1]):
        if not final:
            superseded = groups.get((table_name, True), {})
            by_id = {key: values for key, values in by_id.items() if key not in superseded}
        if by_id:
            merged.append((table_name, final, list(by_id.values())))
    return merged


@functools.lru_cache(maxsize=16)
def _upsert_for(dialect_name: str, table_name: str, final: bool) -> Any:
    """The upsert as an SQL expression, built once per (dialect, table, kind)."""
    table = TABLES[table_name]
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    insert = dialect.insert(table)
    columns = {c.name: insert.excluded[c.name] for c in table.columns if c.name != "id"}
    where = None if final or table_name != "streams" else table.c.outcome.is_(None)
    return insert.on_conflict_do_update(index_elements=["id"], set_=columns, where=where)


@dataclass(frozen=True, slots=True)
class _Prepared:
    """An upsert compiled once to the driver's SQL, and how to turn rows into its parameters.

    Rows go to the driver's `executemany` as they are, with only the type conversions the
    dialect itself would apply (SQLite stores datetimes as text). Going through SQLAlchemy's
    per-row parameter processing cost several times more GIL time on the writer thread, and
    the event loop waits for the GIL while the writer holds it.
    """

    sql: str
    names: tuple[str, ...]
    fields: tuple[tuple[str, Any], ...]  # (name, default) in parameter order
    convert: tuple[tuple[int, Callable[[Any], Any]], ...]
    positional: bool
    limits: tuple[tuple[int, int], ...]  # (index, length) of each bounded text column

    def parameters(self, rows: list[dict[str, Any]]) -> list[Any]:
        out: list[Any] = []
        for row in rows:
            params = [row.get(name, default) for name, default in self.fields]
            for index, limit in self.limits:
                value = params[index]  # the test is `bounded`'s fast path, without the call
                if value.__class__ is str and (len(value) > limit or not value.isprintable()):
                    params[index] = bounded(value, limit)
            for index, convert in self.convert:
                if params[index] is not None:
                    params[index] = convert(params[index])
            out.append(
                tuple(params) if self.positional else dict(zip(self.names, params, strict=True))
            )
        return out


@functools.lru_cache(maxsize=16)
def _prepared(dialect: Dialect, table_name: str, final: bool) -> _Prepared:
    compiled = _upsert_for(dialect.name, table_name, final).compile(dialect=dialect)
    names = tuple(compiled.positiontup or ()) if dialect.positional else tuple(compiled.params)
    columns = TABLES[table_name].columns
    defaults, convert = [], []
    for index, name in enumerate(names):
        column = columns[name]
        default = column.default
        defaults.append(default.arg if default is not None and default.is_scalar else None)
        processor = column.type.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None:
            convert.append((index, processor))
    fields = tuple(zip(names, defaults, strict=True))
    lengths = string_limits(TABLES[table_name])
    limits = tuple((i, lengths[name]) for i, name in enumerate(names) if name in lengths)
    return _Prepared(compiled.string, names, fields, tuple(convert), dialect.positional, limits)


def _dumps(item: dict[str, Any]) -> bytes:
    """One JSON line; the standard library takes what orjson refuses (an int beyond 64 bits
    from a hostile upstream), so that spooling or setting a row aside never fails."""
    try:
        return orjson.dumps(item)
    except TypeError:
        return json.dumps(item, default=str, ensure_ascii=False).encode("utf-8", "replace")


def _fsync(fd: int) -> None:
    os.fsync(fd)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:200]

"""The ledger's crash journal: every row is appended here, on the event loop, before it is
queued for the database, so a SIGKILL loses nothing (DESIGN §5: no started stream
unaccounted). A power cut may still lose the page cache's last seconds: the journal is not
fsynced, which would cost milliseconds per stream.

A segment is a memory-mapped file: appending a row is a copy into the page cache, with no
system call. A `write()` per row released the GIL each time, and the ledger writer thread took
it for up to a switch interval: measured, that was 5 % of the relay's CPU per request and most
of a millisecond of its time to first token (docs/benchmarks.md). Pages written through a
shared mapping belong to the kernel, so they survive the process's death like written bytes.

A row may also be journaled without being queued (`note`): a stream's start row is, so that a
stream shorter than a second costs the database one row, its final one. Such rows are queued
when the stream has run a second (`Recorder.checkpoint_all`) or when their segment is full.

The journal is a series of segment files in the spool directory. When the current one is full
it is closed and a barrier goes into the writer's queue behind its rows; once the writer has put
every row before the barrier in the database or its spool, the segment is deleted. On the next
start, segments left by a killed run are appended to the spool and replayed with it, before the
run's open streams are closed as `interrupted`: finished streams keep their final rows.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from collections.abc import Callable
from pathlib import Path

from sidecar.ledger.writer import Barrier, Row, row_line

SEGMENT_BYTES = 4 * 1024 * 1024


class Journal:
    def __init__(
        self,
        directory: Path,
        stem: str,
        queue: Callable[[Row | Barrier], None],
        segment_bytes: int = SEGMENT_BYTES,
    ) -> None:
        self.directory = directory
        self.stem = stem
        self._queue = queue
        self.segment_bytes = segment_bytes
        self._number = max((_number(p) for p in segments(directory, stem)), default=0)
        self._fd = -1
        self._map: mmap.mmap | None = None
        self._size = 0  # bytes of rows in the current segment (the rest of its file is zeros)
        self._rotating = False
        # Called when a segment is full, before it may be deleted: rows only `note`d in it
        # must be submitted then (they land in the new segment and reach the database first).
        self.on_rotate: Callable[[], None] | None = None
        self._open()

    def submit(self, row: Row) -> None:
        """Journal the row, then queue it for the database: the `Recorder`'s submit."""
        self.note(row)
        self._queue(row)

    def note(self, row: Row) -> None:
        """Journal the row only: its owner queues it later (`on_rotate` at the latest) or
        replaces it (a short stream's start row, superseded by its final row)."""
        line = row_line(row)
        end = self._size + len(line)
        mapping = self._mapping()
        if end > len(mapping):
            if not self._rotating:
                self._rotate()  # its hook may journal rows into the new segment first
                end = self._size + len(line)
            if end > len(self._mapping()):  # a huge row, or rows re-noted while rotating
                self._grow(end)
            mapping = self._mapping()
        mapping[self._size : end] = line
        self._size = end

    def close(self) -> None:
        """After the writer has stopped (everything is in the database or the spool)."""
        self._unmap()
        for path in segments(self.directory, self.stem):
            path.unlink(missing_ok=True)

    def _mapping(self) -> mmap.mmap:
        if self._map is None:
            raise RuntimeError("the crash journal is closed")
        return self._map

    def _open(self) -> None:
        self._number += 1
        path = segment_path(self.directory, self.stem, self._number)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.ftruncate(self._fd, self.segment_bytes)
        self._map = mmap.mmap(self._fd, self.segment_bytes)
        self._size = 0

    def _grow(self, end: int) -> None:
        size = max(end, 2 * len(self._mapping()))
        os.ftruncate(self._fd, size)
        self._mapping().resize(size)

    def _unmap(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _rotate(self) -> None:
        done = segment_path(self.directory, self.stem, self._number)
        self._unmap()
        self._open()
        if self.on_rotate is not None:
            self._rotating = True
            try:
                self.on_rotate()
            finally:
                self._rotating = False
        self._queue(Barrier(lambda: done.unlink(missing_ok=True)))


def segment_path(directory: Path, stem: str, number: int) -> Path:
    return directory / f"{stem}.journal.{number:06d}"


def segments(directory: Path, stem: str) -> list[Path]:
    return sorted(directory.glob(f"{stem}.journal.[0-9]*"), key=_number)


def absorb(directory: Path, stem: str, spool: Path) -> int:
    """A killed run's segments go to the end of the spool (replayed with it; upserts by id make
    a row that also reached the database harmless). Returns the bytes moved."""
    moved = 0
    for path in segments(directory, stem):
        data = path.read_bytes().rstrip(b"\0")  # a segment's unwritten end is zeros
        if data and not data.endswith(b"\n"):  # a line cut by the kill: never complete
            data = data[: data.rfind(b"\n") + 1]
        if data:
            with spool.open("ab") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            moved += len(data)
        path.unlink()
    return moved


def _number(path: Path) -> int:
    with contextlib.suppress(ValueError):
        return int(path.name.rsplit(".", 1)[-1])
    return 0

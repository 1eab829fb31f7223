"""A write-ahead journal of trade events: durable before the caller is told "won".

A bid server must not acknowledge a trade that a `kill -9` could make it forget.
The auction hands each encoded trade event to `Journal.append`, which only queues
it (a lock and a list append, never I/O) and returns a Future. One writer thread
commits in groups: it takes everything appended since its last write, writes it
with one `os.write` to a file opened O_DSYNC (the write returns once the data is
on disk: one system call, so one wait for the GIL after it rather than two),
then resolves the group's one Future.
Records that arrive during a sync form the next group, so one sync covers many
trades under load. A sync window (say 1 ms) bounds the syncs per second: the
writer starts a sync at most once per window, so a busy server makes fewer,
bigger syncs. On a virtual machine every sync is work for the host too: at a
few thousand syncs a second the host took CPU time from the bid server's own
core (steal time, and 10 ms stalls in bench.settlement), and at one per
millisecond it did not. An idle journal syncs at once.

After a crash the server replays the journal into its SQL ledger and then
releases what the ledger holds, which deletes old segment files.

On disk: files `journal-<first seq, 20 digits>.log`, each a run of records with
a header (payload length, crc32 over the length, seq and payload, seq) and the
payload. A new segment starts after a group that filled the current one, and
with each process (the first write after opening).
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path

log = logging.getLogger("attnx.journal")

HEADER = struct.Struct("<IIQ")  # payload length, crc32(length + seq + payload), seq
LENGTH_SEQ = struct.Struct("<IQ")  # what the CRC covers besides the payload

Sink = Callable[[list[tuple[int, bytes]]], None]


class JournalCorrupt(Exception):
    """Damage that a crash mid-write cannot explain (the message names file and offset)."""


class JournalClosed(RuntimeError):
    """Append after close(), or after a failed write."""


class Journal:
    """An append-only, group-committed record log in one directory."""

    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes: int = 64 * 2**20,
        sink: Sink | None = None,
        sync_window_s: float = 0.0,
    ) -> None:
        """Open (creating if needed) `directory`; repair a torn tail and find the last seq.

        Damage in the newest segment other than a torn tail raises JournalCorrupt here.
        """
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self.sync_window_s = sync_window_s  # at most one sync started per window
        self._sink = sink
        self.journal_id = self._load_id()
        self.last_seq = 0
        if segments := self._segments():
            first, path = segments[-1]
            records = _read(path, first, repair=True)
            self.last_seq = max((seq for seq, _ in records), default=first - 1)
        self._cond = threading.Condition(threading.Lock())
        self._pending: list[bytes] = []
        self._future: Future[int] = Future()
        self._closed = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._fd: int | None = None
        self._size = 0
        self._last_sync = -math.inf  # time.monotonic() when the last sync started

    def replay(self, after_seq: int = 0) -> Iterator[tuple[int, bytes]]:
        """Yield (seq, record) with seq > after_seq in order; any damage raises JournalCorrupt.

        Call before start(). (A torn tail was already truncated, with a warning, on opening.)
        """
        if self._thread is not None:
            raise RuntimeError("replay() must be called before start()")
        segments = [*self._segments(), (self.last_seq + 1, None)]
        for (first, path), (next_first, _) in itertools.pairwise(segments):
            if next_first - 1 > after_seq:
                yield from (r for r in _read(path, first, next_first - 1) if r[0] > after_seq)

    def durable_records(self, after_seq: int) -> Iterator[tuple[int, bytes]]:
        """While running: the synced records with seq > after_seq, for a consumer that
        fell behind. Reads complete groups only (up to last_seq when called)."""
        upto = self.last_seq
        segments = self._segments()
        for (first, path), (next_first, _) in itertools.pairwise([*segments, (upto + 1, None)]):
            if next_first - 1 > after_seq and first <= upto:
                yield from (r for r in _read(path, first, stop=upto) if r[0] > after_seq)

    def start(self) -> None:
        """Start the writer thread (daemon, named 'journal-writer')."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="journal-writer", daemon=True)
            self._thread.start()

    def append(self, record: bytes) -> Future[int]:
        """Queue `record`; the Future (shared by its group) gives the group's last seq once
        the group is durable, or the OSError that stopped the journal."""
        with self._cond:
            if self._closed:
                raise JournalClosed(f"journal {self.directory} is closed") from self._error
            self._pending.append(record)
            if len(self._pending) == 1:  # the writer only waits when nothing is pending
                self._cond.notify()
            return self._future

    def release(self, upto_seq: int) -> None:
        """Delete segments whose records are all <= upto_seq, never the newest."""
        for (_, path), (next_first, _) in itertools.pairwise(self._segments()):
            if next_first - 1 > upto_seq:
                break
            path.unlink()

    def close(self) -> None:
        """Write and sync what is pending, resolve its futures, stop the writer. Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is None:
            self._run()  # never started: drain in this thread
        else:
            self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    break
                closed = self._closed
            rest = self._last_sync + self.sync_window_s - time.monotonic()
            if rest > 0 and not closed:
                time.sleep(rest)  # the group keeps filling until the window is over
            with self._cond:
                records, future = self._pending, self._future
                self._pending, self._future = [], Future()
            self._last_sync = time.monotonic()
            try:
                first = self._write(records)
            except Exception as exc:
                self._fail(exc, future)
                break
            if self._sink is not None:
                try:
                    self._sink(list(enumerate(records, first)))
                except Exception:
                    log.exception("journal sink failed on seqs %d..%d", first, self.last_seq)
            future.set_result(self.last_seq)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _write(self, records: list[bytes]) -> int:
        """Write one group (synchronously: O_DSYNC) and return its first seq."""
        first = self.last_seq + 1
        if self._fd is None:
            path = self.directory / f"journal-{first:020d}.log"
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_DSYNC, 0o644)
            self._size = 0  # a file of this name can only be one left empty by a crash
            _fsync_dir(self.directory)
        parts = []
        for seq, record in enumerate(records, first):
            crc = zlib.crc32(record, zlib.crc32(LENGTH_SEQ.pack(len(record), seq)))
            parts += (HEADER.pack(len(record), crc, seq), record)
        data = b"".join(parts)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        self._size += len(data)
        self.last_seq = first + len(records) - 1
        if self._size >= self.segment_bytes:
            os.close(self._fd)
            self._fd = None
        return first

    def _fail(self, exc: Exception, future: Future[int]) -> None:
        """Close for appends and fail the group that broke and any appended after it."""
        log.error("journal write failed, closing %s: %r", self.directory, exc)
        with self._cond:
            self._closed, self._error = True, exc
            self._pending, later = [], self._future
        future.set_exception(exc)
        later.set_exception(exc)

    def _segments(self) -> list[tuple[int, Path]]:
        paths = self.directory.glob("journal-*.log")
        return sorted((int(p.stem.removeprefix("journal-")), p) for p in paths)

    def _load_id(self) -> str:
        path = self.directory / "ID"
        if path.exists():
            return path.read_text().strip()
        journal_id = uuid.uuid4().hex
        tmp = path.with_name("ID.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, journal_id.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(path)
        _fsync_dir(self.directory)
        return journal_id


def _read(
    path: Path,
    first: int,
    last: int | None = None,
    *,
    repair: bool = False,
    stop: int | None = None,
) -> Iterator[tuple[int, bytes]]:
    """Yield the records of one segment, checking CRCs and that seqs run first..last.

    With `repair`, a torn tail (an incomplete last record, or a CRC mismatch in the
    last one) is truncated away with a warning; any other damage raises JournalCorrupt.
    With `stop`, reading ends after that seq (what follows may be a group being written).
    """
    data = path.read_bytes()
    view = memoryview(data)
    pos, seq = 0, first - 1
    while pos < len(data):
        header = data[pos : pos + HEADER.size]
        length, crc, rec_seq = HEADER.unpack(header) if len(header) == HEADER.size else (0, 0, 0)
        end = pos + HEADER.size + length
        if end > len(data):
            problem, torn = "incomplete record", True
        elif (
            zlib.crc32(view[pos + HEADER.size : end], zlib.crc32(LENGTH_SEQ.pack(length, rec_seq)))
            != crc
        ):
            problem, torn = "CRC mismatch", end == len(data)
        elif rec_seq != seq + 1:
            problem, torn = f"seq {rec_seq} where {seq + 1} was expected", False
        else:
            seq = rec_seq
            yield seq, data[pos + HEADER.size : end]
            if seq == stop:
                return
            pos = end
            continue
        if not (repair and torn):
            raise JournalCorrupt(f"{path} at byte {pos}: {problem}")
        log.warning("%s: torn tail at byte %d (%s), truncated", path, pos, problem)
        os.truncate(path, pos)
        return
    if last is not None and seq != last:
        raise JournalCorrupt(f"{path} at byte {pos}: ends at seq {seq}, {last} was expected")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

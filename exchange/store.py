"""The store: one writer thread that keeps the ledger and Admin's campaigns in SQL.
It runs in the settlement process (exchange.settler):

    server's trades ──▶ journal (fsynced in groups; the bid answer waits for it)
                            │ sink, after each sync
                            ▼
    notices, Admin ──▶ bounded queue ──▶ writer thread ──▶ SQLite / PostgreSQL

Trades reach the ledger from the journal: a trade is durable before its bid is
answered, and if the queue is full the writer catches up from the journal files
(a metric and a log line, never a drop). The journal already made trades
durable, so the ledger need not commit at the pace they arrive: the writer
commits at most once per commit interval (say 20 ms), gathering what is queued
meanwhile into one transaction: fewer syncs, bigger batches. A flush, or an idle
writer, commits at once. Notices and campaign saves are awaited
until their transaction commits. Everything else that touches money also runs
here: expiry sweeps void unbilled trades. Budget given back (voids, true-ups, a
retried request's second reservation) is reported through `on_release`.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import orjson

from exchange import ledger
from exchange.db import Database
from exchange.errors import NotFound
from exchange.journal import Journal
from exchange.settlement import Notice, Outcome, Step, Trade, apply, expire

log = logging.getLogger("attnx.store")

BATCH = 256  # queue items per transaction (a trade item is a whole journal group)
EXPIRE_BATCH = 1000  # trades voided per sweep at most
_STOP = object()


class Busy(RuntimeError):
    """The writer's queue is full: the caller should retry shortly."""


def encode_trade(trade: Trade) -> bytes:
    """A won trade as the journal keeps it: a JSON array of what the win fixed, in the
    ledger's column order (compact, and quick to encode on the hot path and to book)."""
    return orjson.dumps(ledger.won_fields(trade))


@dataclass
class Metrics:
    trades: int = 0  # booked
    duplicate_trades: int = 0
    caught_up: int = 0  # trades read back from the journal after a full queue
    queue_full: int = 0  # times a journal group did not fit in the queue
    notices: dict[str, int] = field(default_factory=dict)  # by outcome
    expired: int = 0
    rejected: int = 0  # journal records the ledger could not book (logged in full)


class Store:
    def __init__(
        self,
        db: Database,
        journal: Journal,
        on_release: Callable[[str, int, int], None] = lambda campaign_id, day, micros: None,
        max_queue: int = 10_000,
        sweep_interval_s: float = 1.0,
        commit_interval_s: float = 0.0,
        clock: Callable[[], int] = time.time_ns,
        stream: bool = False,
    ) -> None:
        self.db = db
        self.stream = stream  # trades go to the trade stream; ledger workers book them
        self.journal = journal
        self.on_release = on_release  # (campaign id, day, micros): budget back, writer thread
        self.metrics = Metrics()
        self._clock = clock
        self._sweep_interval_ns = int(sweep_interval_s * 1e9)
        self._commit_interval_s = commit_interval_s
        self._queue: queue.Queue = queue.Queue(max_queue)
        self._behind = False  # a journal group was not queued: read the journal back
        self._releases: list[tuple[str, int, int]] = []  # budget back after the commit
        db.migrate()
        self._conn = db.connect()
        with self._conn.transaction():  # the last seq booked (stream bookers lock its row)
            self._mark = ledger.ensure_journal_mark(self._conn, journal.journal_id)
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)

    @property
    def mark(self) -> int:
        """Every journal record up to this seq is in the ledger."""
        return self._mark

    # -- start-up ---------------------------------------------------------------

    def recover(self) -> int:
        """Book what the journal holds beyond the ledger (after a crash). Before start().
        (With the trade stream, the shipper sends it to the ledger workers instead.)"""
        if self.stream:
            return 0
        records = list(self.journal.replay(self._mark))
        with self._conn.transaction():
            self._book(records)
        self._released()
        if records:
            log.info("recovered %d trades from the journal", len(records))
        return len(records)

    def start(self) -> None:
        self._thread.start()

    # -- from the journal's writer thread ----------------------------------------

    def take_trades(self, records: list[tuple[int, bytes]]) -> None:
        """The journal's sink: a durable group, queued for the ledger without waiting."""
        try:
            self._queue.put_nowait(("trades", records, None))
        except queue.Full:
            self._behind = True
            self.metrics.queue_full += 1
            log.error(
                "ledger queue full (%d items): %d trades stay in the journal until the writer "
                "catches up",
                self._queue.maxsize,
                len(records),
            )

    # -- requests (the settlement process's reader thread) --------------------------

    def submit(self, kind: str, item) -> Future:
        """Queue a request; its future gives the result once committed. Busy if full.

        kind "notice": a settlement.Notice → its Step (NotFound for a trade never made);
        "campaign": (id, JSON body) saved; "flush": nothing, once all before it commit.
        """
        future: Future = Future()
        try:
            self._queue.put_nowait((kind, item, future))
        except queue.Full:
            raise Busy("the ledger is busy: retry shortly") from None
        return future

    def flush(self) -> None:
        """Block until everything queued so far is committed (start-up, shutdown, tests)."""
        future: Future = Future()
        self._queue.put(("flush", None, future))
        future.result()

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        self._conn.close()

    # -- the writer thread --------------------------------------------------------

    def _run(self) -> None:
        next_sweep = self._clock() + self._sweep_interval_ns
        last_commit = -math.inf  # time.monotonic()
        while True:
            timeout = max(next_sweep - self._clock(), 0) / 1e9
            try:
                batch = [self._queue.get(timeout=timeout)]
            except queue.Empty:
                batch = []
            window_end = last_commit + self._commit_interval_s
            while batch and len(batch) < BATCH and not _commits_now(batch[-1]):
                try:
                    rest = window_end - time.monotonic()
                    batch.append(
                        self._queue.get(timeout=rest) if rest > 0 else self._queue.get_nowait()
                    )
                except queue.Empty:
                    break
            last_commit = time.monotonic()
            stop = _STOP in batch
            sweep = self._clock() >= next_sweep
            if sweep:
                next_sweep = self._clock() + self._sweep_interval_ns
            try:
                self._commit([item for item in batch if item is not _STOP], sweep)
            except Exception:  # the database failed as a whole: callers hear it, trades wait
                log.exception("ledger transaction failed")
            if stop:
                return

    def _commit(self, batch: list, sweep: bool) -> None:
        mark = self._mark
        done: list[tuple[Future | None, object, BaseException | None]] = []
        try:
            with self._conn.transaction():
                if self._behind:
                    self._catch_up()
                for kind, item, future in batch:
                    item_mark, releases = self._mark, len(self._releases)
                    try:
                        with self._conn.savepoint():
                            result = self._apply(kind, item)
                    except Exception as exc:  # one bad item must not lose the others
                        if self._mark != item_mark:  # what it booked was rolled back
                            self._mark, self._behind = item_mark, True
                        del self._releases[releases:]
                        if future is None:
                            log.exception("could not book %s", kind)
                        done.append((future, None, exc))
                    else:
                        done.append((future, result, None))
                if sweep:
                    self._expire()
                    if self.stream:
                        self._mark = ledger.advance_stream_mark(
                            self._conn, self.journal.journal_id, self._mark
                        )
        except BaseException as exc:
            self._mark, self._releases, self._behind = mark, [], True  # the journal still has them
            for future, _, _ in done:
                if future is not None:
                    future.set_exception(exc)
            raise
        self._released()  # first: a caller told "voided" finds the budget already back
        for future, result, exc in done:
            if future is None:
                continue
            if exc is None:
                future.set_result(result)
            else:
                future.set_exception(exc)

    def _apply(self, kind: str, item):
        if kind == "trades":
            self._book(item)
        elif kind == "notice":
            return self._notice(item)
        elif kind == "campaign":
            self._conn.execute(
                "INSERT INTO campaigns VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "body = excluded.body, updated_ns = excluded.updated_ns",
                (*item, self._clock()),
            )
        return None

    def _book(self, records: list[tuple[int, bytes]]) -> None:
        """Trades from the journal, in seq order; a gap means a group was not queued."""
        fresh = [(seq, body) for seq, body in records if seq > self._mark]
        if fresh and fresh[0][0] != self._mark + 1:
            self._catch_up()  # books the gap and these records too
            return
        if not fresh:
            return
        try:
            with self._conn.savepoint():
                self._insert([orjson.loads(body) for _, body in fresh])
        except Exception:  # a record the ledger refuses must not block the ones after it
            for seq, body in fresh:
                try:
                    with self._conn.savepoint():
                        self._insert([orjson.loads(body)])
                except Exception:
                    self.metrics.rejected += 1
                    log.exception("journal record %d cannot be booked, skipped: %r", seq, body)
        self._mark = fresh[-1][0]
        ledger.set_journal_mark(self._conn, self.journal.journal_id, self._mark)

    def _insert(self, trades: list[list]) -> None:
        repeated = ledger.insert_trades(self._conn, trades, self._clock())
        self.metrics.trades += len(trades) - len(repeated)
        self.metrics.duplicate_trades += len(repeated)
        self._releases += [ledger.reservation(t) for t in repeated]

    def _catch_up(self) -> None:
        """Read back from the journal every durable record the ledger lacks."""
        self._behind = False
        if self.stream or self.journal.last_seq <= self._mark:
            return  # nothing durable beyond what is booked
        records = list(self.journal.durable_records(self._mark))
        self.metrics.caught_up += len(records)
        if records:
            log.warning("caught up %d trades from the journal", len(records))
            self._book(records)

    def _notice(self, notice: Notice) -> Step:
        trade = ledger.load_trade(self._conn, notice.trade_id)
        if trade is None:
            self._catch_up()  # its group may not have been queued
            trade = ledger.load_trade(self._conn, notice.trade_id)
        if trade is None:
            later = " or not booked yet: retry in a second" if self.stream else ""
            raise NotFound(
                f'bid "{notice.trade_id}" is not a trade of this exchange{later} '
                "(test bids make none)"
            )
        step = apply(trade, notice)
        detail = step.message or _notice_detail(notice)
        ledger.write_step(self._conn, step, notice.kind, detail, self._clock())
        outcome = step.outcome.value
        self.metrics.notices[outcome] = self.metrics.notices.get(outcome, 0) + 1
        if step.outcome is Outcome.CONFLICT:
            log.warning("refused a %s notice: %s", notice.kind, step.message)
        self._note_release(step)
        return step

    def _expire(self) -> None:
        now = self._clock()
        for trade in ledger.due_trades(self._conn, now, EXPIRE_BATCH):
            step = expire(trade, now)
            if step is not None:
                ledger.write_step(self._conn, step, "expiry", "", now)
                self.metrics.expired += 1
                self._note_release(step)

    def _note_release(self, step: Step) -> None:
        if step.released_micros:
            t = step.trade
            self._releases.append((t.campaign_id, t.day, step.released_micros))

    def _released(self) -> None:
        """After the commit: budgets back, and journal segments the ledger now holds."""
        releases, self._releases = self._releases, []
        for campaign_id, day, micros in releases:
            self.on_release(campaign_id, day, micros)
        if self._mark:
            self.journal.release(self._mark)


def _commits_now(item) -> bool:
    """A stop or a flush ends the gathering: someone is waiting for everything before it."""
    return item is _STOP or item[0] == "flush"


def _notice_detail(notice: Notice) -> str:
    if notice.kind == "loss":
        return f"reason {notice.loss_reason}"
    if notice.kind == "attention":
        return f"{notice.seconds} s"
    return f"price {notice.price} {notice.cur}".strip()

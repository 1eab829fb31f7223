"""The embedded store: one SQLite file for trades, notices and Admin's campaigns.

All writes go through one writer thread fed by a queue, so the event loop never
waits on disk: trades are queued fire-and-forget from the hot path; notices and
campaign saves are awaited (a caller is told "recorded" only after the commit).
One writer also orders things: a trade queued before its bid response is sent
is always in the table before any notice about it is looked up.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from exchange.currency import RateTable
from exchange.errors import NotFound

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS trades (
    id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    imp_id TEXT NOT NULL,
    campaign_id TEXT NOT NULL,
    day INTEGER NOT NULL,
    price_cpm_micros INTEGER NOT NULL,
    charge_micros INTEGER NOT NULL,
    cur TEXT NOT NULL,
    created_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS trades_by_day ON trades (day, campaign_id);
CREATE TABLE IF NOT EXISTS notices (
    bid_id TEXT NOT NULL REFERENCES trades (id),
    type TEXT NOT NULL,
    price_cpm_micros INTEGER,
    loss_reason INTEGER,
    received_ns INTEGER NOT NULL,
    PRIMARY KEY (bid_id, type)
);
CREATE TABLE IF NOT EXISTS campaigns (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    updated_ns INTEGER NOT NULL
);
"""

BATCH = 512  # most queued writes committed in one transaction
_STOP = object()


@dataclass(slots=True, frozen=True)
class TradeEvent:
    """A won bid: budget was reserved in memory; this makes it durable."""

    id: str
    request_id: str
    imp_id: str
    campaign_id: str
    slot: int
    day: int
    price_cpm_micros: int
    charge_micros: int
    cur: str


@dataclass(slots=True, frozen=True)
class NoticeEvent:
    bid_id: str
    type: str  # "win" | "bill" | "loss"
    price: float | None  # CPM in `cur` (win, bill)
    cur: str  # "" = the bid's own currency
    loss_reason: int | None


class SqliteStore:
    def __init__(
        self,
        path: Path,
        rates: RateTable,
        on_duplicate_trade: Callable[[TradeEvent], None] = lambda trade: None,
        max_queue: int = 100_000,
    ) -> None:
        self.path = path
        self._rates = rates
        self._on_duplicate_trade = on_duplicate_trade
        self._queue: queue.Queue = queue.Queue(max_queue)
        self.dropped_trades = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db:
            db.executescript(SCHEMA)
        self._thread = threading.Thread(target=self._run, name="sqlite-writer", daemon=True)
        self._thread.start()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        return db

    # -- writes ---------------------------------------------------------------

    def record_trade(self, trade: TradeEvent) -> None:
        """Queue a trade without waiting; a full queue is logged, never silent."""
        try:
            self._queue.put_nowait((self._write_trade, trade, None))
        except queue.Full:
            self.dropped_trades += 1
            log.error(
                "trade queue full (%d): trade %s not persisted", self._queue.maxsize, trade.id
            )

    async def record_notice(self, notice: NoticeEvent) -> bool:
        """Persist a notice; True if new, False if the same notice was already recorded."""
        return await self._submit(self._write_notice, notice)

    async def save_campaign(self, campaign_id: str, body: str) -> None:
        await self._submit(self._write_campaign, (campaign_id, body))

    async def _submit(self, write, item):
        future: Future = Future()
        self._queue.put((write, item, future))
        return await asyncio.wrap_future(future)

    def flush(self) -> None:
        """Block until everything queued so far is committed (start-up, shutdown, tests)."""
        future: Future = Future()
        self._queue.put((lambda db, item: None, None, future))
        future.result()

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        db = self._connect()
        while True:
            batch = [self._queue.get()]
            while len(batch) < BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(entry is _STOP for entry in batch)
            self._commit(db, [entry for entry in batch if entry is not _STOP])
            if stop:
                db.close()
                return

    def _commit(self, db: sqlite3.Connection, batch: list) -> None:
        results = []
        db.execute("BEGIN")
        for write, item, future in batch:
            try:
                results.append((future, write(db, item), None))
            except Exception as exc:  # one bad write must not lose the others
                if future is None:
                    log.exception("could not persist %r", item)
                results.append((future, None, exc))
        db.execute("COMMIT")
        for future, result, exc in results:
            if future is None:
                continue
            if exc is None:
                future.set_result(result)
            else:
                future.set_exception(exc)

    def _write_trade(self, db: sqlite3.Connection, t: TradeEvent) -> None:
        inserted = db.execute(
            "INSERT OR IGNORE INTO trades VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                t.id,
                t.request_id,
                t.imp_id,
                t.campaign_id,
                t.day,
                t.price_cpm_micros,
                t.charge_micros,
                t.cur,
                time.time_ns(),
            ),
        ).rowcount
        if not inserted:  # a retried request: its budget must not be taken twice
            self._on_duplicate_trade(t)

    def _write_notice(self, db: sqlite3.Connection, n: NoticeEvent) -> bool:
        row = db.execute("SELECT cur FROM trades WHERE id = ?", (n.bid_id,)).fetchone()
        if row is None:
            raise NotFound(f'bid "{n.bid_id}" is not a bid this exchange made')
        price_micros = None
        if n.price is not None:
            price_micros = self._rates.to_usd_micros(n.price, n.cur or row[0])
        return bool(
            db.execute(
                "INSERT OR IGNORE INTO notices VALUES (?, ?, ?, ?, ?)",
                (n.bid_id, n.type, price_micros, n.loss_reason, time.time_ns()),
            ).rowcount
        )

    def _write_campaign(self, db: sqlite3.Connection, item: tuple[str, str]) -> None:
        db.execute(
            "INSERT INTO campaigns VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET body = excluded.body, updated_ns = excluded.updated_ns",
            (*item, time.time_ns()),
        )

    # -- reads (start-up and tests; never on the hot path) ---------------------

    def campaign_bodies(self) -> list[str]:
        with closing(self._connect()) as db:
            return [body for (body,) in db.execute("SELECT body FROM campaigns ORDER BY id")]

    def spend_for_day(self, day: int) -> dict[str, int]:
        """Today's reserved spend per campaign, to restore budgets after a restart."""
        with closing(self._connect()) as db:
            rows = db.execute(
                "SELECT campaign_id, SUM(charge_micros) FROM trades WHERE day = ? "
                "GROUP BY campaign_id",
                (day,),
            )
            return dict(rows.fetchall())

    def count(self, table: str) -> int:
        if table not in ("trades", "notices", "campaigns"):
            raise ValueError(table)
        with closing(self._connect()) as db:
            return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

"""The trade stream: journaled trades shipped to a Redis Stream for the ledger workers.

With shared state, bid servers do not book their own trades. Each one's settlement
process journals a trade (durable on local disk before the bid is answered), then
the shipper here adds it to one Redis Stream, and ledger workers anywhere
(`exchange.ledger_worker`, a consumer group) book it into the shared ledger:

    bid server ─▶ settler: journal (fsync) ─▶ shipper ─XADD─▶ {prefix}:trades
                                                                  │ XREADGROUP "ledger"
                      ledger worker 1..M ◀──────────────────────────┘
                      book (exactly once per journal record), XACK + XDEL

Nothing is lost on the way: the journal keeps a record until the ledger holds it
(the settler moves the journal's mark over records booked from the stream, then
deletes old segments), so whatever Redis drops, the shipper can send again. It
sends again from the mark when Redis was unreachable, and when the stream's epoch
changed (a Redis that restarted empty). A record sent twice is booked once: the
ledger claims (journal, seq) pairs (`ledger.claim_records`).

Each stream entry holds one record: j (journal id), s (seq), t (the trade's
journal record). The stream and its epoch share a hash tag: one cluster slot.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import redis

from exchange.journal import Journal
from exchange.redis_client import sync_client

log = logging.getLogger("attnx.trade_stream")

GROUP = "ledger"
SHIP_BATCH = 1000  # entries per pipeline
MAX_QUEUED = 100_000  # records waiting to ship in memory; beyond, they are read back from disk
IDLE_CHECK_S = 1.0  # an idle shipper checks the epoch this often
BACKOFF_S = (0.05, 2.0)


@dataclass(frozen=True)
class StreamKeys:
    stream: str
    epoch: str

    @classmethod
    def of(cls, prefix: str) -> StreamKeys:
        return cls(f"{prefix}:{{trades}}:stream", f"{prefix}:{{trades}}:epoch")


class Shipper:
    """Ships a journal's durable records to the stream, in order, on its own thread.

    `booked_mark()` gives the journal's ledger mark (every record at or below it is
    booked): what is sent again when the stream may have lost entries.
    """

    def __init__(
        self, url: str, prefix: str, journal: Journal, booked_mark: Callable[[], int]
    ) -> None:
        self.redis = sync_client(url, socket_timeout=2.0, socket_connect_timeout=1.0)
        self.keys = StreamKeys.of(prefix)
        self.journal = journal
        self.booked_mark = booked_mark
        self.shipped = booked_mark()  # everything after the mark is sent again at start
        self.resent = 0  # records read back from the journal and sent again
        self._behind = journal.last_seq > self.shipped
        self._epoch: bytes | None = None
        self._cond = threading.Condition()
        self._queued: list[tuple[int, bytes]] = []
        self._closing = False
        self._deadline = 0.0  # time.monotonic() after which close() gives up on a dead Redis
        self._thread = threading.Thread(target=self._run, name="trade-shipper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def take(self, records: list[tuple[int, bytes]]) -> None:
        """The journal's sink: a durable group to ship (never blocks on Redis)."""
        with self._cond:
            if len(self._queued) + len(records) > MAX_QUEUED:
                self._queued.clear()  # still in the journal: read back once Redis answers
                self._behind = True
            else:
                self._queued += records
            self._cond.notify()

    def close(self, timeout_s: float = 10.0) -> None:
        """Ship what is queued (for up to `timeout_s` if Redis is down), then stop.
        Whatever is not shipped stays in the journal and is sent at the next start."""
        with self._cond:
            self._closing = True
            self._deadline = time.monotonic() + timeout_s
            self._cond.notify()
        self._thread.join()
        self.redis.close()

    def _run(self) -> None:
        backoff = BACKOFF_S[0]
        while True:
            with self._cond:
                if not (self._queued or self._behind or self._closing):
                    self._cond.wait(IDLE_CHECK_S)
                records, self._queued = self._queued, []
                behind, self._behind = self._behind, False
                closing = self._closing
            if behind or (records and records[0][0] > self.shipped + 1):  # a gap: from disk
                records = list(self.journal.durable_records(self.shipped))
                self.resent += len(records)
            try:
                self._ship([r for r in records if r[0] > self.shipped])
                backoff = BACKOFF_S[0]
            except (redis.RedisError, OSError) as exc:
                with self._cond:
                    self._behind = True  # what was taken is read back from the journal
                    if closing and time.monotonic() > self._deadline:
                        log.error("stopping with trades not shipped: they go at the next start")
                        return
                if backoff == BACKOFF_S[0]:
                    log.warning("cannot ship trades to Redis (%s): they wait in the journal", exc)
                time.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_S[1])
                continue
            with self._cond:
                if closing and not self._queued and not self._behind:
                    return

    def _ship(self, records: list[tuple[int, bytes]]) -> None:
        """Send records in pipelines, each with an epoch check; if the stream lost its
        data since the last one, go back to the ledger's mark and send it all again."""
        for i in range(0, max(len(records), 1), SHIP_BATCH):
            chunk = records[i : i + SHIP_BATCH]
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.set(self.keys.epoch, uuid.uuid4().hex, nx=True)
                pipe.get(self.keys.epoch)
                for seq, body in chunk:
                    fields = {"j": self.journal.journal_id, "s": seq, "t": body}
                    pipe.xadd(self.keys.stream, fields)
                epoch = pipe.execute()[1]
            if self._epoch is not None and epoch != self._epoch:
                log.warning("the trade stream lost its data: sending the unbooked trades again")
                with self._cond:
                    self.shipped, self._behind = self.booked_mark(), True
                self._epoch = epoch
                return
            self._epoch = epoch
            if chunk:
                self.shipped = chunk[-1][0]

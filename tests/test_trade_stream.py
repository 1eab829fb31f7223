"""The trade stream: journaled trades shipped to Redis and booked by ledger workers, each
exactly once, whatever dies or repeats on the way (real Redis; SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from exchange import ledger
from exchange.bank import LeaseRequest, RedisBank
from exchange.db import Database
from exchange.journal import Journal
from exchange.ledger_worker import LedgerWorker
from exchange.redis_client import sync_client
from exchange.reports import check
from exchange.settlement import Trade
from exchange.store import Store, encode_trade
from exchange.trade_stream import GROUP, Shipper, StreamKeys
from tests.conftest import PrivateRedis, RedisTarget
from tests.test_store import won


class StreamRig:
    """One bid server's settlement side as the exchange wires it with shared state:
    journal -> shipper -> stream; the store sweeps and moves the journal's mark."""

    def __init__(self, db: Database, folder: Path, url: str, prefix: str) -> None:
        self.db, self.url, self.prefix = db, url, prefix
        self.journal = Journal(folder, sink=lambda records: self.shipper.take(records))
        self.store = Store(db, self.journal, stream=True, sweep_interval_s=0.05)
        self.store.recover()
        self.shipper = Shipper(url, prefix, self.journal, booked_mark=lambda: self.store.mark)
        self.shipper.start()
        self.journal.start()
        self.store.start()

    def win(self, *trades: Trade) -> None:
        for t in trades:
            last = self.journal.append(encode_trade(t))
        last.result(timeout=5)

    def wait_shipped(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.shipper.shipped < self.journal.last_seq:
            assert time.monotonic() < deadline, "the shipper never caught up"
            time.sleep(0.01)

    def close(self) -> None:
        self.journal.close()
        self.shipper.close()
        self.store.close()

    def booked(self) -> list[str]:
        with self.db.connect() as conn:
            return sorted(t for (t,) in conn.rows("SELECT id FROM ledger_trades"))

    def breaches(self) -> list[str]:
        with self.db.connect() as conn:
            return check(conn)


@pytest.fixture(params=["redis", "redis-cluster"])
def rig(request, database, tmp_path, redis_target: RedisTarget):
    url = request.getfixturevalue("redis_cluster") if "cluster" in request.param else None
    r = StreamRig(database, tmp_path / "journal", url or redis_target.url, redis_target.prefix)
    yield r
    r.close()


def workers(rig: StreamRig, n: int, claim_idle_ms: int = 10_000) -> list[LedgerWorker]:
    return [
        LedgerWorker(rig.db, rig.url, rig.prefix, claim_idle_ms, name=f"w{i}") for i in range(n)
    ]


async def drain(*ws: LedgerWorker) -> None:
    """Run the workers until the stream has nothing more for them."""
    stop = asyncio.Event()
    stop.set()  # draining from the start: each stops after two empty reads
    for w in ws:
        await w.ensure_group()
    await asyncio.gather(*(w.run(stop) for w in ws))
    await closed(*ws)


async def closed(*ws: LedgerWorker) -> None:
    for w in ws:
        await w.close()


def stream_length(rig: StreamRig) -> int:
    client = sync_client(rig.url)
    try:
        return client.xlen(StreamKeys.of(rig.prefix).stream)
    finally:
        client.close()


def trades(n: int, start: int = 0) -> list[Trade]:
    return [won(f"t{i:04d}", campaign=f"c{i % 3}", day=1) for i in range(start, start + n)]


def test_every_trade_is_booked_once_by_several_workers_and_the_journal_is_released(rig):
    for i in range(0, 300, 30):  # groups, as the journal makes them under load
        rig.win(*trades(30, i))
    rig.wait_shipped()
    ws = workers(rig, 3)

    asyncio.run(drain(*ws))
    assert rig.booked() == sorted(t.id for t in trades(300))
    assert sum(w.metrics.booked for w in ws) == 300
    assert sum(w.metrics.seen_before for w in ws) == 0
    assert stream_length(rig) == 0  # acknowledged and deleted
    assert rig.breaches() == []
    deadline = time.monotonic() + 5  # the store's sweep moves the mark over the booked records
    while rig.store.mark < 300:
        assert time.monotonic() < deadline, rig.store.mark
        time.sleep(0.02)
    with rig.db.connect() as conn:
        assert conn.rows("SELECT COUNT(*) FROM stream_booked")[0][0] == 0
        assert ledger.journal_mark(conn, rig.journal.journal_id) == 300


@pytest.mark.parametrize("booked_before_dying", [False, True])
def test_a_worker_that_dies_before_acknowledging_loses_nothing_and_doubles_nothing(
    rig, booked_before_dying: bool
):
    rig.win(*trades(40))
    rig.wait_shipped()
    dying, survivor = workers(rig, 2, claim_idle_ms=100)

    async def go() -> None:
        await dying.ensure_group()
        entries = await dying.read()
        assert len(entries) == 40
        if booked_before_dying:
            dying.book(entries)  # committed; then killed before XACK
        await asyncio.sleep(0.15)  # idle past claim_idle_ms
        taken = await survivor.claim()
        assert len(taken) == 40
        await survivor.step(taken)
        await closed(dying, survivor)

    asyncio.run(go())
    assert rig.booked() == sorted(t.id for t in trades(40))
    assert survivor.metrics.claimed == 40
    assert survivor.metrics.booked == (0 if booked_before_dying else 40)
    assert survivor.metrics.seen_before == (40 if booked_before_dying else 0)
    assert stream_length(rig) == 0
    assert rig.breaches() == []


def test_a_record_shipped_twice_is_booked_once_but_a_retried_request_gives_budget_back(
    rig, redis_target: RedisTarget
):
    async def lease(micros: int) -> None:
        bank = RedisBank(rig.url, rig.prefix)
        await bank.lease(1, [LeaseRequest("c0", 1_000_000, micros)])
        await bank.close()

    async def leased() -> int:
        bank = RedisBank(rig.url, rig.prefix)
        try:
            return (await bank.leased(1, ["c0"]))[0]
        finally:
            await bank.close()

    asyncio.run(lease(100_000))
    rig.win(*trades(10))
    rig.wait_shipped()
    asyncio.run(drain(*workers(rig, 1)))
    # The same journal records again (a shipper that restarted before the mark moved).
    again = Shipper(rig.url, rig.prefix, rig.journal, booked_mark=lambda: 0)
    again.start()
    again.close()
    (w,) = workers(rig, 1)
    asyncio.run(drain(w))
    assert w.metrics.seen_before == 10 and w.metrics.booked == 0 and w.metrics.repeated == 0
    assert asyncio.run(leased()) == 100_000  # nothing given back for a re-delivery
    # A new record for a trade id already booked: a retried request that won again.
    rig.win(trades(1)[0])
    rig.wait_shipped()
    (w,) = workers(rig, 1)
    asyncio.run(drain(w))
    assert w.metrics.repeated == 1
    assert asyncio.run(leased()) == 100_000 - trades(1)[0].reserved_micros
    assert rig.booked() == sorted(t.id for t in trades(10))
    assert rig.breaches() == []


def test_a_stream_that_lost_its_data_is_sent_again_from_the_ledger_mark(rig):
    rig.win(*trades(50))
    rig.wait_shipped()
    keys = StreamKeys.of(rig.prefix)
    client = sync_client(rig.url)
    client.delete(keys.stream, keys.epoch)  # Redis restarted empty
    client.close()
    rig.win(*trades(5, 50))  # the next ship sees a new epoch
    deadline = time.monotonic() + 10
    while stream_length(rig) < 55:
        assert time.monotonic() < deadline, stream_length(rig)
        time.sleep(0.02)
    asyncio.run(drain(*workers(rig, 2)))
    assert rig.booked() == sorted(t.id for t in trades(55))
    assert rig.shipper.resent >= 50
    assert rig.breaches() == []


def test_trades_wait_in_the_journal_while_redis_is_down_and_ship_when_it_is_back(
    database, tmp_path: Path, private_redis: PrivateRedis
):
    r = StreamRig(database, tmp_path / "journal", private_redis.url, "attnx")
    try:
        r.win(*trades(10))
        r.wait_shipped()
        private_redis.stop()
        r.win(*trades(20, 10))  # durable in the journal: the bids were answered
        time.sleep(0.3)
        assert r.shipper.shipped == 10
        private_redis.start()
        r.wait_shipped()
        asyncio.run(drain(*workers(r, 1)))
        assert r.booked() == sorted(t.id for t in trades(30))
        assert r.breaches() == []
    finally:
        r.close()


def test_a_restarted_settler_sends_what_the_ledger_lacks_and_nothing_is_doubled(
    database, tmp_path: Path, redis_target: RedisTarget
):
    first = StreamRig(database, tmp_path / "journal", redis_target.url, redis_target.prefix)
    first.win(*trades(20))
    first.wait_shipped()
    first.close()  # its trades are in the stream, not booked: the mark has not moved
    second = StreamRig(database, tmp_path / "journal", redis_target.url, redis_target.prefix)
    try:
        second.wait_shipped()
        assert second.shipper.resent == 20  # sent again from the mark
        (w,) = workers(second, 1)
        asyncio.run(drain(w))
        assert w.metrics.booked == 20 and w.metrics.seen_before == 20
        assert second.booked() == sorted(t.id for t in trades(20))
        assert second.breaches() == []
    finally:
        second.close()


def test_an_entry_that_is_not_a_trade_is_skipped_not_blocking(rig):
    keys = StreamKeys.of(rig.prefix)
    client = sync_client(rig.url)
    client.xgroup_create(keys.stream, GROUP, id="0", mkstream=True)
    client.xadd(keys.stream, {"j": "x", "s": "not-a-number", "t": "{}"})
    client.close()
    rig.win(*trades(3))
    rig.wait_shipped()
    (w,) = workers(rig, 1)
    asyncio.run(drain(w))
    assert w.metrics.rejected == 1 and w.metrics.booked == 3
    assert stream_length(rig) == 0

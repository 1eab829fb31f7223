"""The SQLite store: trades and notices persist, notices are idempotent, order holds."""

import asyncio
import sqlite3

import pytest

from exchange.currency import RateTable
from exchange.errors import NotFound
from exchange.store import NoticeEvent, SqliteStore, TradeEvent

RATES = RateTable({"USD": 1.0, "EUR": 0.5})


def trade(tid: str, campaign: str = "c1", charge: int = 2_000, day: int = 100) -> TradeEvent:
    return TradeEvent(tid, "req", "1", campaign, 0, day, charge * 1000, charge, "EUR")


@pytest.fixture
def store(tmp_path):
    duplicates = []
    s = SqliteStore(tmp_path / "x.db", RATES, on_duplicate_trade=duplicates.append)
    s.duplicates = duplicates
    yield s
    s.close()


def test_trades_persist_and_spend_sums_per_day(store):
    store.record_trade(trade("t1"))
    store.record_trade(trade("t2", charge=500))
    store.record_trade(trade("t3", campaign="c2", charge=7, day=99))
    store.flush()
    assert store.spend_for_day(100) == {"c1": 2_500}
    assert store.spend_for_day(99) == {"c2": 7}


def test_a_retried_trade_is_stored_once_and_reported(store):
    store.record_trade(trade("t1"))
    store.record_trade(trade("t1"))
    store.flush()
    assert store.count("trades") == 1
    assert [t.id for t in store.duplicates] == ["t1"]


def test_notices_are_idempotent_and_converted_to_usd_micros(store):
    store.record_trade(trade("t1"))

    async def notices():
        win = NoticeEvent("t1", "win", 2.0, "", None)  # "" = the bid's currency, EUR
        first = await store.record_notice(win)
        again = await store.record_notice(win)
        loss = await store.record_notice(NoticeEvent("t1", "loss", None, "", 102))
        return first, again, loss

    assert asyncio.run(notices()) == (True, False, True)
    with sqlite3.connect(store.path) as db:
        rows = db.execute("SELECT type, price_cpm_micros, loss_reason FROM notices ORDER BY type")
        assert rows.fetchall() == [("loss", None, 102), ("win", 4_000_000, None)]


def test_a_notice_for_an_unknown_bid_is_refused(store):
    with pytest.raises(NotFound, match='bid "nope" is not a bid this exchange made'):
        asyncio.run(store.record_notice(NoticeEvent("nope", "bill", 1.0, "", None)))


def test_close_commits_everything_queued(tmp_path):
    store = SqliteStore(tmp_path / "y.db", RATES)
    for i in range(2_000):
        store.record_trade(trade(f"t{i}"))
    store.close()
    with sqlite3.connect(tmp_path / "y.db") as db:
        assert db.execute("SELECT COUNT(*) FROM trades").fetchone() == (2_000,)

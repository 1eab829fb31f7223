"""The ledger store, the same suite on a real SQLite file and the real PostgreSQL:
trades arrive from the journal, notices move money exactly once, expiry voids,
a full queue catches up from the journal, a crash recovers, the invariants hold."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from exchange import ledger
from exchange.db import Database
from exchange.errors import NotFound
from exchange.journal import Journal
from exchange.reports import campaign_report, check, publisher_report
from exchange.settlement import Notice, Outcome, State, Trade
from exchange.store import Store, encode_trade


class Clock:
    def __init__(self) -> None:
        self.ns = 1_000_000_000

    def __call__(self) -> int:
        return self.ns


class Rig:
    """A journal feeding a store, as the exchange wires them."""

    def __init__(self, db: Database, folder: Path, **store_kw) -> None:
        self.db = db
        self.released: list[tuple[str, int, int]] = []
        self.clock = Clock()
        self.journal = Journal(folder, sink=lambda records: self.store.take_trades(records))
        self.store = Store(
            db,
            self.journal,
            on_release=lambda *r: self.released.append(r),
            clock=self.clock,
            **store_kw,
        )
        self.recovered = self.store.recover()
        self.journal.start()
        self.store.start()

    def win(self, *trades: Trade) -> None:
        for t in trades:
            last = self.journal.append(encode_trade(t))
        last.result(timeout=5)
        self.store.flush()

    def notice(self, notice: Notice):
        return self.store.submit("notice", notice).result(timeout=10)

    def close(self) -> None:
        self.journal.close()
        self.store.close()

    # reads, as the server and the CLI make them: straight from the database
    def spend_for_day(self, day: int) -> dict[str, int]:
        with self.db.connect() as conn:
            return ledger.spend_for_day(conn, day)

    def trade(self, trade_id: str) -> Trade | None:
        with self.db.connect() as conn:
            return ledger.load_trade(conn, trade_id)

    def setting(self, key: str, default: str) -> str:
        with self.db.connect() as conn, conn.transaction():
            return ledger.setting(conn, key, default)


@pytest.fixture
def rig(database, tmp_path):
    r = Rig(database, tmp_path / "journal")
    yield r
    r.close()


def won(tid: str, campaign: str = "c1", reserved: int = 2_000, day: int = 100, **kw) -> Trade:
    fields = dict(
        id=tid,
        request_id=f"r-{tid}",
        imp_id="1",
        campaign_id=campaign,
        publisher="site:s1",
        day=day,
        cur="EUR",
        price_cpm_micros=reserved * 1000,
        price_cur_micros=reserved * 500,  # EUR at 0.5 per USD
        reserved_micros=reserved,
        predicted_ms=4_000,
        take_rate_bps=1000,
        won_ns=0,
        expires_ns=5_000_000_000,
        charged_micros=reserved,
    )
    return Trade(**{**fields, **kw})


def bill(tid: str, price: float = 1.0) -> Notice:
    return Notice("bill", tid, price=price)


def balance(db: Database, account: str, unit: str = "micros") -> int:
    with db.connect() as conn:
        row = conn.one(
            "SELECT SUM(amount) FROM entries WHERE account = ? AND unit = ?", (account, unit)
        )
        return int(row[0] or 0)


def breaches(db: Database, budgets=None) -> list[str]:
    with db.connect() as conn:
        return check(conn, budgets)


def test_trades_are_booked_with_their_reservations(rig, database):
    rig.win(won("t1"), won("t2", reserved=500), won("t3", campaign="c2", reserved=7, day=99))
    assert rig.spend_for_day(100) == {"c1": 2_500}
    assert rig.spend_for_day(99) == {"c2": 7}
    assert balance(database, "campaign:c1") == -2_500
    assert balance(database, "pending:c1") == 2_500
    assert rig.store.metrics.trades == 3
    assert breaches(database) == []


def test_a_retried_request_is_booked_once_and_its_second_reservation_given_back(rig, database):
    rig.win(won("t1"))
    rig.win(won("t1"))
    assert rig.spend_for_day(100) == {"c1": 2_000}
    assert rig.released == [("c1", 100, 2_000)]
    assert rig.store.metrics.duplicate_trades == 1


def test_a_billed_and_measured_trade_posts_once_at_the_trued_charge(rig, database):
    rig.win(won("t1"))
    assert rig.notice(Notice("win", "t1", price=1.0)).outcome is Outcome.RECORDED
    assert rig.notice(bill("t1")).trade.state is State.POSTED
    assert rig.notice(bill("t1")).outcome is Outcome.DUPLICATE
    trued = rig.notice(Notice("attention", "t1", seconds=1.0))  # 1 s of 4 s predicted
    assert trued.trade.charged_micros == 500
    assert rig.released == [("c1", 100, 1_500)]
    assert balance(database, "campaign:c1") == -500
    assert balance(database, "pending:c1") == 0
    assert balance(database, "publisher:site:s1") == 450  # 500 less the 10% fee
    assert balance(database, "exchange:fees") == 50
    assert balance(database, "campaign:c1", "ms") == 1_000
    assert rig.spend_for_day(100) == {"c1": 500}
    assert breaches(database) == []


def test_a_conflicting_notice_is_refused_and_recorded_for_audit(rig, database):
    rig.win(won("t1"))
    rig.notice(bill("t1"))
    refused = rig.notice(bill("t1", price=3.0))
    assert refused.outcome is Outcome.CONFLICT and "clearing price 1.0" in refused.message
    assert rig.notice(Notice("loss", "t1", loss_reason=2)).outcome is Outcome.CONFLICT
    assert balance(database, "publisher:site:s1") == 1_800  # posted once, nothing more
    with database.connect() as conn:
        outcomes = [o for (o,) in conn.rows("SELECT outcome FROM ledger_notices ORDER BY 1")]
    assert outcomes == ["conflict", "conflict", "recorded"]


def test_a_loss_voids_and_gives_the_budget_back(rig, database):
    rig.win(won("t1"))
    step = rig.notice(Notice("loss", "t1", loss_reason=102))
    assert step.trade.state is State.VOID and rig.released == [("c1", 100, 2_000)]
    assert rig.notice(bill("t1")).outcome is Outcome.CONFLICT
    assert rig.spend_for_day(100) == {"c1": 0}
    assert balance(database, "campaign:c1") == 0
    assert breaches(database) == []


def test_a_notice_for_a_trade_never_made_is_not_found(rig):
    with pytest.raises(NotFound, match='bid "nope" is not a trade of this exchange'):
        rig.notice(bill("nope"))


def test_unbilled_trades_void_when_they_expire(database, tmp_path):
    rig = Rig(database, tmp_path / "journal", sweep_interval_s=0.01)
    try:
        rig.win(won("t1", expires_ns=2_000_000_000), won("t2", expires_ns=9_000_000_000))
        rig.notice(bill("t2"))
        rig.clock.ns = 3_000_000_000  # t1 is due; t2 was billed
        for _ in range(200):
            rig.store.flush()
            if rig.store.metrics.expired:
                break
        assert rig.trade("t1").void_reason == "expired"
        assert rig.trade("t2").state is State.POSTED
        assert rig.released == [("c1", 100, 2_000)]
    finally:
        rig.close()


def test_a_full_queue_is_counted_and_the_trades_are_read_back_from_the_journal(database, tmp_path):
    rig = Rig(database, tmp_path / "journal", max_queue=1)
    try:
        rig.store._queue.put(("flush", None, None))  # the queue is full: groups cannot join it
        for i in range(20):
            rig.journal.append(encode_trade(won(f"t{i}"))).result(timeout=5)
        assert rig.store.metrics.queue_full >= 1
        rig.store.flush()
        assert rig.store.metrics.caught_up >= 1
        assert rig.spend_for_day(100) == {"c1": 40_000}
        assert rig.notice(bill("t19")).outcome is Outcome.RECORDED
        assert breaches(database) == []
    finally:
        rig.close()


def test_a_crash_before_the_ledger_commit_is_recovered_from_the_journal(database, tmp_path):
    folder = tmp_path / "journal"
    first = Journal(folder)  # a server that journaled its trades and died before booking them
    first.start()
    for i in range(50):
        first.append(encode_trade(won(f"t{i}")))
    first.close()
    rig = Rig(database, folder)
    try:
        assert rig.recovered == 50
        assert rig.spend_for_day(100) == {"c1": 100_000}
    finally:
        rig.close()
    again = Rig(database, folder)  # nothing is booked twice
    try:
        assert again.recovered == 0
        assert again.spend_for_day(100) == {"c1": 100_000}
    finally:
        again.close()


def test_a_record_the_ledger_refuses_is_logged_and_skipped_not_blocking(rig, database, caplog):
    poison = replace(won("bad"), request_id=None)  # NOT NULL: the database refuses it
    rig.win(won("t1"), poison, won("t2"))
    rig.win(won("t3"))
    assert rig.store.metrics.rejected == 1
    assert rig.trade("bad") is None
    assert rig.spend_for_day(100) == {"c1": 6_000}
    assert "cannot be booked, skipped" in caplog.text


def test_close_books_everything_journaled(database, tmp_path):
    rig = Rig(database, tmp_path / "journal")
    for i in range(2_000):
        rig.journal.append(encode_trade(won(f"t{i}", reserved=1)))
    rig.close()
    with database.connect() as conn:
        assert conn.one("SELECT COUNT(*) FROM ledger_trades")[0] == 2_000
        assert ledger.spend_for_day(conn, 100) == {"c1": 2_000}


def test_commits_are_paced_by_the_interval_and_an_idle_writer_commits_at_once(
    database, tmp_path, monkeypatch
):
    interval = 0.1
    rig = Rig(database, tmp_path / "journal", commit_interval_s=interval, sweep_interval_s=60)
    commits: list[float] = []
    transaction = rig.store._conn.transaction

    def counted():
        commits.append(time.monotonic())
        return transaction()

    monkeypatch.setattr(rig.store._conn, "transaction", counted)
    t0 = time.monotonic()
    rig.store.submit("campaign", ("c0", "{}")).result(timeout=5)
    assert time.monotonic() - t0 < interval  # idle: no wait for the interval
    saves, t0 = [], time.monotonic()
    while time.monotonic() - t0 < 0.5:  # a save every 5 ms, ~100 in all
        saves.append(rig.store.submit("campaign", (f"c{len(saves) + 1}", "{}")))
        time.sleep(0.005)
    for save in saves:
        save.result(timeout=5)
    elapsed = time.monotonic() - t0
    rig.close()
    with database.connect() as conn:
        assert conn.one("SELECT COUNT(*) FROM campaigns")[0] == len(saves) + 1
    assert len(commits) - 1 <= elapsed / interval + 2, len(commits)


def test_reports_say_what_campaigns_bought_and_publishers_are_owed(rig, database):
    rig.win(won("t1"), won("t2"), won("t3", campaign="c2"), won("t4"))
    rig.notice(bill("t1"))
    rig.notice(Notice("attention", "t1", seconds=2.0))  # 2 of 4 s: charged 1_000
    rig.notice(bill("t2"))
    rig.notice(Notice("loss", "t4"))
    with database.connect() as conn:
        (c1, c2) = campaign_report(conn, 100, {"c1": 10_000})
        (publisher,) = publisher_report(conn, 100)
    assert (c1.trades, c1.billed, c1.pending, c1.void) == (2, 2, 0, 1)
    assert c1.attentive_s == 6.0 and c1.spend_usd == 0.003
    assert c1.effective_acpm_usd == 0.5  # $0.003 for 6 attentive seconds, per 1000
    assert c1.left_usd == 0.007 and c2.budget_usd is None and c2.reserved_usd == 0.002
    assert publisher.billed == 2 and publisher.payable_usd == 0.0027
    assert publisher.attentive_s == 6.0


def test_check_finds_a_tampered_ledger_and_an_overspent_campaign(rig, database):
    rig.win(won("t1"))
    rig.notice(bill("t1"))
    assert breaches(database, {("c1", 100): 2_000}) == []
    assert "spent 2000 of a 1999 budget" in breaches(database, {("c1", 100): 1_999})[0]
    with database.connect() as conn, conn.transaction():
        conn.execute("UPDATE entries SET amount = amount + 1 WHERE account = 'exchange:fees'")
    found = breaches(database)
    assert any("does not balance in micros" in b for b in found)
    assert any("does not sum to zero" in b for b in found)


def test_an_old_sqlite_file_is_migrated_and_keeps_its_data(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:  # the schema before the ledger
        old.executescript(
            "CREATE TABLE trades (id TEXT PRIMARY KEY, request_id TEXT NOT NULL, imp_id TEXT "
            "NOT NULL, campaign_id TEXT NOT NULL, day INTEGER NOT NULL, price_cpm_micros "
            "INTEGER NOT NULL, charge_micros INTEGER NOT NULL, cur TEXT NOT NULL, created_ns "
            "INTEGER NOT NULL);"
            "CREATE TABLE notices (bid_id TEXT NOT NULL REFERENCES trades (id), type TEXT NOT "
            "NULL, price_cpm_micros INTEGER, loss_reason INTEGER, received_ns INTEGER NOT NULL, "
            "PRIMARY KEY (bid_id, type));"
            "CREATE TABLE campaigns (id TEXT PRIMARY KEY, body TEXT NOT NULL, updated_ns INTEGER "
            "NOT NULL);"
            "INSERT INTO trades VALUES ('old', 'r', '1', 'c1', 5, 1000, 1, 'USD', 0);"
            "INSERT INTO campaigns VALUES ('c1', '{}', 0);"
        )
    db = Database(f"sqlite:///{path}")
    assert db.migrate() == [2, 3]
    assert db.migrate() == []
    with db.connect() as conn:
        assert conn.rows("SELECT id FROM legacy_trades") == [("old",)]
        assert conn.rows("SELECT id FROM campaigns") == [("c1",)]
        assert conn.rows("SELECT version FROM schema_migrations ORDER BY 1") == [(1,), (2,), (3,)]


def test_a_fresh_database_gets_every_migration(database):
    assert database.migrate() == [1, 2, 3]
    assert database.migrate() == []


def test_the_notice_secret_is_made_once_and_kept(rig):
    first = rig.setting("notice_secret", "a" * 64)
    assert rig.setting("notice_secret", "b" * 64) == first == "a" * 64


def test_a_trade_round_trips_through_its_row_and_its_journal_record(rig):
    t = replace(won("t1"), state=State.POSTED, measured_ms=7, win_noticed=True, void_reason="")
    assert ledger.from_row(ledger.to_row(t)) == t
    record = orjson.loads(encode_trade(won("t2")))
    assert dict(zip(ledger.WON, record, strict=True)) == {
        k: getattr(won("t2"), k) for k in ledger.WON
    }

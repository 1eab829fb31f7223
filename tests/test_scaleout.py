"""Scale-out end to end: several bid-server processes, real Redis, real PostgreSQL, ledger
workers on the trade stream; under load, and while parts of it die. The invariants:
no campaign spends past its budget, the ledger balances, and every bid a client got
is in the ledger exactly once (no trade lost, none doubled)."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from exchange import ledger
from exchange.auction import trade_id
from exchange.bank import RedisBank
from exchange.campaign_io import save_campaigns
from exchange.campaigns import Campaign, Creative, CreativeKind
from exchange.db import Database
from exchange.reports import check
from exchange.state import utc_day
from tests.conftest import PrivateRedis, RedisTarget, launch_server, open_channel, processes
from tests.test_server_grpc import MEGA_ACPM_MICROS, TIMEOUT, bid_request, exchange_stub


def small_budget_campaigns(n: int, budget_micros: int) -> list[Campaign]:
    """Campaigns that win the example's slot, each with a budget of a few sales."""
    return [
        Campaign(
            id=f"small-{i}",
            advertiser=f"Small {i}",
            adomain=[f"small{i}.example"],
            seat=f"seat-{i}",
            creatives=[Creative(f"small-{i}-b", CreativeKind.BANNER, 300, 250, adm="<div/>")],
            acpm_micros=MEGA_ACPM_MICROS - i * 1000,  # each outbids the next
            daily_budget_micros=budget_micros,
        )
        for i in range(n)
    ]


class Load:
    """Client threads bidding as fast as they can, each request a new id, on new
    connections now and then (so the kernel spreads them over the workers)."""

    def __init__(self, target: str, threads: int, first_price: bool = False) -> None:
        self.target, self.threads = target, threads
        self.at = 1 if first_price else 2
        self.won: list[str] = []  # bid ids the clients were sent: trades the ledger must hold
        self.refused: list[str] = []  # request ids answered UNAVAILABLE: no bid was sent
        self.stop = threading.Event()
        self._ids = itertools.count()
        self._lock = threading.Lock()

    def _run(self, k: int) -> None:
        while not self.stop.is_set():
            with open_channel(self.target) as channel:
                bidder = exchange_stub(channel)
                for _ in range(50):
                    rid = f"load-{k}-{next(self._ids)}"
                    request = bid_request(lambda body, rid=rid: body.update(id=rid, at=self.at))
                    try:
                        response = bidder.Bid(request, timeout=TIMEOUT)
                    except grpc.RpcError as exc:
                        assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
                        with self._lock:
                            self.refused.append(rid)
                        continue
                    with self._lock:
                        self.won += [b.id for s in response.seatbid for b in s.bid]
                    if self.stop.is_set():
                        return

    def run_for(self, seconds: float, during=None) -> None:
        with ThreadPoolExecutor(self.threads) as pool:
            futures = [pool.submit(self._run, k) for k in range(self.threads)]
            if during is not None:
                during()
            time.sleep(seconds)
            self.stop.set()
            for f in futures:
                f.result()


def ledger_workers_of(state_url: str) -> list[int]:
    """The pids of the ledger workers booking this Redis's stream."""
    return processes(b"exchange.ledger_worker", state_url.encode())


def assert_every_trade_booked_once(
    db_url: str, load: Load, budgets: dict[str, int], unknown: set[str] = frozenset()
) -> None:
    """`unknown`: trades whose bid may or may not have been sent (the server died before
    answering): the ledger may hold them, once."""
    day = utc_day()
    with Database(db_url).connect() as conn:
        booked = [t for (t,) in conn.rows("SELECT id FROM ledger_trades")]
        spent = ledger.spend_for_day(conn, day)
        assert check(conn, {(c, day): b for c, b in budgets.items()}) == []
    assert len(booked) == len(set(booked))  # none doubled
    assert set(load.won) <= set(booked)  # none lost
    assert set(booked) - set(load.won) <= unknown
    for campaign_id, budget in budgets.items():
        assert spent.get(campaign_id, 0) <= budget, (campaign_id, spent)


def bank_leased(url: str, prefix: str, campaign_ids: list[str]) -> list[int]:
    async def read() -> list[int]:
        bank = RedisBank(url, prefix)
        try:
            return await bank.leased(utc_day(), campaign_ids)
        finally:
            await bank.close()

    return asyncio.run(read())


def test_four_workers_under_load_never_overspend_and_book_every_trade_once(
    start_server, tmp_path: Path, redis_target: RedisTarget, postgres_url: str
):
    # $200: 20 leases of $10 (one 20 s bid at $500 aCPM). Up to one lease per worker and
    # campaign may be left stranded (less than a bid): the budgets sell out to ~80%.
    campaigns = small_budget_campaigns(3, budget_micros=200_000_000)
    save_campaigns(tmp_path / "campaigns.json", campaigns)
    config = tmp_path / "attnx.toml"
    config.write_text(
        f'[state]\nurl = "{redis_target.url}"\nprefix = "{redis_target.prefix}"\n'
        "lease_fraction = 0.05\n[settlement]\nledger_workers = 2\n"
        '[pacing]\nmethod = "none"\n'  # full bids: the budgets sell out within the test
    )
    server = start_server(
        "--config", str(config), "--db", postgres_url, "--workers", "4",
        "--campaigns", str(tmp_path / "campaigns.json"), db_path=tmp_path / "attnx.db",
    )  # fmt: skip
    load = Load(server.grpc_target, threads=8, first_price=True)  # a sale costs its bid
    load.run_for(12)
    server.assert_graceful_exit()  # the servers drain, then the ledger workers book the rest
    budgets = {c.id: c.daily_budget_micros for c in campaigns}
    assert len(load.won) > 20, len(load.won)
    assert_every_trade_booked_once(postgres_url, load, budgets)
    with Database(postgres_url).connect() as conn:
        spent = ledger.spend_for_day(conn, utc_day())
    ids = [c.id for c in campaigns]
    assert all(spent.get(c, 0) > 0.7 * budgets[c] for c in ids), spent  # sold out under load
    assert bank_leased(redis_target.url, redis_target.prefix, ids) == [spent.get(c, 0) for c in ids]


def test_a_killed_ledger_worker_and_a_restarted_redis_lose_no_trade(
    start_server, tmp_path: Path, private_redis: PrivateRedis, postgres_url: str
):
    campaigns = small_budget_campaigns(2, budget_micros=1_000_000_000)  # never runs out
    save_campaigns(tmp_path / "campaigns.json", campaigns)
    config = tmp_path / "attnx.toml"
    config.write_text(
        f'[state]\nurl = "{private_redis.url}"\nrefill_interval_ms = 5\n'
        "[settlement]\nledger_workers = 2\nclaim_idle_ms = 500\n"
    )
    server = start_server(
        "--config", str(config), "--db", postgres_url, "--workers", "2",
        "--campaigns", str(tmp_path / "campaigns.json"), db_path=tmp_path / "attnx.db",
    )  # fmt: skip
    killed: list[int] = []

    def faults() -> None:
        time.sleep(2)
        victim = ledger_workers_of(private_redis.url)[0]
        os.kill(victim, signal.SIGKILL)  # mid-batch, perhaps between commit and XACK
        killed.append(victim)
        time.sleep(1.5)
        private_redis.stop()  # bids go on from held leases; trades wait in the journals
        time.sleep(1.5)
        private_redis.start()

    load = Load(server.grpc_target, threads=4)
    load.run_for(9, during=lambda: threading.Thread(target=faults).start())
    assert killed
    time.sleep(1)  # the restarted worker and the shippers catch up while the servers run
    server.assert_graceful_exit()
    log = server.log()
    assert f"ledger worker {killed[0]} exited" in log  # and another was started
    assert "cannot ship trades to Redis" in log  # the outage was real
    assert len(load.won) > 100, len(load.won)
    assert_every_trade_booked_once(
        postgres_url, load, {c.id: c.daily_budget_micros for c in campaigns}
    )


def test_a_killed_bid_server_worker_is_replaced_and_its_trades_are_booked_once(
    start_server, tmp_path: Path, redis_target: RedisTarget, postgres_url: str
):
    campaigns = small_budget_campaigns(2, budget_micros=1_000_000_000)
    save_campaigns(tmp_path / "campaigns.json", campaigns)
    config = tmp_path / "attnx.toml"
    config.write_text(f'[state]\nurl = "{redis_target.url}"\nprefix = "{redis_target.prefix}"\n')
    server = start_server(
        "--config", str(config), "--db", postgres_url, "--workers", "2",
        "--campaigns", str(tmp_path / "campaigns.json"), db_path=tmp_path / "attnx.db",
    )  # fmt: skip
    workers = processes(b"spawn_main", parent=server.process.pid)
    assert len(workers) == 2

    def kill_one() -> None:
        time.sleep(2)
        os.kill(workers[0], signal.SIGKILL)  # mid-request: its journal has trades to book

    load = Load(server.grpc_target, threads=4)
    load.run_for(6, during=lambda: threading.Thread(target=kill_one).start())
    deadline = time.monotonic() + 60
    while len(processes(b"spawn_main", parent=server.process.pid)) < 2:
        assert time.monotonic() < deadline, "the dead worker was not replaced"
        time.sleep(0.2)
    assert "exited with status -9: starting another" in server.log()
    server.assert_graceful_exit()
    unknown = {trade_id(rid, "1", c.id) for rid in load.refused for c in campaigns}
    assert len(load.won) > 100, len(load.won)
    assert_every_trade_booked_once(
        postgres_url, load, {c.id: c.daily_budget_micros for c in campaigns}, unknown
    )


def gone(pid: int) -> bool:
    """Exited: no /proc entry, or a zombie waiting for a reaper."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_a_supervisor_killed_with_sigkill_leaves_no_worker_behind(
    tmp_path: Path, redis_target: RedisTarget, postgres_url: str
):
    config = tmp_path / "attnx.toml"
    config.write_text(f'[state]\nurl = "{redis_target.url}"\nprefix = "{redis_target.prefix}"\n')
    server = launch_server(
        tmp_path, "--config", str(config), "--db", postgres_url, "--workers", "2",
        db_path=tmp_path / "attnx.db",
    )  # fmt: skip
    supervisor = server.process.pid
    bidders = processes(b"spawn_main", parent=supervisor)
    bookers = processes(b"exchange.ledger_worker", parent=supervisor)
    assert len(bidders) == 2 and len(bookers) == 1
    with open_channel(server.grpc_target) as channel:  # they serve before the kill
        exchange_stub(channel).Bid(bid_request(), timeout=TIMEOUT)
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(10)
    deadline = time.monotonic() + 60
    while not all(gone(pid) for pid in bidders + bookers):
        assert time.monotonic() < deadline, [p for p in bidders + bookers if not gone(p)]
        time.sleep(0.2)

"""`attnx serve --workers N`: several bid servers on one port, sharing budgets in Redis."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from exchange.config import ConfigError, load_config
from exchange.workers import check_workers, worker_journal
from protos.attnx.v1 import admin_pb2
from tests.conftest import RedisTarget, journal_dir, open_channel
from tests.test_server_grpc import (
    TIMEOUT,
    admin_stub,
    bid_request,
    exchange_stub,
    mega_campaign,
    read_db,
)


def test_several_workers_need_shared_budgets():
    with pytest.raises(ConfigError, match=r"--workers 2 needs shared budgets: set \[state\] url"):
        check_workers(load_config(), 2)
    with pytest.raises(ConfigError, match="--workers must be at least 1"):
        check_workers(load_config(), 0)
    check_workers(load_config(state={"url": "redis://127.0.0.1:6379/0"}), 4)


def test_two_workers_share_one_port_and_stop_gracefully(
    start_server, tmp_path: Path, redis_target: RedisTarget
):
    config = tmp_path / "attnx.toml"
    config.write_text(f'[state]\nurl = "{redis_target.url}"\nprefix = "{redis_target.prefix}"\n')
    db = tmp_path / "attnx.db"
    server = start_server("--config", str(config), "--workers", "2", db_path=db)
    answered = 0
    for _ in range(16):  # each channel is a new connection: the kernel picks a worker
        with open_channel(server.grpc_target) as channel:
            bidder = exchange_stub(channel)
            for _bid in range(5):
                answered += len(bidder.Bid(bid_request(), timeout=TIMEOUT).seatbid) > 0
    assert answered == 80
    journals = [Path(worker_journal(str(journal_dir(db)), i)) for i in range(2)]
    sizes = [sum(f.stat().st_size for f in j.glob("journal-*.log")) for j in journals]
    assert all(size > 0 for size in sizes), sizes  # both workers sold (each journals its own)
    server.assert_graceful_exit()
    log = server.log()
    assert len(re.findall(r"worker\d attnx: stopped; all queued writes committed", log)) == 2, log


def test_an_admin_change_on_one_worker_reaches_every_worker(
    start_server, tmp_path: Path, redis_target: RedisTarget
):
    """Admin calls land on one worker; the others pick the change up from the database."""
    config = tmp_path / "attnx.toml"
    config.write_text(
        f'[state]\nurl = "{redis_target.url}"\nprefix = "{redis_target.prefix}"\n'
        "campaign_sync_s = 0.2\n"
    )
    server = start_server("--config", str(config), "--workers", "2")
    mega = mega_campaign()

    def mega_wins(connections: int) -> int:
        wins = 0
        for i in range(connections):  # each a new connection: either worker may answer
            with open_channel(server.grpc_target) as channel:
                request = bid_request(lambda body, i=i: body.update(id=f"sync-{time.time()}-{i}"))
                response = exchange_stub(channel).Bid(request, timeout=TIMEOUT)
                wins += any(b.cid == mega.id for s in response.seatbid for b in s.bid)
        return wins

    with open_channel(server.grpc_target) as channel:
        admin_stub(channel).UpsertCampaign(mega, timeout=TIMEOUT)
    time.sleep(1.0)
    assert mega_wins(20) == 20  # without the sync, about half would go to the other worker
    time.sleep(0.5)  # the ledger worker books the trade stream
    (booked,) = read_db(server.db_path, "SELECT SUM(charged_micros) FROM ledger_trades")[0]
    with open_channel(server.grpc_target) as channel:  # one worker reports both workers' spend
        status = admin_stub(channel).GetCampaign(admin_pb2.CampaignRef(id=mega.id), timeout=TIMEOUT)
    assert status.spent_today_micros == booked > 0
    with open_channel(server.grpc_target) as channel:
        admin_stub(channel).PauseCampaign(admin_pb2.CampaignRef(id=mega.id), timeout=TIMEOUT)
    time.sleep(1.0)
    assert mega_wins(20) == 0
    server.assert_graceful_exit()

"""`attnx serve --workers N`: several bid servers on one port, sharing budgets in Redis."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from exchange.config import ConfigError, load_config
from exchange.workers import check_workers, worker_journal
from tests.conftest import RedisTarget, journal_dir, open_channel
from tests.test_server_grpc import TIMEOUT, bid_request, exchange_stub


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

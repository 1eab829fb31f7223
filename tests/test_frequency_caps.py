"""Frequency caps and behaviour histories through real servers: one process with the
in-memory user store, and two worker processes sharing the store in Redis."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from exchange.campaign_io import save_campaigns
from exchange.campaigns import FrequencyCap
from exchange.redis_client import sync_client
from tests.conftest import RedisTarget, open_channel
from tests.test_scaleout import small_budget_campaigns
from tests.test_server_grpc import TIMEOUT, bid_request, exchange_stub, read_db

CAP = FrequencyCap(count=2, window_s=3600)


def wins_for(target: str, user_id: str, requests: int, campaign_id: str) -> int:
    """Requests from one user, each on a new connection (so, with several workers, the
    kernel spreads them); returns how many the capped campaign won."""
    won = 0
    for i in range(requests):
        with open_channel(target) as channel:
            request = bid_request(
                lambda body, i=i: body.update(id=f"{user_id}-{i}", user={"id": user_id})
            )
            response = exchange_stub(channel).Bid(request, timeout=TIMEOUT)
            won += any(b.cid == campaign_id for s in response.seatbid for b in s.bid)
        time.sleep(0.05)  # the win is recorded off the hot path, within a few ms
    return won


@pytest.mark.parametrize(
    "state",
    ["memory", "redis", "redis-cluster"],
    ids=lambda s: s if s == "memory" else f"{s}-2-workers",
)
def test_a_capped_campaign_reaches_each_user_at_most_count_times(
    start_server, tmp_path: Path, request, state: str
):
    """With Redis Cluster, everything shared runs on the cluster: leases, users, pacing,
    the trade stream and its ledger worker."""
    capped, other = small_budget_campaigns(2, budget_micros=1_000_000_000)
    capped.frequency_cap = CAP  # and it outbids the other
    save_campaigns(tmp_path / "campaigns.json", [capped, other])
    args = ["--campaigns", str(tmp_path / "campaigns.json")]
    shared = state != "memory"
    if shared:
        target: RedisTarget = request.getfixturevalue("redis_target")
        url = request.getfixturevalue("redis_cluster") if state == "redis-cluster" else target.url
        config = tmp_path / "attnx.toml"
        config.write_text(f'[state]\nurl = "{url}"\nprefix = "{target.prefix}"\n')
        args += ["--config", str(config), "--workers", "2"]
    server = start_server(*args)
    assert wins_for(server.grpc_target, "alice", 8, capped.id) == CAP.count
    assert wins_for(server.grpc_target, "bob", 3, capped.id) == CAP.count  # caps are per user
    if shared:  # what the store holds: the ads shown, newest first, as history items
        client = sync_client(url)
        history = client.lrange(f"{target.prefix}:user:{{alice}}:history", 0, -1)
        client.close()
        assert len(history) == 8 and all(int(item) > 0 for item in history)
    server.assert_graceful_exit()
    if shared:  # and every trade reached the ledger through the stream
        (booked,) = read_db(server.db_path, "SELECT COUNT(*) FROM ledger_trades")[0]
        assert booked == 11

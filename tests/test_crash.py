"""Crash safety: kill -9 the real exchange under load, restart it, and check that every
bid the client received as won is in the ledger exactly once, that the ledger balances,
and that no campaign spent more than its budget — before the crash or after."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import grpc

from exchange.db import Database
from exchange.reports import check
from protos.attnx.v1 import exchange_pb2_grpc
from tests.conftest import launch_server
from tests.test_server_grpc import bid_request

BUDGET_MICROS = 400_000  # $0.40 a day: a few dozen wins each, so budgets run out under load
CAMPAIGNS = [
    {
        "id": f"crash-{i}",
        "advertiser": f"Advertiser {i}",
        "seat": f"seat-{i}",
        "adomain": [f"adv{i}.example"],
        "acpm": "2.00",
        "daily_budget_micros": BUDGET_MICROS,
        "creatives": [
            {"id": f"crash-{i}-mrec", "kind": "banner", "w": 300, "h": 250, "adm": "<div/>"}
        ],
    }
    for i in range(5)
]
KILL_AFTER_WINS = 60


class Load:
    """Client threads sending bids until the server is gone (or budgets run out)."""

    def __init__(self, target: str, threads: int = 4) -> None:
        self.target = target
        self.won: dict[str, str] = {}  # bid id -> campaign, as the client received them
        self.no_bid = 0
        self.failed = 0  # calls the crash cut off
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def start(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def wins(self) -> int:
        with self._lock:
            return len(self.won)

    def _run(self) -> None:
        with grpc.insecure_channel(self.target) as channel:
            stub = exchange_pb2_grpc.ExchangeStub(channel)
            while not self._stop.is_set():
                request = bid_request()
                request.id = f"{self.target}-{next(self._ids)}"
                try:
                    response = stub.Bid(request, timeout=5)
                except grpc.RpcError:
                    with self._lock:
                        self.failed += 1
                    if self._stop.wait(0.01):
                        return
                    continue
                with self._lock:
                    for seatbid in response.seatbid:
                        for bid in seatbid.bid:
                            self.won[bid.id] = bid.ext.attention.campaign_id
                    self.no_bid += not response.seatbid


def test_kill_9_under_load_loses_and_doubles_nothing(tmp_path: Path):
    campaigns = tmp_path / "campaigns.json"
    campaigns.write_text(json.dumps({"campaigns": CAMPAIGNS}))
    db = tmp_path / "ledger.db"

    first = launch_server(tmp_path, "--campaigns", str(campaigns), db_path=db)
    load = Load(first.grpc_target).start()
    try:
        for _ in range(600):
            if load.wins() >= KILL_AFTER_WINS:
                break
            threading.Event().wait(0.05)
        first.process.send_signal(signal.SIGKILL)  # mid-stream: calls are in flight
        first.process.wait(10)
    finally:
        load.stop()
    assert load.wins() >= KILL_AFTER_WINS, first.log()
    assert first.process.returncode == -signal.SIGKILL

    second = launch_server(tmp_path, "--campaigns", str(campaigns), db_path=db)
    after = Load(second.grpc_target).start()
    try:  # bid on until every budget is spent: the restored spend must hold the line
        for _ in range(1200):
            if after.no_bid >= 50:
                break
            threading.Event().wait(0.05)
    finally:
        after.stop()
    second.assert_graceful_exit()
    assert after.no_bid >= 50, "budgets never ran out after the restart"

    won = {**load.won, **after.won}
    database = Database(f"sqlite:///{db}")
    with database.connect() as conn:
        rows = conn.rows("SELECT id, campaign_id, day FROM ledger_trades")
        ids = [trade_id for trade_id, _, _ in rows]
        missing = [bid for bid in won if bid not in set(ids)]
        assert missing == [], f"{len(missing)} acknowledged bids are not in the ledger"
        assert len(ids) == len(set(ids))
        assert all(campaign == won[t] for t, campaign, _ in rows if t in won)
        days = {day for _, _, day in rows}
        budgets = {(c["id"], day): BUDGET_MICROS for c in CAMPAIGNS for day in days}
        assert check(conn, budgets) == []
        spent = dict(conn.rows("SELECT campaign_id, SUM(charged_micros) FROM ledger_trades "
                               "GROUP BY campaign_id"))  # fmt: skip
    assert max(spent.values()) > BUDGET_MICROS * 0.9  # budgets really were the limit

    ledger = [sys.executable, "-m", "exchange", "ledger", "--db", str(db), "--campaigns",
              str(campaigns)]  # fmt: skip
    checked = subprocess.run([*ledger, "check"], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(ids)} trades checked: 0 breaches" in checked.stdout
    report = subprocess.run(
        [*ledger, "report", "--format", "json", "--day", str(max(days))],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    lines = json.loads(report.stdout)["campaigns"]
    assert {line["campaign"] for line in lines} == {c["id"] for c in CAMPAIGNS}
    for line in lines:
        assert line["left_usd"] >= 0 and line["budget_usd"] == BUDGET_MICROS / 1e6

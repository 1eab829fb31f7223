"""The settlement process and the server's client for it: trades are acknowledged
only once synced, notices and budget releases cross the socket, and a settler that
dies is replaced without losing what it had journaled."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from exchange import frames
from exchange.db import Database
from exchange.errors import NotFound
from exchange.settlement import Notice, Outcome, State, Trade
from exchange.settlement_client import SettlementClient, SettlerDown


def won(tid: str, reserved: int = 1_000) -> Trade:
    return Trade(
        id=tid, request_id="r", imp_id="1", campaign_id="c1", publisher="site:s1", day=100,
        cur="USD", price_cpm_micros=reserved * 1000, price_cur_micros=reserved * 1000,
        reserved_micros=reserved, predicted_ms=2_000, take_rate_bps=1000, won_ns=0,
        expires_ns=10**18, charged_micros=reserved,
    )  # fmt: skip


def booked(db: Database) -> dict[str, str]:
    with db.connect() as conn:
        return dict(conn.rows("SELECT id, state FROM ledger_trades"))


@pytest.fixture
def where(tmp_path: Path) -> tuple[Database, Path]:
    return Database(f"sqlite:///{tmp_path / 'ledger.db'}"), tmp_path / "journal"


async def started(db: Database, journal: Path, released: list) -> SettlementClient:
    client = SettlementClient(db.url, journal, on_release=lambda *r: released.append(r))
    await asyncio.to_thread(client.start)
    await client.attach()
    return client


async def test_trades_are_acknowledged_once_synced_and_notices_answered(where):
    db, journal = where
    released: list = []
    client = await started(db, journal, released)
    try:
        await asyncio.wait_for(
            asyncio.gather(*(client.record_trade(won(f"t{i}")) for i in range(500))), 10
        )
        receipt = await client.notice(Notice("loss", "t7", loss_reason=2))
        assert (receipt.outcome, receipt.state) == (Outcome.RECORDED, State.VOID)
        assert released == [("c1", 100, 1_000)]
        conflict = await client.notice(Notice("bill", "t7", price=1.0))
        assert conflict.outcome is Outcome.CONFLICT and "was voided" in conflict.message
        with pytest.raises(NotFound):
            await client.notice(Notice("bill", "nope", price=1.0))
        await client.save_campaign("c9", '{"id": "c9"}')
        await client.flush()
        assert (await client.metrics())["trades"] == 500
    finally:
        await client.close()
    assert client.process.returncode == 0
    assert len(booked(db)) == 500 and booked(db)["t7"] == "void"


async def test_a_settler_that_dies_is_replaced_and_loses_nothing_it_synced(where):
    db, journal = where
    client = await started(db, journal, [])
    try:
        synced = [client.record_trade(won(f"a{i}")) for i in range(200)]
        await asyncio.wait_for(asyncio.gather(*synced), 10)
        first = client.process
        os.kill(first.pid, signal.SIGKILL)
        after = client.record_trade(won("late"))  # sent into a dying connection
        with pytest.raises(SettlerDown):
            await asyncio.wait_for(after, 10)
        for _ in range(200):  # the client starts another settler by itself
            if client.process is not first and client._writer and not client._writer.is_closing():
                break
            await asyncio.sleep(0.05)
        assert client.process is not first
        await asyncio.wait_for(client.record_trade(won("b1")), 10)
    finally:
        await client.close()
    ids = booked(db)
    assert all(f"a{i}" in ids for i in range(200)) and "b1" in ids


def test_frames_split_whole_frames_and_keep_the_rest():
    data = frames.frame(frames.TRADE, b"abc") + frames.frame(frames.REQUEST, b"[1]")
    buffer = bytearray(data + data[:4])
    assert frames.split(buffer) == [(frames.TRADE, b"abc"), (frames.REQUEST, b"[1]")]
    assert bytes(buffer) == data[:4]
    assert frames.split(buffer) == []

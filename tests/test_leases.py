"""Spending from budget leases: the keeper tops leases up, gives back what was not spent,
and processes sharing one bank never spend more than the budget between them."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import redis

from exchange import ledger
from exchange.bank import BudgetBank, MemoryBank, RedisBank
from exchange.db import Database
from exchange.leases import LeaseKeeper
from exchange.state import SECONDS_PER_DAY, CampaignState, utc_day
from protos.attnx.v1 import admin_pb2
from tests.conftest import Clock, PrivateRedis, RedisTarget
from tests.test_server_grpc import TIMEOUT, admin_stub, bid_request, exchange_stub, mega_campaign


def leased_state(
    budgets: dict[str, int], clock: Clock | None = None, acpm: int = 1_000
) -> CampaignState:
    """Campaigns at a $0.001 aCPM by default: one bid costs next to nothing, so lease sizes
    are the budget's share."""
    state = CampaignState(capacity=2, clock=clock or Clock(), leased=True)
    for campaign_id, budget in budgets.items():
        state.set_budget(state.slot(campaign_id), budget, acpm)
    return state


async def test_leases_arrive_in_slices_and_only_when_running_low():
    state = leased_state({"a": 1_000_000, "b": 5_000})
    keeper = LeaseKeeper(state, MemoryBank(), lease_fraction=0.1, min_lease_micros=1_000)
    assert state.limit[0] == 0 and not state.reserve(0, 1)  # nothing to spend before a lease
    assert await keeper.refill() == 100_000 + 1_000
    assert list(state.limit[:2]) == [100_000, 1_000]
    assert await keeper.refill() == 0  # still more than half a lease left
    assert state.reserve(0, 60_000)
    assert await keeper.refill() == 100_000  # under half a lease: one more slice
    assert state.limit[0] == 200_000


async def test_a_process_never_leases_past_the_budget():
    state = leased_state({"a": 25_000})
    keeper = LeaseKeeper(state, MemoryBank(), lease_fraction=0.5, min_lease_micros=10_000)
    for _ in range(10):
        await keeper.refill()
        while state.reserve(0, 1_000):
            pass
    assert state.limit[0] == state.spent[0] == 25_000


async def test_budget_back_for_a_trade_reserved_elsewhere_goes_to_the_bank():
    bank = MemoryBank()
    state = leased_state({"a": 100_000})
    keeper = LeaseKeeper(state, bank, lease_fraction=0.5, min_lease_micros=1)
    await keeper.refill()
    assert state.reserve(0, 10_000)
    # A void of 25,000: 10,000 was reserved here, the rest by a process that died.
    elsewhere = state.release(0, 25_000)
    assert elsewhere == 15_000 and state.spent[0] == 0
    keeper.give_back("a", state.day, elsewhere)
    await keeper.refill()
    assert await bank.leased(state.day, ["a"]) == [50_000 - 15_000]


async def test_a_lowered_budget_takes_the_unspent_lease_back_and_leases_under_the_new_one():
    bank = MemoryBank()
    state = leased_state({"a": 100_000})
    keeper = LeaseKeeper(state, bank, lease_fraction=0.5, min_lease_micros=1)
    await keeper.refill()
    assert state.reserve(0, 10_000) and state.limit[0] == 50_000
    state.set_budget(0, 30_000, 1_000)  # Admin lowered it: 40,000 unspent here is too much
    await keeper.refill()
    assert await bank.leased(state.day, ["a"]) == [state.limit[0]]
    assert state.limit[0] <= 30_000  # the new lease fits the new budget
    while state.reserve(0, 1_000):
        await keeper.refill()
    assert state.spent[0] == 30_000


class SlowBank(MemoryBank):
    """Grants at once, answers late: the window in which a cancelled round loses a grant."""

    async def lease(self, day, requests):
        granted = await super().lease(day, requests)
        await asyncio.sleep(0.05)
        return granted


async def test_stopping_mid_round_keeps_the_grant_and_gives_it_back():
    bank = SlowBank()
    state = leased_state({"a": 100_000})
    keeper = LeaseKeeper(state, bank, lease_fraction=0.5, min_lease_micros=1)
    task = asyncio.create_task(keeper.run())
    await asyncio.sleep(0.01)  # the bank has granted; its answer is on the way
    keeper.stopping = True
    await asyncio.wait_for(task, 1)  # ends after the round, with the grant counted
    assert state.limit[0] == 50_000
    await keeper.close()
    assert await bank.leased(state.day, ["a"]) == [0]  # nothing leased to nobody


async def test_a_clean_stop_gives_every_unspent_lease_back():
    bank = MemoryBank()
    state = leased_state({"a": 100_000, "b": 100_000})
    keeper = LeaseKeeper(state, bank, lease_fraction=0.2, min_lease_micros=1)
    await keeper.refill()
    state.reserve(0, 5_000)
    await keeper.close()
    assert await bank.leased(state.day, ["a", "b"]) == [5_000, 0]
    assert list(state.limit[:2]) == [5_000, 0]


async def test_a_new_day_starts_with_no_leases():
    clock = Clock()
    bank = MemoryBank()
    state = leased_state({"a": 100_000}, clock)
    keeper = LeaseKeeper(state, bank, lease_fraction=0.5, min_lease_micros=1)
    await keeper.refill()
    state.reserve(0, 40_000)
    clock.now += SECONDS_PER_DAY
    state.roll_day()
    assert state.limit[0] == state.spent[0] == 0
    await keeper.refill()
    assert state.limit[0] == 50_000  # today's budget, leased afresh


class Unreachable(MemoryBank):
    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def lease(self, day, requests):
        if self.down:
            raise ConnectionError("redis is down")
        return await super().lease(day, requests)


async def test_bidding_goes_on_within_held_leases_while_the_bank_is_down():
    bank = Unreachable()
    state = leased_state({"a": 1_000_000})
    keeper = LeaseKeeper(state, bank, lease_fraction=0.01, refill_interval_s=0.001)
    await keeper.refill()
    bank.down = True
    task = asyncio.create_task(keeper.run())
    spent = 0
    while state.reserve(0, 1_000):  # spends down the lease it holds, then stops
        spent += 1_000
        await asyncio.sleep(0)
    await asyncio.sleep(0.02)
    assert spent == 10_000 and keeper.failures > 0
    bank.down = False  # back: refills resume
    for _ in range(200):
        await asyncio.sleep(0.005)
        if state.limit[0] > 10_000:
            break
    task.cancel()
    assert state.limit[0] > 10_000 and keeper.failures == 0


async def _spend_concurrently(banks: list[BudgetBank], budget: int, seed: int) -> list[int]:
    """Several processes' worth of state and keeper on shared banks, spending at random
    until none can spend any more; returns what each spent."""
    rng = random.Random(seed)
    states = [leased_state({"hot": budget}) for _ in banks]
    keepers = [
        LeaseKeeper(s, b, lease_fraction=0.03, refill_interval_s=0.001, min_lease_micros=500)
        for s, b in zip(states, banks, strict=True)
    ]
    tasks = [asyncio.create_task(k.run()) for k in keepers]
    rounds, idle = 0, 0
    while idle < 50:  # voids for the first rounds, then spend until nobody can
        rounds += 1
        moved = False
        for state in states:
            if state.reserve(0, rng.randint(1, 3_000)):
                moved = True
            if rounds < 2_000 and rng.random() < 0.05 and state.spent[0] > 0:
                state.release(0, min(int(state.spent[0]), rng.randint(1, 2_000)))
        idle = 0 if moved else idle + 1
        await asyncio.sleep(0.0005 if idle else 0)
    for task in tasks:
        task.cancel()
    return [int(s.spent[0]) for s in states]


async def test_processes_sharing_a_memory_bank_never_spend_past_the_budget():
    bank = MemoryBank()
    spent = await _spend_concurrently([bank] * 4, budget=200_000, seed=1)
    assert sum(spent) <= 200_000 and sum(spent) > 150_000
    assert all(s > 0 for s in spent)


async def test_processes_sharing_redis_never_spend_past_the_budget(redis_target: RedisTarget):
    banks = [RedisBank(redis_target.url, prefix=redis_target.prefix) for _ in range(4)]
    try:
        spent = await _spend_concurrently(banks, budget=200_000, seed=2)
    finally:
        for bank in banks:
            await bank.close()
    assert sum(spent) <= 200_000 and sum(spent) > 150_000


def test_lease_sizes_follow_the_budget_and_always_cover_a_bid():
    state = leased_state({"a": 10_000_000, "b": 100}, acpm=4_000_000)  # 20 s: 80,000 micros
    state.set_budget(state.slot("pricey"), 1_000_000, 500_000_000)  # 20 s: $10, all of it
    keeper = LeaseKeeper(state, MemoryBank(), lease_fraction=0.01, min_lease_micros=5_000)
    assert list(keeper.lease_size(np.array([0, 1, 2]))) == [100_000, 80_000, 10_000_000]


@pytest.mark.parametrize("leased", [False, True])
def test_memory_mode_is_unchanged_and_lease_mode_starts_empty(leased: bool):
    state = CampaignState(capacity=2, leased=leased)
    state.set_budget(state.slot("a"), 1_000, 1)
    assert state.limit[0] == (0 if leased else 1_000)


# --- two real bid servers sharing Redis and PostgreSQL --------------------------------------


def test_two_servers_sharing_budgets_never_spend_past_one(
    start_server, tmp_path: Path, redis_target: RedisTarget, postgres_url: str
):
    """Both servers sell a $50-a-day campaign as fast as they can; together they stop at
    the budget, and after a clean stop the bank's leases equal the ledger's spend."""
    config = tmp_path / "attnx.toml"
    config.write_text(
        f'[state]\nurl = "{redis_target.url}"\nprefix = "{redis_target.prefix}"\n'
        "lease_fraction = 0.05\n"
    )
    mega = mega_campaign()
    mega.daily_budget_micros = 50_000_000  # leases of $10 (one 20 s bid): five of them
    shared = ("--config", str(config), "--db", postgres_url)
    first = start_server(*shared, db_path=tmp_path / "a.db")  # its own journal
    with first.channel() as channel:
        admin_stub(channel).UpsertCampaign(mega, timeout=TIMEOUT)
    second = start_server(*shared, db_path=tmp_path / "b.db")  # reads the saved campaign

    def sell(server) -> int:
        won, dry, ids = 0, 0, itertools.count()
        with server.channel() as channel:
            bidder = exchange_stub(channel)
            deadline = time.monotonic() + 30
            while dry < 40 and time.monotonic() < deadline:
                rid = f"{server.grpc_port}-{next(ids)}"
                request = bid_request(lambda body, rid=rid: body.update(id=rid))
                response = bidder.Bid(request, timeout=TIMEOUT)  # a new id: a new trade
                hit = any(b.cid == mega.id for s in response.seatbid for b in s.bid)
                won, dry = won + hit, 0 if hit else dry + 1
        return won

    with ThreadPoolExecutor(2) as pool:
        wins = list(pool.map(sell, [first, second]))
    assert all(w > 0 for w in wins), wins  # both sold from the same budget
    first.stop()
    second.stop()
    db = Database(postgres_url)
    with db.connect() as conn:
        day = utc_day()
        spent = ledger.spend_for_day(conn, day).get(mega.id, 0)

    async def leased() -> int:
        bank = RedisBank(redis_target.url, prefix=redis_target.prefix)
        try:
            return (await bank.leased(day, [mega.id]))[0]
        finally:
            await bank.close()

    assert 0.8 * mega.daily_budget_micros < spent <= mega.daily_budget_micros
    assert asyncio.run(leased()) == spent  # every unspent lease came back


def test_bids_go_on_while_redis_is_down_and_leasing_resumes_when_it_is_back(
    start_server, tmp_path: Path, private_redis: PrivateRedis
):
    config = tmp_path / "attnx.toml"
    config.write_text(f'[state]\nurl = "{private_redis.url}"\nrefill_interval_ms = 5\n')
    server = start_server("--config", str(config))
    mega = mega_campaign()
    mega.daily_budget_micros = 200_000_000  # leases of $10 (one bid of 20 s at its aCPM)
    with server.channel() as channel:
        admin, bidder = admin_stub(channel), exchange_stub(channel)
        admin.UpsertCampaign(mega, timeout=TIMEOUT)

        ids = itertools.count()

        def sells() -> bool:
            # First price (it pays its own bid), and a new request id: a new trade each time.
            request = bid_request(lambda body: body.update(at=1, id=f"down-{next(ids)}"))
            response = bidder.Bid(request, timeout=TIMEOUT)  # never an error
            return any(b.cid == mega.id for s in response.seatbid for b in s.bid)

        assert sum(sells() for _ in range(10)) > 5
        private_redis.stop()
        dry = 0
        for _ in range(400):  # it sells from the lease it holds, then stops
            dry = 0 if sells() else dry + 1
            if dry == 15:
                break
        assert dry == 15, "the campaign went on selling with Redis down: past its lease?"
        private_redis.start()  # back, with its data: leasing resumes (after the backoff)
        sold, deadline = 0, time.monotonic() + 15
        while sold < 5 and time.monotonic() < deadline:
            sold += sells()
        assert sold == 5, "the campaign never sold again after Redis came back"
    client = redis.Redis.from_url(private_redis.url)
    leased = sum(int(client.hget(k, "leased")) for k in client.scan_iter("attnx:bank:{zz-mega}:*"))
    assert leased <= mega.daily_budget_micros
    server.assert_graceful_exit()
    assert "budget bank refill failed" in server.log()
    assert "budget bank reachable again" in server.log()


# --- a bank that lost its data -----------------------------------------------------------


async def test_an_emptied_bank_is_rebuilt_from_the_ledger_and_the_live_leases():
    bank = MemoryBank()
    booked = {"a": 0}

    def ledger_spend(day: int) -> dict[str, int]:
        return dict(booked)

    states = [leased_state({"a": 1_000_000}) for _ in range(2)]
    keepers = [
        LeaseKeeper(s, bank, lease_fraction=0.1, min_lease_micros=1, ledger_spend=ledger_spend)
        for s in states
    ]
    for keeper in keepers:
        await keeper.refill()
    states[0].reserve(0, 30_000)
    states[1].reserve(0, 50_000)
    booked["a"] = 80_000 + 120_000  # these two, and 120,000 from a process that died
    bank.lose_everything()  # Redis restarted without its data
    await keepers[0].refill()  # notices, rebuilds: ledger + its own unspent 70,000
    assert await bank.leased(states[0].day, ["a"]) == [200_000 + 70_000]
    await keepers[1].refill()  # sees the new epoch: adds its unspent 50,000
    assert await bank.leased(states[0].day, ["a"]) == [270_000 + 50_000]


async def test_nobody_leases_while_another_process_rebuilds_the_bank():
    bank = MemoryBank()
    state = leased_state({"a": 1_000_000})
    keeper = LeaseKeeper(state, bank, lease_fraction=0.1, min_lease_micros=1)
    assert await bank.begin_rebuild("someone-else")
    assert await keeper.refill() == 0 and state.limit[0] == 0
    await bank.finish_rebuild("someone-else")
    assert await keeper.refill() == 100_000


def test_a_redis_that_lost_its_data_does_not_hand_the_budget_out_again(
    start_server, tmp_path: Path, private_redis: PrivateRedis
):
    """Half the budget is sold; Redis loses everything; the restarted server must not be
    granted the whole budget again: the bank is rebuilt from the ledger first."""
    config = tmp_path / "attnx.toml"
    config.write_text(
        f'[state]\nurl = "{private_redis.url}"\nrefill_interval_ms = 5\n'
        '[pacing]\nmethod = "none"\n'  # full-value bids: each sale costs the same
    )
    mega = mega_campaign()
    mega.daily_budget_micros = 8_000_000  # about six first-price sales
    ids = itertools.count()

    def sell(server, until_spent: int | None) -> None:
        with server.channel() as channel:
            admin, bidder = admin_stub(channel), exchange_stub(channel)
            admin.UpsertCampaign(mega, timeout=TIMEOUT)
            ref = admin_pb2.CampaignRef(id=mega.id)
            dry, deadline = 0, time.monotonic() + 60
            while dry < 30:
                assert time.monotonic() < deadline, "never stopped selling"
                # First price (it pays its own bid); a new request id: a new trade each time.
                request = bid_request(
                    lambda body: body.update(at=1, id=f"{server.db_path}-{next(ids)}")
                )
                response = bidder.Bid(request, timeout=TIMEOUT)
                sold = any(b.cid == mega.id for s in response.seatbid for b in s.bid)
                dry = 0 if sold else dry + 1
                status = admin.GetCampaign(ref, timeout=TIMEOUT)
                if until_spent is not None and status.spent_today_micros >= until_spent:
                    return
                time.sleep(0.002 if sold else 0.01)  # let a lease arrive

    first = start_server("--config", str(config))
    sell(first, until_spent=mega.daily_budget_micros // 2)
    first.assert_graceful_exit()  # gives its unspent leases back
    redis.Redis.from_url(private_redis.url).flushall()  # Redis restarted without its data
    second = start_server("--config", str(config), db_path=first.db_path)
    sell(second, until_spent=None)  # until the campaign sells no more
    second.assert_graceful_exit()
    with Database(f"sqlite:///{first.db_path}").connect() as conn:
        booked = ledger.spend_for_day(conn, utc_day()).get(mega.id, 0)
    assert mega.daily_budget_micros // 2 < booked <= mega.daily_budget_micros, booked
    assert "rebuilt from the ledger" in second.log()

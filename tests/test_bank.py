"""The budget bank: the same behaviour from the in-memory bank and from real Redis, and
no overdraft when several processes lease the same campaign at once."""

from __future__ import annotations

import asyncio
import multiprocessing
import random
from collections.abc import AsyncIterator

import pytest

from exchange.bank import BankError, BudgetBank, LeaseRequest, MemoryBank, RedisBank, open_bank
from tests.conftest import RedisTarget

DAY = 20_000


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
async def bank(request: pytest.FixtureRequest) -> AsyncIterator[BudgetBank]:
    if request.param == "memory":
        made: BudgetBank = MemoryBank()
    else:
        target: RedisTarget = request.getfixturevalue("redis_target")
        url = request.getfixturevalue("redis_cluster") if "cluster" in request.param else target.url
        made = RedisBank(url, prefix=target.prefix)
    yield made
    await made.close()


def ask(campaign_id: str, budget: int, want: int) -> LeaseRequest:
    return LeaseRequest(campaign_id, budget, want)


async def test_leases_are_granted_until_the_budget_is_carved_out(bank: BudgetBank):
    assert await bank.lease(DAY, [ask("a", 1000, 400), ask("b", 50, 10)]) == [400, 10]
    assert await bank.lease(DAY, [ask("a", 1000, 400)]) == [400]
    assert await bank.lease(DAY, [ask("a", 1000, 400)]) == [200]  # only what is left
    assert await bank.lease(DAY, [ask("a", 1000, 1)]) == [0]
    assert await bank.leased(DAY, ["a", "b", "unknown"]) == [1000, 10, 0]


async def test_days_are_separate_and_a_lowered_budget_grants_nothing_more(bank: BudgetBank):
    assert await bank.lease(DAY, [ask("a", 1000, 900)]) == [900]
    assert await bank.lease(DAY + 1, [ask("a", 1000, 900)]) == [900]  # a new day's budget
    assert await bank.lease(DAY, [ask("a", 500, 100)]) == [0]  # budget cut below the leases
    assert await bank.lease(DAY, [ask("a", 1000, 0)]) == [0]


async def test_a_lease_given_back_can_be_leased_again(bank: BudgetBank):
    await bank.lease(DAY, [ask("a", 1000, 1000)])
    await bank.give_back(DAY, [("a", 300)])
    assert await bank.leased(DAY, ["a"]) == [700]
    assert await bank.lease(DAY, [ask("a", 1000, 500)]) == [300]


async def test_giving_back_more_than_was_leased_is_refused_and_changes_nothing(bank: BudgetBank):
    await bank.lease(DAY, [ask("a", 1000, 100)])
    with pytest.raises(BankError, match="cannot give back 101 micros"):
        await bank.give_back(DAY, [("a", 101)])
    assert await bank.leased(DAY, ["a"]) == [100]


@pytest.mark.parametrize(
    ("day", "request_", "message"),
    [
        (-1, ask("a", 1, 1), "day must be >= 0"),
        (DAY, ask("", 1, 1), r"requests\[0\]\.campaign_id must not be empty"),
        (DAY, ask("a", -1, 1), r"requests\[0\]\.daily_budget_micros must be >= 0"),
        (DAY, ask("a", 1, -1), r"requests\[0\]\.want_micros must be >= 0"),
    ],
)
async def test_bad_requests_name_the_field(bank: BudgetBank, day, request_, message):
    with pytest.raises(BankError, match=message):
        await bank.lease(day, [request_])
    with pytest.raises(BankError, match=r"returns\[0\]\.micros must be >= 0"):
        await bank.give_back(DAY, [("a", -5)])


async def test_a_batch_is_one_answer_per_request_in_order(bank: BudgetBank):
    requests = [ask(f"c{i}", 100 * (i + 1), 150) for i in range(50)]
    granted = await bank.lease(DAY, requests)
    assert granted == [min(150, 100 * (i + 1)) for i in range(50)]
    assert await bank.lease(DAY, []) == []


async def test_a_new_generation_is_started_by_one_rebuilder_at_a_time(bank: BudgetBank):
    assert await bank.epoch() is None  # an empty bank: new, or its data was lost
    assert await bank.begin_rebuild("p1")
    assert not await bank.begin_rebuild("p2")  # one rebuilder at a time
    await bank.add_leased(DAY, [("a", 700), ("b", 0)])
    epoch = await bank.finish_rebuild("p1")
    assert await bank.epoch() == epoch
    assert await bank.leased(DAY, ["a", "b"]) == [700, 0]
    assert await bank.lease(DAY, [ask("a", 1000, 1000)]) == [300]  # the rebuilt part counts
    assert await bank.begin_rebuild("p2")  # the lock was released
    with pytest.raises(BankError, match=r"returns\[0\]\.micros must be >= 0"):
        await bank.add_leased(DAY, [("a", -1)])


def test_open_bank_knows_its_urls():
    assert isinstance(open_bank("memory"), MemoryBank)
    with pytest.raises(BankError, match='state url must be "memory" or "redis://'):
        open_bank("postgres://nope")


# --- several processes at once against real Redis ----------------------------------------

BUDGET = 1_000_003  # not a multiple of any lease size below


def _lease_until_dry(url: str, prefix: str, seed: int, start, out: multiprocessing.Queue) -> None:
    """One bid server's lease traffic: random sizes, many in flight, until nothing is left."""

    async def run() -> int:
        bank = RedisBank(url, prefix=prefix)
        await bank.leased(DAY, ["hot"])  # connected before the start
        start.wait()  # all four begin together
        rng = random.Random(seed)
        total = 0
        while True:
            batch = [ask("hot", BUDGET, rng.randint(1, 5000)) for _ in range(8)]
            granted = await asyncio.gather(*(bank.lease(DAY, [r]) for r in batch))
            got = sum(g[0] for g in granted)
            total += got
            if got == 0:
                await bank.close()
                return total

    out.put(asyncio.run(run()))


def test_four_processes_leasing_one_campaign_never_overdraw_it(redis_target: RedisTarget):
    ctx = multiprocessing.get_context("spawn")
    out, start = ctx.Queue(), ctx.Barrier(4)
    target = (redis_target.url, redis_target.prefix)
    workers = [
        ctx.Process(target=_lease_until_dry, args=(*target, s, start, out)) for s in range(4)
    ]
    for w in workers:
        w.start()
    totals = [out.get(timeout=60) for _ in workers]
    for w in workers:
        w.join(timeout=10)
    assert sum(totals) == BUDGET  # everything leased, not a micro more
    assert sum(t > 0 for t in totals) >= 2, totals  # they really raced

    async def leased() -> list[int]:
        bank = RedisBank(redis_target.url, prefix=redis_target.prefix)
        try:
            return await bank.leased(DAY, ["hot"])
        finally:
            await bank.close()

    assert asyncio.run(leased()) == [BUDGET]

"""Pacing shared by several bid servers through real Redis: one leader sees everyone's
counters and every process applies its decision."""

from __future__ import annotations

import asyncio

import numpy as np

from exchange.pacers import DualGradient, Observation
from exchange.pacing_loop import PacingLoop
from exchange.pacing_shared import SharedPacing
from exchange.state import CampaignState
from tests.conftest import Clock, RedisTarget


class Recording(DualGradient):
    """The dual controller, keeping every observation it was given."""

    def __init__(self) -> None:
        super().__init__(step=0.5, initial_mu=0.0)
        self.seen: list[Observation] = []

    def act(self, obs: Observation):
        self.seen.append(obs)
        return super().act(obs)


def process(campaigns: list[str], clock: Clock, target: RedisTarget, interval_s: float = 900):
    """One bid server's pacing: its own state (its own slot order) and loop."""
    state = CampaignState(capacity=4, clock=clock, leased=True)
    for campaign_id in campaigns:
        state.set_budget(state.slot(campaign_id), 1_000_000, 4_000_000)
        state.limit[state.slot(campaign_id)] = 1_000_000  # as if its leases had come
    shared = SharedPacing(target.url, target.prefix, interval_s, settle_s=0.05)
    return state, PacingLoop(state, Recording(), interval_s, clock=clock, shared=shared)


async def test_one_leader_paces_everyone_on_the_sum_of_their_counters(redis_target: RedisTarget):
    clock = Clock()
    a_state, a = process(["x", "y"], clock, redis_target)
    b_state, b = process(["y", "x", "only-b"], clock, redis_target)  # other slot order
    try:
        await asyncio.gather(a.tick_async(), b.tick_async())  # first interval: no data yet
        leaders = [loop for loop in (a, b) if loop.pacer.seen]
        assert len(leaders) == 1  # exactly one process paced
        # Each process spends on "x" in the next interval: together far over its plan.
        a_state.reserve(a_state.slot("x"), 200_000)
        b_state.reserve(b_state.slot("x"), 300_000)
        a_state.seen[a_state.slot("x")] = 7
        b_state.seen[b_state.slot("x")] = 5
        clock.now += 900
        await asyncio.gather(a.tick_async(), b.tick_async())
        leader = leaders[0]
        obs = leader.pacer.seen[-1]
        x = leader.state.slot("x")
        assert obs.spent[x] == 500_000 and obs.last_spend[x] == 500_000  # both processes
        assert obs.last_seen[x] == 12
        for state in (a_state, b_state):  # both apply the same decision, by campaign id
            assert state.multiplier[state.slot("x")] < 1.0
            assert state.multiplier[state.slot("y")] == 1.0
        assert b_state.multiplier[b_state.slot("only-b")] == 1.0  # unknown to the leader: kept
    finally:
        for loop in (a, b):
            await loop.shared.close()


async def test_the_lead_passes_on_when_the_leader_stops_renewing(redis_target: RedisTarget):
    clock = Clock()
    _, a = process(["x"], clock, redis_target, interval_s=0.2)  # the lock lives 0.4 s
    _, b = process(["x"], clock, redis_target, interval_s=0.2)
    try:
        assert await a.shared.lead()
        assert not await b.shared.lead()
        assert await a.shared.lead()  # renewing keeps it
        await asyncio.sleep(0.5)  # a is gone (no renewal): the lock expires
        assert await b.shared.lead()
        assert not await a.shared.lead()
    finally:
        for loop in (a, b):
            await loop.shared.close()


async def test_without_a_decision_a_process_keeps_its_multipliers(redis_target: RedisTarget):
    clock = Clock()
    state, loop = process(["x"], clock, redis_target, interval_s=0.2)
    try:
        await loop.shared.redis.set(f"{redis_target.prefix}:pacing:leader", "someone-else")
        state.multiplier[0] = 0.3
        await loop.tick_async()  # nobody publishes: it waits half an interval, then goes on
        assert state.multiplier[0] == 0.3
        assert not loop.pacer.seen
        assert np.all(state.seen == 0)  # its counters were still reported and cleared
    finally:
        await loop.shared.close()

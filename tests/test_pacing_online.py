"""Pacing in the running exchange: the auction's counters, the control loop, Admin.

The loop is tested with a fake clock (ticks, a new day, new campaigns), the auction
with the in-process harness of test_auction (counters, throttling, multipliers),
and the whole thing in a real server process over gRPC.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from exchange.config import ConfigError, PacingConfig, load_config
from exchange.pacers import DEFAULT_POLICY, DualGradient, NoPacing, PolicyPacer, Throttle
from exchange.pacing_loop import PacingLoop, make_pacer
from exchange.state import SECONDS_PER_DAY, CampaignState
from protos.attnx.v1 import admin_pb2
from tests.conftest import Clock
from tests.test_auction import Harness, campaign, request
from tests.test_server_grpc import TIMEOUT, admin_stub, bid_request, exchange_stub, mega_campaign

LOW = 0.05  # far below any method's starting multiplier: pacing must have acted


def state_with(budgets: list[int], clock: Clock) -> CampaignState:
    state = CampaignState(capacity=2, clock=clock)
    for i, budget in enumerate(budgets):
        state.set_budget(state.slot(f"c{i}"), budget, 4_000_000)
    return state


# --- the control loop ------------------------------------------------------------------


def test_a_tick_turns_overspending_into_a_lower_multiplier_and_clears_the_counters():
    clock = Clock()
    state = state_with([1_000_000, 1_000_000], clock)
    loop = PacingLoop(state, DualGradient(step=0.5, initial_mu=0.0), interval_s=900, clock=clock)
    loop.tick()
    assert np.all(state.multiplier[:2] == 1.0)  # mu 0: full value
    # Campaign 0 spends half its day's budget in one interval; campaign 1 nothing.
    state.reserve(0, 500_000)
    state.seen[:2] = 100
    state.wins[0], state.won_seconds[0] = 50, 150.0
    clock.now += 900
    tick = loop.tick()
    assert tick.campaigns == 2
    assert state.multiplier[0] < 1.0  # far over its plan: bid lower
    assert state.multiplier[1] == 1.0  # under plan with mu at 0: stays at full value
    assert not state.seen.any() and not state.wins.any() and not state.won_seconds.any()
    assert loop.spent_before[0] == 500_000


def test_a_new_day_resets_the_pacer_and_new_campaigns_join_mid_day():
    clock = Clock()
    state = state_with([1_000_000], clock)
    loop = PacingLoop(state, DualGradient(step=0.5, initial_mu=0.0), interval_s=900, clock=clock)
    loop.tick()
    state.reserve(0, 900_000)
    clock.now += 900
    loop.tick()
    low = state.multiplier[0]
    assert low < 1.0
    state.set_budget(state.slot("late"), 2_000_000, 4_000_000)  # a campaign added mid-day
    clock.now += 900
    loop.tick()
    assert loop.pacer.n == 2 and state.multiplier[1] == 1.0
    assert state.multiplier[0] < 1.0  # the first campaign kept its state (a fresh one: 1.0)
    clock.now += SECONDS_PER_DAY  # midnight passed: spend and pacing start over
    loop.tick()
    assert state.spent[0] == 0
    assert np.all(state.multiplier[:2] == 1.0)


async def test_the_async_tick_decides_off_the_loop_and_drops_a_decision_for_a_past_day():
    clock = Clock()
    state = state_with([1_000_000, 1_000_000], clock)

    class SlowOverMidnight(DualGradient):
        def act(self, obs):
            clock.now += SECONDS_PER_DAY  # midnight passes while the worker thinks
            return super().act(obs)

    loop = PacingLoop(state, DualGradient(initial_mu=3.0), interval_s=900, clock=clock)
    tick = await loop.tick_async()
    assert tick.campaigns == 2 and np.allclose(state.multiplier[:2], 0.25)
    state.multiplier[:2] = 1.0
    late = PacingLoop(state, SlowOverMidnight(initial_mu=3.0), interval_s=900, clock=clock)
    await late.tick_async()
    assert np.all(state.multiplier[:2] == 1.0)  # yesterday's decision was not applied


def test_throttling_sets_pass_rates_and_the_auction_draws_who_enters():
    clock = Clock()
    h = Harness([campaign("a", 3.0), campaign("b", 2.0)])
    state = h.book.state
    loop = PacingLoop(state, Throttle(initial=0.2), interval_s=900, clock=clock)
    loop.tick()
    assert state.throttled and np.allclose(state.pass_rate[:2], 0.2)
    state.pass_rate[state.slot("a")] = 0.0  # a never enters, b always: b wins every auction
    state.pass_rate[state.slot("b")] = 1.0
    winners = {h.run(request(id=f"r{i}")).bids[0].campaign_id for i in range(30)}
    assert winners == {"b"}
    assert state.seen[state.slot("a")] == 30  # eligible all the same: the pacer sees it


def test_the_auction_counts_only_billable_auctions_and_bids_at_the_multiplier():
    h = Harness([campaign("a", 3.0), campaign("b", 2.0)])
    state = h.book.state
    a, b = state.slot("a"), state.slot("b")
    h.run(request(id="t", test=1))  # test mode buys nothing and counts nothing
    assert not state.seen.any() and not state.wins.any()
    h.run(request(id="r1"))
    assert state.seen[a] == state.seen[b] == 1
    assert state.wins[a] == 1 and state.won_seconds[a] == pytest.approx(2.0)
    state.multiplier[a] = 0.5  # a now bids 3.0 x 0.5 x 2 s = 3.0 CPM < b's 4.0
    assert h.run(request(id="r2")).bids[0].campaign_id == "b"


def test_no_pacing_keeps_full_value_and_the_budget_still_bounds_spend():
    clock = Clock()
    h = Harness([campaign("a", 3.0, budget_usd=0.02)])
    loop = PacingLoop(h.book.state, NoPacing(), interval_s=900, clock=clock)
    for i in range(40):
        loop.tick()
        h.run(request(id=f"r{i}"))
    state = h.book.state
    assert state.multiplier[0] == 1.0
    assert 0 < state.spent[0] <= state.budget[0]


# --- configuration ---------------------------------------------------------------------


def test_pacing_config_is_checked():
    with pytest.raises(ConfigError, match=r"config\.pacing\.method must be one of"):
        load_config(pacing={"method": "greedy"})
    with pytest.raises(ConfigError, match=r"config\.pacing\.interval_s"):
        load_config(pacing={"interval_s": 0.0})
    with pytest.raises(ConfigError, match="cannot load a pacing policy from /nowhere"):
        make_pacer(PacingConfig(policy="/nowhere"))


def test_the_shipped_policy_loads_and_a_tampered_one_is_refused(tmp_path: Path):
    pacer = make_pacer(PacingConfig())
    assert isinstance(pacer, PolicyPacer) and len(pacer.version) == 12
    bad = tmp_path / "policy"
    bad.mkdir()
    (bad / "spec.json").write_bytes((DEFAULT_POLICY / "spec.json").read_bytes())
    blob = bytearray((DEFAULT_POLICY / "policy.npz").read_bytes())
    blob[-40] ^= 1
    (bad / "policy.npz").write_bytes(bytes(blob))
    with pytest.raises(ConfigError, match=r"does not match its spec\.json"):
        make_pacer(replace(PacingConfig(), policy=str(bad)))


# --- a running server --------------------------------------------------------------------


def test_a_running_server_paces_a_campaign_that_spends_too_fast(start_server, tmp_path: Path):
    """The learned policy lowers the multiplier of a campaign spending its day's budget in
    seconds; spend never passes the budget; Admin shows both."""
    config = tmp_path / "attnx.toml"
    config.write_text('[pacing]\nmethod = "rl"\ninterval_s = 0.2\n')
    server = start_server("--config", str(config))
    with server.channel() as channel:
        admin, bidder = admin_stub(channel), exchange_stub(channel)
        mega = mega_campaign()
        mega.daily_budget_micros = 50_000_000  # $50 a day
        admin.UpsertCampaign(mega, timeout=TIMEOUT)
        won, deadline = 0, time.monotonic() + 20
        while time.monotonic() < deadline:
            request = bid_request(lambda body: body.update(id=f"fast-{time.monotonic_ns()}"))
            response = bidder.Bid(request, timeout=TIMEOUT)  # a new id: a new trade
            won += any(b.cid == mega.id for s in response.seatbid for b in s.bid)
            status = admin.GetCampaign(admin_pb2.CampaignRef(id=mega.id), timeout=TIMEOUT)
            assert status.spent_today_micros <= mega.daily_budget_micros
            if won and status.multiplier < LOW:
                break
        assert won, "the mega campaign never won"
        assert status.multiplier < LOW, "pacing never slowed the campaign down"
        pacing = admin.GetPacing(admin_pb2.GetPacingRequest(page_size=1000), timeout=TIMEOUT)
    assert pacing.method == "rl" and len(pacing.policy_version) == 12
    assert pacing.interval_s == 0.2 and pacing.last_tick_unix_ms > 0
    assert mega.id in {s.campaign.id for s in pacing.campaigns}
    assert all(0 < s.multiplier <= 1 and s.pass_rate == 1 for s in pacing.campaigns)

"""Pacing in the running exchange: every control interval, new multipliers from live counters.

The auction counts, per campaign slot, the auctions each campaign was eligible for,
its wins and the attentive seconds it bought; this loop reads those counters and
today's spend (reservations included) at each interval boundary of the UTC day,
builds the same `Observation` the market simulator gives, and writes the pacer's
multipliers and pass rates back into the state the auction reads. Reading and
writing happen on the event loop between requests, so no auction sees half an
update; the pacer's own arithmetic (the policy's MLP over every campaign) runs on a
worker thread in between.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exchange.background import stop_if_cancelled
from exchange.config import ConfigError, PacingConfig
from exchange.pacers import (
    BASELINES,
    DEFAULT_POLICY,
    SECONDS_PER_DAY,
    Observation,
    Pacer,
    PolicyPacer,
    traffic_share,
)
from exchange.pacing_shared import SharedPacing, by_slot
from exchange.state import CampaignState

log = logging.getLogger("attnx.pacing")


def make_pacer(config: PacingConfig) -> Pacer:
    """The configured method; the learned policy is loaded (and its hash checked) here."""
    if config.method == "rl":
        directory = Path(config.policy) if config.policy else DEFAULT_POLICY
        try:
            return PolicyPacer.load(directory)
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(
                f"config.pacing.policy: cannot load a pacing policy from {directory}: {exc} "
                "(write one with `attnx pacing train`)"
            ) from None
    return BASELINES[config.method]()


@dataclass(frozen=True)
class Tick:
    """What the last control step did, for the Admin service."""

    at: float  # unix seconds
    campaigns: int
    seconds: float  # how long the step took


class PacingLoop:
    def __init__(
        self,
        state: CampaignState,
        pacer: Pacer,
        interval_s: float,
        clock: Callable[[], float] = time.time,
        shared: SharedPacing | None = None,
    ) -> None:
        """`shared`: pace together with the other bid servers (one leader decides)."""
        self.state, self.pacer, self.interval_s, self.clock = state, pacer, interval_s, clock
        self.shared = shared
        self.day = -1
        self.spent_before = np.zeros(0, np.int64)  # [n] spend at the last tick
        self.last: Tick | None = None

    def observe(self) -> Observation:
        """Read and clear the interval's counters. On the event loop, between auctions:
        no auction's counts fall between the read and the clear."""
        state = self.state
        state.roll_day()
        n = len(state.slots)
        if state.day != self.day:  # a new day (or the first tick): every campaign starts over
            self.day = state.day
            self.pacer.reset(n)
            self.spent_before = state.spent[:n].copy()
            state.clear_counters()
        elif n > self.pacer.n:  # campaigns were added since the last tick
            self.pacer.grow(n)
            self.spent_before = np.concatenate(
                [self.spent_before, state.spent[len(self.spent_before) : n]]
            )
        now = self.clock() % SECONDS_PER_DAY
        spent = state.spent[:n].copy()
        obs = Observation(
            time_left=1.0 - now / SECONDS_PER_DAY,
            traffic_next=float(traffic_share(now, min(now + self.interval_s, SECONDS_PER_DAY))),
            traffic_left=float(traffic_share(now, SECONDS_PER_DAY)),
            budget=state.budget[:n].copy(),
            spent=spent,
            last_spend=np.maximum(spent - self.spent_before, 0),  # voids give budget back
            last_seen=state.seen[:n].copy(),
            last_wins=state.wins[:n].copy(),
            last_seconds=state.won_seconds[:n].copy(),
            acpm_micros=np.maximum(state.acpm[:n], 1.0),
        )
        state.clear_counters()
        self.spent_before = spent
        return obs

    def apply(self, day: int, multiplier: np.ndarray, pass_rate: np.ndarray) -> bool:
        """Set the next interval's pacing (on the event loop); a decision made for a
        day that has since ended is dropped."""
        self.state.roll_day()
        if self.state.day != day:
            return False
        n = len(multiplier)
        self.state.multiplier[:n] = multiplier
        self.state.pass_rate[:n] = pass_rate
        self.state.throttled = bool((pass_rate < 1.0).any())
        return True

    def tick(self) -> Tick:
        """One control step, all on the calling thread."""
        started = time.perf_counter()
        obs = self.observe()
        self.apply(self.day, *self.pacer.act(obs))
        self.last = Tick(self.clock(), len(obs.budget), time.perf_counter() - started)
        return self.last

    async def tick_async(self) -> Tick:
        """One control step with the pacer's arithmetic on a worker thread: numpy releases
        the GIL, so auctions keep running while a policy paces 100k campaigns."""
        started = time.perf_counter()
        obs = self.observe()
        day = self.day
        if self.shared is None:
            self.apply(day, *await asyncio.to_thread(self.pacer.act, obs))
        else:
            await self._tick_shared(obs, day)
        self.last = Tick(self.clock(), len(obs.budget), time.perf_counter() - started)
        return self.last

    async def _tick_shared(self, obs: Observation, day: int) -> None:
        """Report this process's counters; if leading, pace everyone; apply the decision."""
        shared, state = self.shared, self.state
        interval = int(self.clock() // self.interval_s)
        ids = state.ids[: len(obs.budget)]
        await shared.report(interval, ids, obs)
        if await shared.lead():
            merged = await shared.merge(interval, ids, obs)
            await shared.publish(interval, ids, await asyncio.to_thread(self.pacer.act, merged))
        decision = await shared.fetch(interval, self.interval_s / 2)
        state.roll_day()
        if decision is None or state.day != day:
            log.warning(
                "no pacing decision for interval %d: multipliers left as they were", interval
            )
            return
        slots, multiplier, pass_rate = by_slot(decision, state.slots)
        state.multiplier[slots] = multiplier
        state.pass_rate[slots] = pass_rate
        state.throttled = bool((state.pass_rate[: len(state.slots)] < 1.0).any())

    def next_delay(self) -> float:
        """Seconds to the next interval boundary of the day, so intervals line up with
        the ones the policy was trained on (00:00, 00:15, ...)."""
        now = self.clock() % SECONDS_PER_DAY
        return self.interval_s - (now % self.interval_s) or self.interval_s

    async def run(self) -> None:
        """Tick at every interval boundary until cancelled; a failed tick is logged and
        the multipliers stay as they were (the budget check still bounds the spend)."""
        while True:
            try:
                await self.tick_async()
            except Exception:
                stop_if_cancelled()
                log.exception("pacing tick failed; multipliers left as they were")
            await asyncio.sleep(self.next_delay())

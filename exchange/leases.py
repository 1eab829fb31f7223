"""The lease keeper: keeps each campaign's lease topped up from the budget bank.

A bid server spends from leases (see `exchange.bank`), so a bid never waits on
Redis. This background task tops up, every refill interval and in one pipelined
round trip, the campaigns whose unspent lease has fallen under half a lease. A
lease is `lease_fraction` of the daily budget (at least `min_lease_micros`): what a
crashed process can strand is one lease per campaign, and what a refill costs is
one round trip per interval however many campaigns it covers. Budget that comes
back for trades this process did not reserve goes back to the bank, and on a clean
stop every unspent lease is given back.

If the bank cannot be reached, bidding goes on within the leases already held,
and refills retry with a growing pause (up to `MAX_BACKOFF_S`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

import numpy as np

from exchange.bank import BankError, BudgetBank, LeaseRequest
from exchange.state import CampaignState

log = logging.getLogger("attnx.leases")

MAX_BACKOFF_S = 2.0
LEASE_COVERS_SECONDS = 20.0  # a lease pays at least one bid of this many attentive seconds


class LeaseKeeper:
    def __init__(
        self,
        state: CampaignState,
        bank: BudgetBank,
        lease_fraction: float = 0.01,
        refill_interval_s: float = 0.01,
        min_lease_micros: int = 10_000,
    ) -> None:
        self.state, self.bank = state, bank
        self.lease_fraction = lease_fraction
        self.refill_interval_s = refill_interval_s
        self.min_lease_micros = min_lease_micros
        self._returns: dict[tuple[int, str], int] = defaultdict(int)  # (day, campaign) -> micros
        self.failures = 0  # refills failed in a row

    def lease_size(self, slots: np.ndarray) -> np.ndarray:
        """[C] micros per lease: a share of the daily budget, but never less than the
        minimum nor than one bid of `LEASE_COVERS_SECONDS` at the full aCPM: a campaign
        only bids what its unspent lease can pay, so a lease smaller than a bid would
        keep it out of every auction."""
        st = self.state
        share = (st.budget[slots] * self.lease_fraction).astype(np.int64)
        one_bid = (st.acpm[slots] * LEASE_COVERS_SECONDS / 1000).astype(np.int64)
        return np.maximum(np.maximum(share, one_bid), self.min_lease_micros)

    def due(self) -> np.ndarray:
        """Slots whose unspent lease is under half a lease and whose budget is not all
        leased here already ([C] int64)."""
        st = self.state
        n = len(st.slots)
        slots = np.arange(n)
        low = st.limit[:n] - st.spent[:n] < self.lease_size(slots) // 2
        return np.flatnonzero(low & (st.budget[:n] > 0) & (st.limit[:n] < st.budget[:n]))

    def give_back(self, campaign_id: str, day: int, micros: int) -> None:
        """Queue budget for the bank (sent with the next refill)."""
        if micros > 0:
            self._returns[day, campaign_id] += micros

    async def refill(self) -> int:
        """One round of leases and returns; returns the micros newly leased."""
        await self._flush_returns()
        st = self.state
        st.roll_day()
        day, slots = st.day, self.due()
        if slots.size == 0:
            return 0
        ids = st.ids
        sizes = self.lease_size(slots)
        requests = [
            LeaseRequest(ids[s], int(st.budget[s]), int(size))
            for s, size in zip(slots, sizes, strict=True)
        ]
        granted = await self.bank.lease(day, requests)
        if st.day != day:  # midnight passed during the round trip: yesterday's leases
            return 0
        st.limit[slots] += np.asarray(granted, dtype=np.int64)
        return int(sum(granted))

    async def _flush_returns(self) -> None:
        by_day: dict[int, list[tuple[str, int]]] = defaultdict(list)
        for (day, campaign_id), micros in self._returns.items():
            by_day[day].append((campaign_id, micros))
        for day, returns in by_day.items():
            try:
                await self.bank.give_back(day, returns)
            except BankError as exc:  # refused, not unreachable: retrying cannot help
                log.error("the budget bank refused returns for day %d: %s", day, exc)
            for campaign_id, _ in returns:
                del self._returns[day, campaign_id]

    async def run(self) -> None:
        """Refill until cancelled; a failed round is logged and retried after a pause."""
        while True:
            try:
                await self.refill()
                if self.failures:
                    log.info("budget bank reachable again after %d failed refills", self.failures)
                self.failures = 0
                await asyncio.sleep(self.refill_interval_s)
            except Exception as exc:
                self.failures += 1
                pause = min(MAX_BACKOFF_S, self.refill_interval_s * 2**self.failures)
                if self.failures == 1 or self.failures % 100 == 0:
                    log.warning("budget bank refill failed (%s); bidding within held leases", exc)
                await asyncio.sleep(pause)

    async def close(self) -> None:
        """Give every unspent lease of today back, so other processes can spend it."""
        st = self.state
        st.roll_day()
        n = len(st.slots)
        unspent = st.limit[:n] - st.spent[:n]
        ids = st.ids
        for s in np.flatnonzero(unspent > 0):
            self.give_back(ids[s], st.day, int(unspent[s]))
        st.limit[:n] = st.spent[:n]
        await self._flush_returns()

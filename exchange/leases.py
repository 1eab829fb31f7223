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
and refills retry with a growing pause (up to `MAX_BACKOFF_S`). If it comes back
empty (a Redis restarted without its data), it is rebuilt from the ledger and the
live processes' leases before anyone leases again (`_same_bank`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable

import numpy as np

from exchange.background import stop_if_cancelled
from exchange.bank import BankError, BudgetBank, LeaseRequest, holder_id
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
        ledger_spend: Callable[[int], dict[str, int]] | None = None,
    ) -> None:
        """`ledger_spend(day)`: each campaign's spend booked in the ledger that day (reads
        the database; called off the event loop), to rebuild a bank that lost its data."""
        self.state, self.bank = state, bank
        self.ledger_spend = ledger_spend
        self.epoch: str | None = None  # the bank generation this process's leases belong to
        self.me = holder_id(self)
        self.lease_fraction = lease_fraction
        self.refill_interval_s = refill_interval_s
        self.min_lease_micros = min_lease_micros
        self._returns: dict[tuple[int, str], int] = defaultdict(int)  # (day, campaign) -> micros
        self.failures = 0  # refills failed in a row
        self.stopping = False  # run() ends after its current round
        self._half: tuple[int, np.ndarray] = (-1, np.zeros(0, np.int64))  # (version, [S])
        self._budgets: tuple[int, np.ndarray] = (-1, np.zeros(0, np.int64))  # last seen [S]

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
        if self._half[0] != st.budgets_changed:  # half a lease per slot, 0 without a budget
            half = np.where(st.budget[:n] > 0, self.lease_size(np.arange(n)) // 2, 0)
            self._half = (st.budgets_changed, half)
        limit = st.limit[:n]
        low = limit - st.spent[:n] < self._half[1]
        return np.flatnonzero(low & (limit < st.budget[:n]))

    def give_back(self, campaign_id: str, day: int, micros: int) -> None:
        """Queue budget for the bank (sent with the next refill)."""
        if micros > 0:
            self._returns[day, campaign_id] += micros

    async def refill(self) -> int:
        """One round of leases and returns; returns the micros newly leased."""
        if not await self._same_bank():
            return 0
        st = self.state
        st.roll_day()
        self._return_over_lowered_budgets()
        await self._flush_returns()
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

    def _return_over_lowered_budgets(self) -> None:
        """A budget lowered (Admin): the unspent lease goes back, and leasing starts again
        under the new budget. Every process does so as it learns of the change, so the
        spend past a lowered budget is at most what was spent before they knew."""
        st = self.state
        if self._budgets[0] == st.budgets_changed:
            return
        n = len(st.slots)
        budget = st.budget[:n].copy()
        before = np.concatenate([self._budgets[1], budget[len(self._budgets[1]) :]])[:n]
        self._budgets = (st.budgets_changed, budget)
        for s in np.flatnonzero(budget < before):
            self.give_back(st.ids[s], st.day, int(st.limit[s] - st.spent[s]))
            st.limit[s] = st.spent[s]

    async def _same_bank(self) -> bool:
        """Whether leasing may go on; first makes good a bank that lost its data.

        An empty bank (no epoch) is rebuilt by the one process that takes the rebuild
        lock: today's spend from the ledger (every process's trades, the dead ones'
        included) plus its own unspent leases. The other processes, seeing the new
        epoch, add their own unspent leases. Nobody leases while the bank is empty.
        """
        epoch = await self.bank.epoch()
        if epoch is not None and epoch == self.epoch:
            return True
        st = self.state
        st.roll_day()
        self._returns.clear()  # returns belong to the old bank; the ledger has the truth
        if epoch is None:
            if not await self.bank.begin_rebuild(self.me):
                return False  # another process is rebuilding: wait for its epoch
            booked = await asyncio.to_thread(self.ledger_spend, st.day) if self.ledger_spend else {}
            await self.bank.add_leased(st.day, [(c, m) for c, m in booked.items() if m > 0])
            await self.bank.add_leased(st.day, self._unspent())
            self.epoch = await self.bank.finish_rebuild(self.me)
            if any(booked.values()) or self._unspent():
                log.warning(
                    "the budget bank was empty: rebuilt from the ledger (%d campaigns) and "
                    "this process's leases",
                    len(booked),
                )
            return True
        if self.epoch is not None:  # rebuilt by another process: count our leases in
            await self.bank.add_leased(st.day, self._unspent())
        self.epoch = epoch
        return True

    def _unspent(self) -> list[tuple[str, int]]:
        """(campaign, micros) of the leases this process holds and has not spent, today."""
        st = self.state
        n = len(st.slots)
        unspent = st.limit[:n] - st.spent[:n]
        return [(st.ids[s], int(unspent[s])) for s in np.flatnonzero(unspent > 0)]

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
        """Refill until `stopping` (or cancelled); a failed round is logged and retried
        after a pause. Stop it with the flag, not by cancelling: a round cancelled between
        the bank's grant and its reply would lose the grant (leased to nobody)."""
        while not self.stopping:
            try:
                await self.refill()
                if self.failures:
                    log.info("budget bank reachable again after %d failed refills", self.failures)
                self.failures = 0
                await asyncio.sleep(self.refill_interval_s)
            except Exception as exc:
                stop_if_cancelled()
                self.failures += 1
                pause = min(MAX_BACKOFF_S, self.refill_interval_s * 2**self.failures)
                if self.failures == 1 or self.failures % 100 == 0:
                    log.warning("budget bank refill failed (%s); bidding within held leases", exc)
                await asyncio.sleep(pause)

    async def close(self) -> None:
        """Give every unspent lease of today back, so other processes can spend it."""
        st = self.state
        st.roll_day()
        for campaign_id, micros in self._unspent():
            self.give_back(campaign_id, st.day, micros)
        n = len(st.slots)
        st.limit[:n] = st.spent[:n]
        if await self.bank.epoch() == self.epoch:  # never give back into a rebuilt-empty bank
            await self._flush_returns()

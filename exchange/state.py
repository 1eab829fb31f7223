"""In-process campaign state: budgets, today's spend, pacing and its counters.

Arrays are indexed by a campaign's *slot*, a small integer assigned once per
campaign id and never reused, so the auction reads them with one fancy index
per request. Single-threaded use only: the event loop owns it.

What a campaign may still spend here is `limit - spent`. Alone (the embedded
default) the limit is the daily budget. When bid servers share budgets
(`leased=True`), the limit is what this process holds in leases from the budget
bank (`exchange.bank`), and `spent` is this process's own spend: the leases of all
processes never add up to more than the budget, so neither can their spend.
"""

from __future__ import annotations

import time

import numpy as np

SECONDS_PER_DAY = 86_400


def utc_day(now: float | None = None) -> int:
    """Days since the epoch (UTC): budgets are daily and roll over at midnight."""
    return int((time.time() if now is None else now) // SECONDS_PER_DAY)


class CampaignState:
    def __init__(self, capacity: int = 1024, clock=time.time, leased: bool = False) -> None:
        self._clock = clock
        self.leased = leased
        self.budgets_changed = 0  # bumped by set_budget: caches derived from budgets refresh
        self.day = utc_day(clock())
        self.budget = np.zeros(capacity, dtype=np.int64)  # [S] daily budget, micros
        self.limit = np.zeros(capacity, dtype=np.int64)  # [S] spendable here today, micros
        self.spent = np.zeros(capacity, dtype=np.int64)  # [S] spent here today, micros
        self.acpm = np.zeros(capacity, dtype=np.float64)  # [S] the campaign's aCPM, micros
        self.multiplier = np.ones(capacity, dtype=np.float64)  # [S] pacing bid multiplier
        self.pass_rate = np.ones(capacity, dtype=np.float64)  # [S] share of auctions entered
        self.throttled = False  # any pass rate below 1: the auction draws who enters
        # Counters of the current control interval, read and cleared by the pacing loop.
        self.seen = np.zeros(capacity, dtype=np.int64)  # [S] auctions eligible for
        self.wins = np.zeros(capacity, dtype=np.int64)  # [S]
        self.won_seconds = np.zeros(capacity, dtype=np.float64)  # [S] predicted attentive s
        self.slots: dict[str, int] = {}
        self.ids: list[str] = []  # campaign id by slot

    def slot(self, campaign_id: str) -> int:
        """The campaign's slot, assigning (and growing the arrays) on first sight."""
        slot = self.slots.get(campaign_id)
        if slot is None:
            slot = len(self.slots)
            self.slots[campaign_id] = slot
            self.ids.append(campaign_id)
            if slot >= len(self.budget):
                self._grow(2 * len(self.budget))
        return slot

    def _grow(self, capacity: int) -> None:
        pad = capacity - len(self.budget)
        for name in ("budget", "limit", "spent", "acpm", "seen", "wins", "won_seconds"):
            old = getattr(self, name)
            setattr(self, name, np.concatenate([old, np.zeros(pad, old.dtype)]))
        for name in ("multiplier", "pass_rate"):
            setattr(self, name, np.concatenate([getattr(self, name), np.ones(pad)]))

    def set_budget(self, slot: int, daily_budget_micros: int, acpm_micros: int) -> None:
        self.budget[slot] = daily_budget_micros
        self.acpm[slot] = acpm_micros
        self.budgets_changed += 1
        if not self.leased:
            self.limit[slot] = daily_budget_micros

    def clear_counters(self) -> None:
        """Start a new control interval's counters."""
        self.seen[:] = 0
        self.wins[:] = 0
        self.won_seconds[:] = 0.0

    def roll_day(self) -> None:
        """Start a fresh day's spend when the UTC date has changed."""
        day = utc_day(self._clock())
        if day != self.day:
            self.day = day
            self.spent[:] = 0
            if self.leased:
                self.limit[:] = 0  # leases are per day: a new day's are leased afresh

    def remaining(self, slots: np.ndarray) -> np.ndarray:
        return self.limit[slots] - self.spent[slots]  # [C] int64

    def reserve(self, slot: int, micros: int) -> bool:
        """Take `micros` from what may be spent here today; False (and nothing taken) if
        short."""
        if self.spent[slot] + micros > self.limit[slot]:
            return False
        self.spent[slot] += micros
        return True

    def release(self, slot: int, micros: int) -> int:
        """Budget back (a void, a true-up, a bid never sent). Returns the part that was not
        spent here: with leases, a trade reserved before a restart (or by a process
        that died) goes back to the bank, not into this process's lease."""
        if not self.leased:
            self.spent[slot] -= micros
            return 0
        here = min(micros, int(self.spent[slot]))
        self.spent[slot] -= here
        return micros - here

    def restore_spend(self, spent_by_slot: dict[int, int]) -> None:
        """Reload today's spend (from the trade log) after a restart."""
        for slot, micros in spent_by_slot.items():
            self.spent[slot] = micros

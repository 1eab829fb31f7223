"""In-process campaign state: budgets, today's spend and pacing multipliers.

Arrays are indexed by a campaign's *slot*, a small integer assigned once per
campaign id and never reused, so the auction reads them with one fancy index
per request. This is the embedded default; a Redis-backed state will offer the
same methods. Single-threaded use only: the event loop owns it.
"""

from __future__ import annotations

import time

import numpy as np

SECONDS_PER_DAY = 86_400


def utc_day(now: float | None = None) -> int:
    """Days since the epoch (UTC): budgets are daily and roll over at midnight."""
    return int((time.time() if now is None else now) // SECONDS_PER_DAY)


class CampaignState:
    def __init__(self, capacity: int = 1024, clock=time.time) -> None:
        self._clock = clock
        self.day = utc_day(clock())
        self.budget = np.zeros(capacity, dtype=np.int64)  # [S] daily budget, micros
        self.spent = np.zeros(capacity, dtype=np.int64)  # [S] spent today, micros
        self.multiplier = np.ones(capacity, dtype=np.float64)  # [S] pacing bid multiplier
        self.slots: dict[str, int] = {}

    def slot(self, campaign_id: str) -> int:
        """The campaign's slot, assigning (and growing the arrays) on first sight."""
        slot = self.slots.get(campaign_id)
        if slot is None:
            slot = len(self.slots)
            self.slots[campaign_id] = slot
            if slot >= len(self.budget):
                self._grow(2 * len(self.budget))
        return slot

    def _grow(self, capacity: int) -> None:
        pad = capacity - len(self.budget)
        self.budget = np.concatenate([self.budget, np.zeros(pad, np.int64)])
        self.spent = np.concatenate([self.spent, np.zeros(pad, np.int64)])
        self.multiplier = np.concatenate([self.multiplier, np.ones(pad, np.float64)])

    def set_budget(self, slot: int, daily_budget_micros: int) -> None:
        self.budget[slot] = daily_budget_micros

    def roll_day(self) -> None:
        """Start a fresh day's spend when the UTC date has changed."""
        day = utc_day(self._clock())
        if day != self.day:
            self.day = day
            self.spent[:] = 0

    def remaining(self, slots: np.ndarray) -> np.ndarray:
        return self.budget[slots] - self.spent[slots]  # [C] int64

    def reserve(self, slot: int, micros: int) -> bool:
        """Take `micros` from today's budget; False (and nothing taken) if short."""
        if self.spent[slot] + micros > self.budget[slot]:
            return False
        self.spent[slot] += micros
        return True

    def release(self, slot: int, micros: int) -> None:
        self.spent[slot] -= micros

    def restore_spend(self, spent_by_slot: dict[int, int]) -> None:
        """Reload today's spend (from the trade log) after a restart."""
        for slot, micros in spent_by_slot.items():
            self.spent[slot] = micros

"""Frequency caps: which campaigns a user may not see again yet.

A campaign's cap allows at most `count` impressions per user within any `window_s`.
The user store keeps, per capped campaign, the user's newest `count` impression
times, so a campaign is capped for this user iff it has `count` of them and the
oldest is still inside the window. The loop is over the campaigns this user has
seen (a handful), never over the candidates; the candidates are then filtered in
one array operation.
"""

from __future__ import annotations

import numpy as np

from exchange.index import CampaignIndex
from exchange.users import Impression, UserState

NONE_BLOCKED = np.zeros(0, dtype=np.int32)  # shared, never written: `shown` appends a copy


class CapCheck:
    """One request's view of the user's caps; wins within the request count too."""

    def __init__(self, index: CampaignIndex, user: UserState | None, now_ms: int) -> None:
        self.index, self.now_ms = index, now_ms
        self.unknown = user is not None and not user.known  # the store is unreachable
        self.seen = user.seen if user is not None else {}  # the caller's own copy
        self.blocked = NONE_BLOCKED  # [K] campaign slots at their cap
        if self.seen:
            slots = [s for c, times in self.seen.items() if (s := self._capped_slot(c, times)) >= 0]
            self.blocked = np.array(slots, dtype=np.int32)

    def _capped_slot(self, campaign_id: str, times: list[int]) -> int:
        entry = self.index.entry_of.get(campaign_id)
        cap = self.index.entries[entry].frequency_cap if entry is not None else None
        if cap is None or len(times) < cap.count:
            return -1
        if times[cap.count - 1] <= self.now_ms - cap.window_s * 1000:
            return -1
        return int(self.index.slot[self.index.rows_of[entry][0]])

    def allowed(self, rows: np.ndarray) -> np.ndarray:
        """The candidate rows this user may still be shown. [C'] of [C]"""
        if self.unknown:  # caps cannot be checked: capped campaigns sit this one out
            return rows[~self.index.capped[rows]]
        if self.blocked.size:
            return rows[~np.isin(self.index.slot[rows], self.blocked)]
        return rows

    def shown(self, campaign_id: str, item: int) -> Impression:
        """A win: counts against the cap for the rest of this request, and is what the
        user store records once the bid is durable."""
        entry = self.index.entry_of[campaign_id]
        cap = self.index.entries[entry].frequency_cap
        if cap is None:
            return Impression(campaign_id, item)
        times = self.seen[campaign_id] = [self.now_ms, *self.seen.get(campaign_id, [])]
        slot = self._capped_slot(campaign_id, times)
        if slot >= 0 and slot not in self.blocked:
            self.blocked = np.append(self.blocked, np.int32(slot))
        return Impression(campaign_id, item, cap.count, cap.window_s * 1000)

"""The campaign book: the campaigns the exchange knows, kept in the kernels' index.

The book is the domain-facing side (upsert, pause, look up, today's spend);
the index holds the same campaigns as flat arrays for the eligibility kernel.
"""

from __future__ import annotations

from dataclasses import replace

from exchange.campaigns import Campaign
from exchange.index import CampaignIndex
from exchange.state import CampaignState


class CampaignBook:
    def __init__(self, state: CampaignState, campaigns: list[Campaign] = ()) -> None:
        self.state = state
        self.index = CampaignIndex(state)
        for campaign in campaigns:
            self.index.upsert(campaign)

    def upsert(self, campaign: Campaign) -> None:
        """A change of status alone flips flags; anything else replaces the rows."""
        entry = self.index.entry_of.get(campaign.id)
        current = self.index.entries[entry] if entry is not None else None
        if current is not None and replace(current, paused=campaign.paused) == campaign:
            self.index.set_paused(campaign.id, campaign.paused)
        else:
            self.index.upsert(campaign)

    def get(self, campaign_id: str) -> Campaign:
        return self.index.get(campaign_id)

    def all(self) -> list[Campaign]:
        return self.index.campaigns()

    def spent_today(self, campaign_id: str) -> int:
        return int(self.state.spent[self.state.slot(campaign_id)])

    def __len__(self) -> int:
        return len(self.index.entry_of)

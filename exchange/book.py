"""The campaign book: the campaigns the exchange knows and the index built from them.

Changes (Admin upserts, pauses) replace the whole index snapshot; the auction
reads `book.index` once per request, so it sees either the old or the new set,
never a mix.
"""

from __future__ import annotations

from exchange.campaigns import Campaign
from exchange.errors import NotFound
from exchange.index import CampaignIndex
from exchange.state import CampaignState


class CampaignBook:
    def __init__(self, state: CampaignState, campaigns: list[Campaign] = ()) -> None:
        self.state = state
        self._campaigns: dict[str, Campaign] = {}
        self._ad_ids: dict[tuple[str, str], int] = {}
        for campaign in campaigns:
            self._put(campaign)
        self.index = self._build()

    def _put(self, campaign: Campaign) -> None:
        self._campaigns[campaign.id] = campaign
        self.state.set_budget(self.state.slot(campaign.id), campaign.daily_budget_micros)

    def _build(self) -> CampaignIndex:
        return CampaignIndex(list(self._campaigns.values()), self.state, self._ad_ids)

    def upsert(self, campaign: Campaign) -> None:
        self._put(campaign)
        self.index = self._build()

    def get(self, campaign_id: str) -> Campaign:
        try:
            return self._campaigns[campaign_id]
        except KeyError:
            raise NotFound(f'campaign "{campaign_id}" does not exist') from None

    def all(self) -> list[Campaign]:
        return sorted(self._campaigns.values(), key=lambda c: c.id)

    def spent_today(self, campaign_id: str) -> int:
        return int(self.state.spent[self.state.slot(campaign_id)])

    def __len__(self) -> int:
        return len(self._campaigns)

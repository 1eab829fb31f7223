"""The exchange assembled from its configuration: one object the front ends share.

Start-up does everything slow — reading campaigns, building the index,
restoring today's spend, warming the auction — so that no request ever does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from pathlib import Path

import orjson

from exchange.auction import Auction, AuctionSettings
from exchange.book import CampaignBook
from exchange.campaign_io import campaign_from_dict, campaign_to_dict, load_campaigns
from exchange.campaigns import Campaign
from exchange.config import Config
from exchange.currency import RateTable
from exchange.decode_json import decode_json
from exchange.demo import demo_campaigns
from exchange.example import example_request
from exchange.state import CampaignState
from exchange.store import SqliteStore, TradeEvent
from inference.baseline import BaselineScorer
from inference.runtime import DEFAULT_MODEL, describe, load_scorer, warm_up_scorer
from inference.scorer import Scorer

log = logging.getLogger("attnx")

WARM_UP_AUCTIONS = 200


class Exchange:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.rates = RateTable(config.currency_rates)
        self.state = CampaignState()
        self.store = SqliteStore(
            Path(config.store.sqlite), self.rates, on_duplicate_trade=self._duplicate_trade
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self.book = CampaignBook(self.state, self._initial_campaigns())
        spent = self.store.spend_for_day(self.state.day)
        self.state.restore_spend({self.state.slot(cid): micros for cid, micros in spent.items()})
        a = config.auction
        self.auction = Auction(
            self.book,
            self._load_scorer(config.scorer.backend, self._model_path(config.scorer.model)),
            self.rates,
            AuctionSettings(
                increment_cpm_micros=a.increment_cpm_micros,
                tmax_margin_ms=a.tmax_margin_ms,
                history_len=a.history_len,
                notice_url=config.notice_url,
                max_imps=a.max_imps,
            ),
            record_trade=self.store.record_trade,
        )

    def _initial_campaigns(self) -> list[Campaign]:
        """The campaigns file (or the generated demo set), then Admin's saved changes."""
        c = self.config.campaigns
        if c.file:
            campaigns = load_campaigns(Path(c.file))
            source = c.file
        else:
            campaigns = demo_campaigns(c.demo_count, c.demo_seed)
            source = f"generated demo set (seed {c.demo_seed})"
        by_id = {campaign.id: campaign for campaign in campaigns}
        saved = self.store.campaign_bodies()
        for i, body in enumerate(saved):
            campaign = campaign_from_dict(orjson.loads(body), f"store.campaigns[{i}]")
            by_id[campaign.id] = campaign
        log.info(
            "loaded %d campaigns from %s, %d saved by Admin", len(campaigns), source, len(saved)
        )
        return list(by_id.values())

    @property
    def scorer(self) -> Scorer:
        return self.auction.scorer

    @staticmethod
    def _model_path(model: str) -> Path:
        return Path(model) if model else DEFAULT_MODEL

    def _load_scorer(self, backend: str, path: Path) -> Scorer:
        """Load, probe and warm a scorer (any thread: it touches no exchange state)."""
        if backend == "baseline":
            return BaselineScorer()
        scorer = load_scorer(path, backend, self.config.scorer.threads, self.config.scorer.fp16)
        warm_up_scorer(scorer, self.config.auction.history_len)
        return scorer

    async def swap_model(self, path: Path, backend: str = "") -> Scorer:
        """Hot swap: the new model loads and probes off the event loop while requests
        keep being answered by the old one; the swap itself is one assignment
        between two requests. Any failure raises and leaves the old model in place."""
        scorer = await asyncio.to_thread(
            self._load_scorer, backend or self.config.scorer.backend, path
        )
        old, self.auction.scorer = self.auction.scorer, scorer
        log.info("model swapped: %s -> %s", describe(old), describe(scorer))
        return scorer

    def set_notice_url(self, url: str) -> None:
        """Point the bids' nurl/burl/lurl at the address the HTTP server really bound."""
        self.auction.settings = replace(self.auction.settings, notice_url=url)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind to the event loop that owns the in-process state."""
        self._loop = loop

    def _duplicate_trade(self, trade: TradeEvent) -> None:
        """A retried request won again: give back the budget it reserved twice.

        Called on the store's writer thread; the state belongs to the event loop.
        """
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.state.release, trade.slot, trade.charge_micros)

    async def save_campaign(self, campaign: Campaign) -> None:
        """Persist first, then apply: an acknowledged change survives a restart."""
        await self.store.save_campaign(
            campaign.id, orjson.dumps(campaign_to_dict(campaign)).decode()
        )
        self.book.upsert(campaign)

    def warm_up(self) -> float:
        """Run test-mode auctions through every stage; returns the seconds it took."""
        started = time.perf_counter()
        body = orjson.dumps({**example_request("warm-up"), "test": 1})
        for _ in range(WARM_UP_AUCTIONS):
            self.auction.run(decode_json(body), time.perf_counter_ns())
        return time.perf_counter() - started

    def close(self) -> None:
        self.store.close()

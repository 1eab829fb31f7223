"""The exchange assembled from its configuration: one object the front ends share.

Start-up does everything slow — migrating the database, booking what the journal
holds beyond the ledger (after a crash), reading campaigns, building the index,
restoring today's spend, warming the auction — so that no request ever does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from pathlib import Path

import orjson

from exchange import ledger
from exchange.auction import Auction, AuctionSettings
from exchange.background import stop_if_cancelled
from exchange.bank import open_bank
from exchange.book import CampaignBook
from exchange.campaign_io import campaign_from_dict, campaign_to_dict, load_campaigns
from exchange.campaigns import Campaign
from exchange.config import Config
from exchange.currency import RateTable
from exchange.db import Database
from exchange.decode_json import decode_json
from exchange.demo import demo_campaigns
from exchange.errors import Conflict
from exchange.example import example_request
from exchange.leases import LeaseKeeper
from exchange.metrics import BidMetrics
from exchange.openrtb import AuctionResult, BidRequest
from exchange.pacing_loop import PacingLoop, make_pacer
from exchange.pacing_shared import SharedPacing
from exchange.settlement import Notice, Outcome, Receipt
from exchange.settlement_client import SettlementClient
from exchange.signing import NoticeSigner, new_secret
from exchange.state import CampaignState
from exchange.users import open_users
from inference.baseline import BaselineScorer
from inference.runtime import DEFAULT_MODEL, describe, load_scorer, warm_up_scorer
from inference.scorer import Scorer

log = logging.getLogger("attnx")

WARM_UP_AUCTIONS = 200
SYNC_OVERLAP_NS = 5_000_000_000  # campaign changes are read again for 5 s (clock skew)


def campaign_set(config: Config, saved: list[str]) -> list[Campaign]:
    """The campaigns file (or the generated demo set), then Admin's saved changes."""
    c = config.campaigns
    if c.file:
        campaigns = load_campaigns(Path(c.file))
        source = c.file
    else:
        campaigns = demo_campaigns(c.demo_count, c.demo_seed)
        source = f"generated demo set (seed {c.demo_seed})"
    by_id = {campaign.id: campaign for campaign in campaigns}
    for i, body in enumerate(saved):
        campaign = campaign_from_dict(orjson.loads(body), f"store.campaigns[{i}]")
        by_id[campaign.id] = campaign
    log.info("loaded %d campaigns from %s, %d saved by Admin", len(campaigns), source, len(saved))
    return list(by_id.values())


class NotDurable(RuntimeError):
    """The settlement process could not make a trade durable: the bid must not be sent."""


class Exchange:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = BidMetrics()  # the bid path's stages and outcomes: GET /metrics
        self.rates = RateTable(config.currency_rates)
        shared = config.state.url != "memory"
        self.state = CampaignState(leased=shared)
        self.leases = None
        if shared:  # budgets shared with other bid servers: spend from leases
            self.leases = LeaseKeeper(
                self.state,
                open_bank(config.state.url, config.state.prefix),
                lease_fraction=config.state.lease_fraction,
                refill_interval_s=config.state.refill_interval_ms / 1000,
                ledger_spend=self._ledger_spend,
            )
        st = config.settlement
        db = Database(config.store.url)
        db.migrate()
        self.settlement = SettlementClient(
            config.store.url,
            Path(config.store.journal),
            on_release=self._give_back,
            settings=st,
            stream=(config.state.url, config.state.prefix) if shared else None,
        )
        self.settlement.start()  # books what the journal holds beyond the ledger first
        with db.connect() as conn:
            with conn.transaction():
                secret = st.secret or ledger.setting(conn, "notice_secret", new_secret())
            saved = [body for (body,) in conn.rows("SELECT body FROM campaigns ORDER BY id")]
            spent = ledger.spend_for_day(conn, self.state.day)
        self.signer = NoticeSigner(secret)
        self.book = CampaignBook(self.state, campaign_set(config, saved))
        if not shared:  # with leases, today's spend so far is already leased out in the bank
            self.state.restore_spend({self.state.slot(c): micros for c, micros in spent.items()})
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
                max_candidates=a.max_candidates,
                take_rate_bps=st.take_rate_bps,
                default_exp_s=st.default_exp_s,
                max_exp_s=st.max_exp_s,
            ),
            record_trade=self.settlement.record_trade,
            sign=self.signer.sign,
        )
        # Frequency caps and behaviour histories: in memory, or shared in Redis.
        self.users = open_users(config.state.url, config.state.prefix, a.history_len)
        p = config.pacing
        self.pacing = PacingLoop(
            self.state,
            make_pacer(p),
            p.interval_s,
            shared=SharedPacing(config.state.url, config.state.prefix, p.interval_s)
            if shared
            else None,
        )
        self._tasks: list[asyncio.Task] = []  # cancelled at close
        self._leasing: asyncio.Task | None = None  # stopped between rounds at close

    async def shared_spend(self) -> dict[str, int] | None:
        """With shared state, today's spend of every server, as the ledger has booked it
        (trades still in the trade stream arrive within moments); None for one process,
        whose own reservations are the whole spend."""
        if self.leases is None:
            return None
        return await asyncio.to_thread(self._ledger_spend, self.state.day)

    def _ledger_spend(self, day: int) -> dict[str, int]:
        """Each campaign's spend booked for `day` (rebuilding an emptied budget bank)."""
        with Database(self.config.store.url).connect() as conn:
            return ledger.spend_for_day(conn, day)

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

    async def start(self) -> None:
        """Serve the settlement connection, take the first budget leases, and run the
        pacing loop and the lease keeper on the running loop."""
        await self.settlement.attach()
        self._tasks = [asyncio.create_task(self.pacing.run(), name="pacing")]
        if self.config.state.url != "memory":  # Admin changes made on other servers
            self._tasks.append(asyncio.create_task(self._follow_campaigns(), name="campaigns"))
        if self.leases is not None:
            try:
                await self.leases.refill()
            except Exception as exc:  # bidding starts as leases arrive
                log.warning("no budget leases yet (%s): retrying in the background", exc)
            self._leasing = asyncio.create_task(self.leases.run(), name="leases")

    async def _follow_campaigns(self) -> None:
        """Apply the campaign changes other bid servers saved (Admin calls reach one
        server): the shared database is the record, read every `campaign_sync_s`.
        Changes from a little before the last one seen are read again (clocks of
        different machines differ); applying an unchanged campaign changes nothing."""
        seen_ns = time.time_ns()
        while True:
            await asyncio.sleep(self.config.state.campaign_sync_s)
            try:
                rows = await asyncio.to_thread(self._saved_since, seen_ns - SYNC_OVERLAP_NS)
            except Exception as exc:
                stop_if_cancelled()
                log.warning("could not read campaign changes (%s); retrying", exc)
                continue
            for campaign_id, body, updated_ns in rows:
                try:
                    campaign = campaign_from_dict(orjson.loads(body), f"campaigns[{campaign_id}]")
                except Exception as exc:  # saved through validation: only a foreign writer
                    log.error("saved campaign %s cannot be applied: %s", campaign_id, exc)
                    continue
                entry = self.book.index.entry_of.get(campaign_id)
                if entry is None or self.book.index.entries[entry] != campaign:
                    self.book.upsert(campaign)
                    log.info("campaign %s changed on another server: applied", campaign_id)
                seen_ns = max(seen_ns, updated_ns)

    def _saved_since(self, since_ns: int) -> list[tuple[str, str, int]]:
        with Database(self.config.store.url).connect() as conn:
            q = "SELECT id, body, updated_ns FROM campaigns WHERE updated_ns > ? ORDER BY 3"
            return conn.rows(q, (since_ns,))

    async def bid(self, req: BidRequest, received_ns: int) -> AuctionResult:
        """Run the auction and wait until its trades are durable; only then may the
        bids be sent. Raises BadRequest for bad input, NotDurable if they could not be.
        The user's caps and history are read first (one batched Redis read when shared)."""
        stages = self.metrics.stages
        started = time.perf_counter_ns()
        stages["decode"].observe_ns(started - received_ns)
        user_id = req.user.id if req.user is not None else ""
        user = await self.users.load(user_id) if user_id else None
        loaded = time.perf_counter_ns()
        stages["user"].observe_ns(loaded - started)
        result = self.auction.run(req, received_ns, user)
        ran = time.perf_counter_ns()
        stages["auction"].observe_ns(ran - loaded)
        if result.durable is not None:
            try:
                await result.durable
            except Exception as exc:
                for b in result.bids:  # never acknowledged: the budget goes back now
                    self._give_back(b.campaign_id, self.state.day, b.price_cpm_micros // 1000)
                raise NotDurable(f"{exc}: no bid was made") from exc
        stages["durable"].observe_ns(time.perf_counter_ns() - ran)
        if result.shown and user_id:
            self.users.record(user_id, result.shown)  # queued: written off the hot path
        return result

    async def notify(self, notice: Notice) -> Receipt:
        """Apply a checked notice; Conflict if it contradicts what is recorded."""
        receipt = await self.settlement.notice(notice)
        if receipt.outcome is Outcome.CONFLICT:
            raise Conflict(receipt.message)
        return receipt

    def _give_back(self, campaign_id: str, day: int, micros: int) -> None:
        """Budget given back: a void, a true-up, a retried request's second
        reservation (from the settlement process), or a bid that was never sent."""
        if day == self.state.day:  # yesterday's budget is gone: nothing to give back to
            elsewhere = self.state.release(self.state.slot(campaign_id), micros)
            if self.leases is not None:
                self.leases.give_back(campaign_id, day, elsewhere)

    async def save_campaign(self, campaign: Campaign) -> None:
        """Persist first, then apply: an acknowledged change survives a restart."""
        await self.settlement.save_campaign(
            campaign.id, orjson.dumps(campaign_to_dict(campaign)).decode()
        )
        self.book.upsert(campaign)

    def warm_up(self) -> float:
        """Run test-mode auctions through every stage; returns the seconds it took."""
        started = time.perf_counter()
        self.auction.warm_up()
        body = orjson.dumps({**example_request("warm-up"), "test": 1})
        for _ in range(WARM_UP_AUCTIONS):
            self.auction.run(decode_json(body), time.perf_counter_ns())
        return time.perf_counter() - started

    async def close(self) -> None:
        """Stop pacing and leasing; the settlement process books everything journaled,
        then exits; unspent leases go back to the bank."""
        for task in self._tasks:
            task.cancel()
        if self._leasing is not None:  # its round in flight finishes: no grant is lost
            self.leases.stopping = True
            try:
                await asyncio.wait_for(self._leasing, timeout=5)
            except TimeoutError:
                log.warning("the lease keeper did not stop in 5 s: cancelled")
        await self.settlement.close()
        if self.leases is not None:  # after settlement: its last voids go back too
            try:
                await self.leases.close()
            except Exception as exc:
                log.warning("could not give the unspent leases back (%s)", exc)
            await self.leases.bank.close()
        if self.pacing.shared is not None:
            await self.pacing.shared.close()
        await self.users.close()

"""The auction, as one readable flow from a decoded request to priced winners.

    validate → request filter (targeting, blocking)
    per imp: eligible candidates (kernel) → features → score → rank + price (kernel) → reserve
    deadline check → hand the trades to the journal → result

Nothing here waits on I/O: budgets are reserved in memory and trades are
handed to the journal, whose future (in the result) the front end awaits before
it answers. Every stage is a whole-array operation over the index or the
candidates; the only Python loops are over imps and blocked values.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from exchange.book import CampaignBook
from exchange.currency import RateTable
from exchange.features import history_of, placement_of, publisher_key, scoring_batch
from exchange.frequency import CapCheck
from exchange.index import CampaignIndex, ImpFilter, size_key
from exchange.openrtb import AuctionResult, BidRequest, Imp, WonBid
from exchange.settlement import Trade
from exchange.users import Impression, UserState
from exchange.validate import validate
from inference.scorer import Placement, Scorer
from kernels import pricing
from kernels.eligibility import count_seen
from kernels.shortlist import shortlist


class NoBidReason(IntEnum):
    """OpenRTB 2.6 no-bid reasons; 500+ are exchange-specific, as the spec allows."""

    TECHNICAL_ERROR = 1
    NO_ELIGIBLE_CAMPAIGN = 500  # nothing fits the slot, targeting, blocks or budget
    BELOW_FLOOR = 501  # candidates existed, none bid at or above the floor
    TMAX_TOO_SHORT = 502  # the answer could not be ready inside tmax


@dataclass(frozen=True, slots=True)
class AuctionSettings:
    increment_cpm_micros: int = 10_000  # second price + $0.01 CPM
    tmax_margin_ms: float = 1.0  # answer at least this long before tmax runs out
    history_len: int = 50  # L, the model's fixed behaviour-sequence length
    notice_url: str = "http://127.0.0.1:8080"  # base of nurl/burl/lurl
    max_imps: int = 64
    max_candidates: int = 256  # C: the model scores at most this many per imp
    take_rate_bps: int = 1000  # the exchange's fee, fixed into each trade at the win
    default_exp_s: int = 3600  # unbilled trades void after imp.exp, or this
    max_exp_s: int = 86_400


def trade_id(request_id: str, imp_id: str, campaign_id: str) -> str:
    """Deterministic, so a retried request maps to the same trade (idempotency)."""
    key = f"{request_id}\x1f{imp_id}\x1f{campaign_id}".encode()
    return hashlib.blake2b(key, digest_size=12).hexdigest()


@dataclass(slots=True)
class _Win:
    imp: Imp
    row: int
    slot: int
    outcome: pricing.Outcome
    seconds: float
    p_view: float
    p_click: float

    @property
    def charge_micros(self) -> int:
        """What one impression costs: the clearing CPM / 1000."""
        return self.outcome.price_cpm_micros // 1000


class Auction:
    def __init__(
        self,
        book: CampaignBook,
        scorer: Scorer,
        rates: RateTable,
        settings: AuctionSettings,
        record_trade: Callable[[Trade], Awaitable | None],
        sign: Callable[[str], str],
    ) -> None:
        """`record_trade` makes a trade durable (the journal) and returns what to await
        before answering; `sign` gives a bid's notice signature."""
        self.book = book
        self.scorer = scorer
        self.rates = rates
        self.settings = settings
        self.record_trade = record_trade
        self.sign = sign
        self._rng = np.random.default_rng()  # throttling's draws

    def run(
        self, req: BidRequest, received_ns: int, user: UserState | None = None
    ) -> AuctionResult:
        """Run one request's auction. Raises BadRequest for invalid input.

        `received_ns` is `time.perf_counter_ns()` when the request arrived; the
        answer is a no-bid rather than late when tmax cannot be met.
        """
        validate(req, self.rates, self.settings.max_imps)
        cur = self.rates.response_currency(req.cur)
        deadline_ns = None
        if req.tmax > 0:
            budget_ms = req.tmax - self.settings.tmax_margin_ms
            if budget_ms <= 0:
                return AuctionResult(req.id, cur, [], NoBidReason.TMAX_TOO_SHORT)
            deadline_ns = received_ns + int(budget_ms * 1e6)

        billable = not req.test  # OpenRTB test mode: auctions run, nothing is bought
        state = self.book.state
        state.roll_day()
        index = self.book.index  # updates only happen between requests (the auction never yields)
        device = req.device
        request_filter = index.request_filter(
            categories=req.content_categories(),
            country=req.country(),
            devicetype=device.devicetype if device is not None else 0,
            bcat=req.bcat,
            badv=req.badv,
            bapp=req.bapp,
        )
        history, history_len = history_of(req, user, self.settings.history_len)
        now = time.time()
        hour = int(now // 3600 % 24)
        caps = CapCheck(index, user, int(now * 1000))

        wins: list[_Win] = []
        shown: list[Impression] = []
        had_candidates = False
        for imp in req.imp:
            rows = index.candidates(request_filter, self._imp_filter(index, imp))  # [C]
            rows = caps.allowed(rows)  # frequency caps: [C'] of [C]
            if rows.size == 0:
                continue
            had_candidates = True
            if billable:
                count_seen(rows, index.slot, state.seen)
                if state.throttled:  # pacing by throttling: each campaign enters its share
                    rows = rows[self._rng.random(rows.size) < state.pass_rate[index.slot[rows]]]
                    if rows.size == 0:
                        continue
            if rows.size > self.settings.max_candidates:
                rows = self._shortlist(index, rows)
            placement = placement_of(req, imp, hour)
            win = self._rank_and_price(index, req, imp, rows, placement, history, history_len)
            if win is None:
                continue
            if billable:
                if not state.reserve(win.slot, win.charge_micros):
                    continue
                state.wins[win.slot] += 1
                state.won_seconds[win.slot] += win.seconds
            wins.append(win)
            item = self.scorer.history_item(int(index.ad[win.row]))
            shown.append(caps.shown(index.entries[index.campaign[win.row]].id, item))

        if deadline_ns is not None and time.perf_counter_ns() > deadline_ns:
            for win in wins if billable else ():
                state.release(win.slot, win.charge_micros)
                state.wins[win.slot] -= 1
                state.won_seconds[win.slot] -= win.seconds
            return AuctionResult(req.id, cur, [], NoBidReason.TMAX_TOO_SHORT)
        if not wins:
            reason = NoBidReason.BELOW_FLOOR if had_candidates else NoBidReason.NO_ELIGIBLE_CAMPAIGN
            return AuctionResult(req.id, cur, [], reason)
        day = state.day if billable else None
        publisher, now_ns = publisher_key(req), time.time_ns()
        settled = [self._settle(index, req, cur, day, publisher, now_ns, w) for w in wins]
        durable = settled[-1][1]  # the journal keeps order: the last trade's sync covers all
        bids = [bid for bid, _ in settled]
        return AuctionResult(req.id, cur, bids, durable=durable, shown=shown if billable else [])

    def warm_up(self) -> None:
        """Compile (or load from cache: ~0.1 s each) the kernels that test-mode warm-up
        auctions never reach: the shortlist (a small campaign set has no need of it) and
        the pacer's counter (billable requests only). No request may wait for them."""
        index, state = self.book.index, self.book.state
        none = np.zeros(0, np.int32)
        shortlist(none, index.acpm, index.slot, state.multiplier, index.prior_s, 1)
        count_seen(none, index.slot, state.seen)

    def _shortlist(self, index: CampaignIndex, rows: np.ndarray) -> np.ndarray:
        """The max_candidates rows with the highest bid the model could plausibly give
        them (aCPM × multiplier × the creative's prior seconds): scoring thousands of
        candidates would cost milliseconds, and the rest would not win. O(C)."""
        m = self.book.state.multiplier
        return shortlist(
            rows, index.acpm, index.slot, m, index.prior_s, self.settings.max_candidates
        )  # [K]

    @staticmethod
    def _imp_filter(index: CampaignIndex, imp: Imp) -> ImpFilter:
        banner_sizes: list[int] = []
        if imp.banner is not None:
            b = imp.banner
            banner_sizes = [size_key(f.w, f.h) for f in b.format]
            if b.w > 0 and b.h > 0:
                banner_sizes.append(size_key(b.w, b.h))
        return index.imp_filter(banner_sizes, imp.video, imp.native is not None)

    def _rank_and_price(
        self,
        index: CampaignIndex,
        req: BidRequest,
        imp: Imp,
        rows: np.ndarray,
        placement: Placement,
        history: np.ndarray,
        history_len: int,
    ) -> _Win | None:
        """Score one imp's candidates, bid their expected value, and price the winner."""
        state = self.book.state
        scores = self.scorer.score(scoring_batch(index, rows, placement, history, history_len))
        outcome = pricing.Outcome(
            *pricing.rank_and_price_rows(
                rows,
                index.acpm,
                index.slot,
                index.tie,
                state.multiplier,
                state.limit,
                state.spent,
                scores.seconds,
                self.rates.to_usd_micros(imp.bidfloor, imp.bidfloorcur),
                req.at,
                self.settings.increment_cpm_micros,
            )
        )
        w = outcome.winner
        if w < 0:
            return None
        row = int(rows[w])
        return _Win(
            imp,
            row,
            int(index.slot[row]),
            outcome,
            float(scores.seconds[w]),
            float(scores.p_view[w]),
            float(scores.p_click[w]),
        )

    def _settle(
        self,
        index: CampaignIndex,
        req: BidRequest,
        cur: str,
        day: int | None,
        publisher: str,
        now_ns: int,
        win: _Win,
    ) -> tuple[WonBid, Awaitable | None]:
        """Turn a reserved win into a bid and hand its trade to the journal (none in test
        mode); returns the bid and what to await before it may be sent."""
        campaign = index.entries[index.campaign[win.row]]
        creative = index.creatives[win.row]
        price = win.outcome.price_cpm_micros
        price_cur = self.rates.from_usd_micros(price, cur)
        tid = trade_id(req.id, win.imp.id, campaign.id)
        s = self.settings
        durable = None
        if day is not None:
            exp = min(win.imp.exp or s.default_exp_s, s.max_exp_s)
            durable = self.record_trade(
                Trade(
                    id=tid,
                    request_id=req.id,
                    imp_id=win.imp.id,
                    campaign_id=campaign.id,
                    publisher=publisher,
                    day=day,
                    cur=cur,
                    price_cpm_micros=price,
                    price_cur_micros=round(price_cur * 1_000_000),
                    reserved_micros=win.charge_micros,
                    predicted_ms=round(win.seconds * 1000),
                    take_rate_bps=s.take_rate_bps,
                    won_ns=now_ns,
                    expires_ns=now_ns + exp * 1_000_000_000,
                    charged_micros=win.charge_micros,
                )
            )
        sig = self.sign(tid)
        base = f"{s.notice_url}/notice"
        bid = WonBid(
            id=tid,
            impid=win.imp.id,
            price=price_cur,
            price_cpm_micros=price,
            seat=campaign.seat,
            campaign_id=campaign.id,
            crid=creative.id,
            adm=creative.adm,
            adomain=campaign.adomain,
            bundle=campaign.bundle,
            cat=creative.cat,
            w=creative.w,
            h=creative.h,
            exp=win.imp.exp,
            nurl=f"{base}/win?bid={tid}&sig={sig}&price=${{AUCTION_PRICE}}&cur={cur}",
            burl=f"{base}/bill?bid={tid}&sig={sig}&price=${{AUCTION_PRICE}}&cur={cur}",
            lurl=f"{base}/loss?bid={tid}&sig={sig}&reason=${{AUCTION_LOSS}}",
            beacon=f"{base}/attention?bid={tid}&sig={sig}&seconds=${{ATTENTION_SECONDS}}",
            sig=sig,
            seconds=win.seconds,
            p_view=win.p_view,
            p_click=win.p_click,
            acpm=self.rates.from_usd_micros(campaign.acpm_micros, cur),
        )
        return bid, durable

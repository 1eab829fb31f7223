"""Auction rules end to end in process: eligibility, pricing, currencies, budgets."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest

from exchange.auction import Auction, AuctionSettings, NoBidReason, trade_id
from exchange.book import CampaignBook
from exchange.campaigns import Campaign, Creative, CreativeKind, FrequencyCap, Targeting
from exchange.currency import RateTable
from exchange.errors import BadRequest
from exchange.index import tie_key
from exchange.openrtb import (
    Banner,
    BidRequest,
    Device,
    Format,
    Geo,
    Imp,
    Native,
    Site,
    User,
    Video,
)
from exchange.signing import NoticeSigner
from exchange.state import CampaignState
from exchange.users import UserState
from inference.scorer import Scores, ScoringBatch

RATES = RateTable({"USD": 1.0, "EUR": 0.5})
SECONDS = 2.0  # every candidate is predicted 2 attentive seconds: bid CPM = 2 x aCPM


class FixedScorer:
    """Same prediction for every ad, so prices in these tests are exact."""

    name = "fixed"

    def score(self, batch: ScoringBatch) -> Scores:
        n = len(batch.ads)
        return Scores(
            p_view=np.full(n, 0.5, np.float32),
            seconds=np.full(n, SECONDS, np.float32),
            p_click=np.full(n, 0.01, np.float32),
        )

    def history_item(self, ad: int) -> int:
        return ad + 1


def banner(cid: str, w=300, h=250, cat=()) -> Creative:
    return Creative(f"{cid}-b", CreativeKind.BANNER, w, h, adm=f"<div>{cid}</div>", cat=list(cat))


def campaign(cid: str, acpm_usd: float, creatives=None, budget_usd=100.0, **kw) -> Campaign:
    return Campaign(
        id=cid,
        advertiser=f"adv-{cid}",
        adomain=[f"{cid}.example"],
        seat=f"seat-{cid}",
        creatives=creatives or [banner(cid)],
        acpm_micros=int(acpm_usd * 1_000_000),
        daily_budget_micros=int(budget_usd * 1_000_000),
        **kw,
    )


def request(**kw) -> BidRequest:
    fields = {
        "id": "r1",
        "imp": [Imp(id="1", banner=Banner(w=300, h=250))],
        "site": Site(id="s", domain="news.example", cat=["IAB12"]),
        "device": Device(devicetype=2, geo=Geo(country="USA")),
        **kw,
    }
    return BidRequest(**fields)


class Harness:
    def __init__(self, campaigns: list[Campaign], **settings) -> None:
        self.trades = []
        self.book = CampaignBook(CampaignState(), campaigns)
        self.auction = Auction(
            self.book,
            FixedScorer(),
            RATES,
            AuctionSettings(**settings),
            record_trade=self.trades.append,
            sign=NoticeSigner("k" * 32).sign,
        )

    def run(self, req: BidRequest):
        return self.auction.run(req, time.perf_counter_ns())


def winner(result) -> str:
    assert len(result.bids) == 1, result
    return result.bids[0].campaign_id


def test_second_price_pays_runner_up_plus_increment():
    h = Harness([campaign("a", 3.0), campaign("b", 2.0), campaign("c", 1.0)])
    result = h.run(request())
    bid = result.bids[0]
    assert bid.campaign_id == "a"
    assert bid.price_cpm_micros == 4_000_000 + 10_000  # runner-up b: 2.0 aCPM x 2 s
    assert bid.price == pytest.approx(4.01)
    assert bid.seconds == SECONDS and bid.acpm == pytest.approx(3.0)


def test_first_price_pays_own_bid():
    h = Harness([campaign("a", 3.0), campaign("b", 2.0)])
    assert h.run(request(at=1)).bids[0].price_cpm_micros == 6_000_000


def test_floor_in_another_currency_and_response_currency():
    h = Harness([campaign("a", 3.0), campaign("b", 2.0)])
    # floor 2.5 EUR = 5.0 USD CPM > runner-up 4.0 USD
    req = request(
        imp=[Imp(id="1", banner=Banner(w=300, h=250), bidfloor=2.5, bidfloorcur="EUR")], cur=["EUR"]
    )
    result = h.run(req)
    assert result.cur == "EUR"
    assert result.bids[0].price_cpm_micros == 5_010_000
    assert result.bids[0].price == pytest.approx(2.505)  # in EUR
    assert result.bids[0].acpm == pytest.approx(1.5)


def test_unknown_currency_is_a_clear_error():
    h = Harness([campaign("a", 3.0)])
    with pytest.raises(BadRequest, match=r'request.cur\[0\] "XYZ" is not a supported currency'):
        h.run(request(cur=["XYZ"]))


def test_below_floor_gets_no_bid_with_reason():
    h = Harness([campaign("a", 1.0)])
    req = request(imp=[Imp(id="1", banner=Banner(w=300, h=250), bidfloor=2.5)])
    result = h.run(req)
    assert result.bids == [] and result.nbr == NoBidReason.BELOW_FLOOR


def test_no_eligible_campaign_reason():
    h = Harness([campaign("a", 1.0)])
    result = h.run(request(imp=[Imp(id="1", banner=Banner(w=728, h=90))]))
    assert result.bids == [] and result.nbr == NoBidReason.NO_ELIGIBLE_CAMPAIGN


def test_ties_break_by_tie_key_whatever_the_order_of_upserts():
    ids = ["b", "a", "c"]
    expected = min(ids, key=tie_key)
    for order in (ids, ids[::-1]):
        h = Harness([campaign(cid, 2.0) for cid in order])
        for i in range(3):
            assert winner(h.run(request(id=f"r{i}"))) == expected


def test_format_list_and_creative_choice():
    h = Harness([campaign("a", 2.0, creatives=[banner("a", 728, 90), banner("a2", 160, 600)])])
    req = request(imp=[Imp(id="1", banner=Banner(format=[Format(320, 50), Format(160, 600)]))])
    bid = h.run(req).bids[0]
    assert (bid.w, bid.h, bid.crid) == (160, 600, "a2-b")


def test_video_mime_and_duration():
    video = Creative("v", CreativeKind.VIDEO, 640, 360, mime="video/mp4", duration=30)
    h = Harness([campaign("a", 2.0, creatives=[video])])
    fits = Video(mimes=["video/mp4"], minduration=5, maxduration=30)
    assert winner(h.run(request(imp=[Imp(id="1", video=fits)]))) == "a"
    too_long = Video(mimes=["video/mp4"], maxduration=15)
    assert h.run(request(imp=[Imp(id="1", video=too_long)])).bids == []
    other_mime = Video(mimes=["video/webm"])
    assert h.run(request(imp=[Imp(id="1", video=other_mime)])).bids == []


def test_native_slot_takes_native_creatives_only():
    native = Creative("n", CreativeKind.NATIVE, adm="{}")
    h = Harness([campaign("a", 2.0, creatives=[native]), campaign("b", 9.0)])
    assert winner(h.run(request(imp=[Imp(id="1", native=Native(request="{}"))]))) == "a"


@pytest.mark.parametrize(
    ("blocks", "blocked"),
    [
        ({"bcat": ["IAB7-3"]}, True),
        ({"bcat": ["IAB7"]}, True),  # a parent category blocks its children
        ({"bcat": ["IAB8"]}, False),
        ({"badv": ["a.example"]}, True),
        ({"bapp": ["com.a.game"]}, True),
    ],
)
def test_blocking(blocks, blocked):
    a = campaign("a", 5.0, creatives=[banner("a", cat=["IAB7-3"])], bundle="com.a.game")
    h = Harness([a, campaign("b", 1.0)])
    assert winner(h.run(request(**blocks))) == ("b" if blocked else "a")


@pytest.mark.parametrize(
    ("targeting", "eligible"),
    [
        (Targeting(cat=["IAB12"]), True),
        (Targeting(cat=["IAB3"]), False),
        (Targeting(country=["USA", "CAN"]), True),
        (Targeting(country=["GBR"]), False),
        (Targeting(devicetype=[2]), True),
        (Targeting(devicetype=[4, 5]), False),
    ],
)
def test_targeting(targeting, eligible):
    h = Harness([campaign("a", 5.0, targeting=targeting), campaign("b", 1.0)])
    assert winner(h.run(request())) == ("a" if eligible else "b")


def test_targeting_a_parent_category_matches_a_subcategory_site():
    h = Harness([campaign("a", 5.0, targeting=Targeting(cat=["IAB12"])), campaign("b", 1.0)])
    req = request(site=Site(id="s", cat=["IAB12-2"]))
    assert winner(h.run(req)) == "a"


def test_paused_campaigns_do_not_bid():
    h = Harness([campaign("a", 5.0, paused=True), campaign("b", 1.0)])
    assert winner(h.run(request())) == "b"
    h.book.upsert(replace(h.book.get("a"), paused=False))
    assert winner(h.run(request(id="r2"))) == "a"


def test_win_reserves_budget_and_an_exhausted_campaign_stops():
    # a bids 10 USD CPM (10_000 micros a win at most) and pays 1.01 (1_010 micros);
    # it may bid only while it could afford its own bid: 12_500 -> 3 wins.
    a = campaign("a", 5.0, budget_usd=0.0125)
    b = campaign("b", 0.5, budget_usd=100.0)
    h = Harness([a, b])
    won = [winner(h.run(request(id=f"r{i}"))) for i in range(5)]
    assert won == ["a", "a", "a", "b", "b"]
    assert h.book.spent_today("a") == 3 * 1_010
    assert h.book.spent_today("a") <= a.daily_budget_micros


def test_one_winner_per_imp_and_an_advertiser_may_win_several():
    h = Harness([campaign("a", 5.0), campaign("b", 1.0)])
    imps = [Imp(id=str(i), banner=Banner(w=300, h=250)) for i in range(3)]
    result = h.run(request(imp=imps))
    assert [b.impid for b in result.bids] == ["0", "1", "2"]
    assert {b.campaign_id for b in result.bids} == {"a"}
    assert len({b.id for b in result.bids}) == 3


def test_trades_are_recorded_with_deterministic_ids_and_signed_notice_urls():
    h = Harness([campaign("a", 5.0), campaign("b", 1.0)])
    bid = h.run(request(imp=[Imp(id="1", banner=Banner(w=300, h=250), exp=600)])).bids[0]
    assert bid.id == trade_id("r1", "1", "a")
    (trade,) = h.trades
    assert (trade.id, trade.campaign_id, trade.reserved_micros) == (bid.id, "a", 2_010)
    assert trade.charged_micros == 2_010 and trade.state == "pending"
    assert trade.price_cur_micros == 2_010_000 and trade.predicted_ms == SECONDS * 1000
    assert trade.publisher == "site:s" and trade.take_rate_bps == 1000
    assert trade.expires_ns - trade.won_ns == 600 * 10**9  # imp.exp
    sig = NoticeSigner("k" * 32).sign(bid.id)
    assert bid.sig == sig
    for url in (bid.nurl, bid.burl, bid.lurl, bid.beacon):
        assert f"bid={bid.id}&sig={sig}" in url
    assert "${AUCTION_PRICE}" in bid.burl and "${AUCTION_LOSS}" in bid.lurl
    assert "${ATTENTION_SECONDS}" in bid.beacon


def test_test_mode_neither_reserves_nor_records():
    h = Harness([campaign("a", 5.0)])
    assert winner(h.run(request(test=1))) == "a"
    assert h.trades == [] and h.book.spent_today("a") == 0


def test_tmax_too_short_gets_no_bid():
    h = Harness([campaign("a", 5.0)], tmax_margin_ms=1.0)
    result = h.run(request(tmax=1))
    assert result.bids == [] and result.nbr == NoBidReason.TMAX_TOO_SHORT


def test_a_late_answer_is_a_no_bid_and_releases_its_reservation():
    h = Harness([campaign("a", 5.0)], tmax_margin_ms=0.0)
    long_ago = time.perf_counter_ns() - 50_000_000  # the request arrived 50 ms ago
    result = h.auction.run(request(tmax=10), long_ago)
    assert result.nbr == NoBidReason.TMAX_TOO_SHORT
    assert h.trades == [] and h.book.spent_today("a") == 0


# --- frequency caps and behaviour histories (the user store's state) ---------------------


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def capped_pair(count: int = 2, window_s: int = 3600) -> Harness:
    """a outbids b, and a is capped."""
    return Harness(
        [campaign("a", 3.0, frequency_cap=FrequencyCap(count, window_s)), campaign("b", 2.0)]
    )


def run_for(h: Harness, user: UserState | None, req: BidRequest | None = None):
    return h.auction.run(req or request(), time.perf_counter_ns(), user)


def test_a_campaign_at_its_cap_sits_out_for_that_user_only():
    h, t = capped_pair(count=2), now_ms()
    assert winner(run_for(h, UserState([], {"a": [t - 1_000, t - 2_000]}))) == "b"  # 2 in 1 h
    assert winner(run_for(h, UserState([], {"a": [t - 1_000]}))) == "a"  # 1 of 2
    assert winner(run_for(h, UserState([], {}))) == "a"  # another user
    # The older of the two is outside the hour: the window rolls.
    assert winner(run_for(h, UserState([], {"a": [t - 1_000, t - 3_601_000]}))) == "a"


def test_unknown_caps_keep_capped_campaigns_out_and_no_user_keeps_none_out():
    h = capped_pair()
    assert winner(run_for(h, UserState([], {}, known=False))) == "b"  # the store is down
    assert winner(run_for(h, None)) == "a"  # no user id: nothing to cap by


def test_wins_within_one_request_count_against_the_cap():
    h = capped_pair(count=1)
    imps = [Imp(id=str(i), banner=Banner(w=300, h=250)) for i in (1, 2)]
    result = run_for(h, UserState([], {}), request(imp=imps))
    assert [b.campaign_id for b in result.bids] == ["a", "b"]


def test_shown_impressions_carry_the_cap_and_the_ads_history_item():
    h = capped_pair(count=2, window_s=60)
    result = run_for(h, UserState([], {}))
    (impression,) = result.shown
    assert impression.campaign_id == "a"
    assert (impression.cap_count, impression.cap_window_ms) == (2, 60_000)
    assert impression.item == int(h.book.index.ad[h.book.index.rows_of[0][0]]) + 1
    assert run_for(h, UserState([], {}), request(test=1)).shown == []  # test mode buys nothing


class HistoryScorer(FixedScorer):
    def __init__(self) -> None:
        self.histories: list[list[int]] = []

    def score(self, batch: ScoringBatch) -> Scores:
        self.histories.append(batch.history[: batch.history_len].tolist())
        return super().score(batch)


def test_the_callers_history_wins_and_the_stored_one_fills_in_without_it():
    h = Harness([campaign("a", 3.0)])
    h.auction.scorer = scorer = HistoryScorer()
    stored = UserState([7, 5, 3], {})
    run_for(h, stored, request(user=User(id="u", history=[9, 8])))
    run_for(h, stored, request(user=User(id="u")))
    assert scorer.histories == [[9, 8], [7, 5, 3]]


class CountingScorer(FixedScorer):
    def __init__(self) -> None:
        self.scored: list[int] = []

    def score(self, batch: ScoringBatch) -> Scores:
        self.scored.append(len(batch.ads))
        return super().score(batch)


def test_too_many_candidates_are_shortlisted_by_their_prior_bid_before_scoring():
    video = Creative(
        "v-v", CreativeKind.VIDEO, 640, 360, mime="video/mp4", duration=30, adm="<VAST/>"
    )
    campaigns = [campaign(c, acpm) for c, acpm in (("a", 3.0), ("b", 2.5), ("c", 1.0))]
    campaigns.append(campaign("v", 1.5, creatives=[video]))  # low aCPM, long attention prior
    imp = Imp(id="1", banner=Banner(w=300, h=250), video=Video(mimes=["video/mp4"]))
    h = Harness(campaigns, max_candidates=2)
    h.auction.scorer = scorer = CountingScorer()
    result = h.run(request(imp=[imp]))
    assert scorer.scored == [2]  # a (3.0 x 1.25 s prior) and v (1.5 x 12.4 s): not b, c
    assert winner(result) == "a"
    assert result.bids[0].price_cpm_micros == int(1_500_000 * SECONDS) + 10_000  # v runner-up
    h = Harness(campaigns)  # under the cap: every candidate is scored
    h.auction.scorer = scorer = CountingScorer()
    h.run(request(imp=[imp]))
    assert scorer.scored == [4]

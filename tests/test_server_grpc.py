"""The gRPC front end of a real exchange process: Bid, Notify, Admin, health, reflection.

Most tests share one server per module (`server`, `grpc_channel`); tests that
change the campaign book or restart get their own from `start_server`.
"""

from __future__ import annotations

import copy
import itertools
import signal
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from exchange.auction import NoBidReason
from exchange.example import example_request
from protos.attnx.v1 import admin_pb2, admin_pb2_grpc, exchange_pb2, exchange_pb2_grpc, openrtb_pb2

TIMEOUT = 10.0  # seconds per call: a hung server fails the test instead of the suite
MAX_REQUEST_BYTES = 256 * 1024
DEMO_CAMPAIGNS = 400
CURRENCIES = "AUD, CAD, EUR, GBP, JPY, USD"
MEGA_ACPM_MICROS = 500_000_000  # $500 per 1000 attentive seconds: outbids every demo campaign


def bid_request(mutate: Callable[[dict[str, Any]], Any] | None = None) -> openrtb_pb2.BidRequest:
    """The example request as protobuf, after `mutate` edits its JSON form in place."""
    body = copy.deepcopy(example_request())
    if mutate is not None:
        mutate(body)
    return json_format.ParseDict(body, openrtb_pb2.BidRequest())


def exchange_stub(channel: grpc.Channel) -> exchange_pb2_grpc.ExchangeStub:
    return exchange_pb2_grpc.ExchangeStub(channel)


def admin_stub(channel: grpc.Channel) -> admin_pb2_grpc.AdminStub:
    return admin_pb2_grpc.AdminStub(channel)


def rpc_error(call: Callable[..., Any], request: Any) -> grpc.RpcError:
    """The error `call(request)` fails with (the test fails if it succeeds)."""
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=TIMEOUT)
    return info.value


def only_bid(response: openrtb_pb2.BidResponse) -> openrtb_pb2.Bid:
    assert len(response.seatbid) == 1, response
    assert len(response.seatbid[0].bid) == 1, response
    return response.seatbid[0].bid[0]


def mega_campaign(campaign_id: str = "zz-mega") -> admin_pb2.Campaign:
    """A campaign no demo campaign can outbid on the example's 300x250 slot."""
    return admin_pb2.Campaign(
        id=campaign_id,
        advertiser="Mega Corp",
        adomain=["mega.example"],
        seat="seat-mega",
        creatives=[
            admin_pb2.Creative(
                id=f"{campaign_id}-b300x250",
                kind=admin_pb2.CREATIVE_KIND_BANNER,
                w=300,
                h=250,
                adm="<div>mega</div>",
            )
        ],
        acpm_micros=MEGA_ACPM_MICROS,
        daily_budget_micros=1_000_000_000_000,  # $1M a day
        targeting=admin_pb2.Targeting(),  # any site, country and device
    )


def read_db(path: Path, sql: str, *params: Any) -> list[tuple]:
    """Rows from the server's SQLite file, opened read-only beside the running server."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return db.execute(sql, params).fetchall()


# --- Bid -------------------------------------------------------------------------------


def test_bid_with_the_example_returns_a_priced_bid(grpc_channel):
    request = bid_request()
    response = exchange_stub(grpc_channel).Bid(request, timeout=TIMEOUT)

    assert response.id == request.id
    assert response.cur == "USD"
    assert response.nbr == 0
    bid = only_bid(response)
    assert response.seatbid[0].seat
    assert bid.id
    assert bid.impid == "1"
    assert bid.price > 0
    assert (bid.w, bid.h) == (300, 250)
    assert bid.adm
    assert bid.crid
    for url, macro in (
        (bid.nurl, "${AUCTION_PRICE}"),
        (bid.burl, "${AUCTION_PRICE}"),
        (bid.lurl, "${AUCTION_LOSS}"),
    ):
        assert f"bid={bid.id}" in url
        assert macro in url
    assert "/notice/win?" in bid.nurl
    assert "/notice/bill?" in bid.burl
    assert "/notice/loss?" in bid.lurl
    attention = bid.ext.attention
    assert attention.seconds > 0
    assert 0 < attention.p_view <= 1
    assert attention.campaign_id
    assert attention.campaign_id == bid.cid
    assert attention.acpm > 0


def _banner_w(r):
    r["imp"][0]["banner"]["w"] = -1


def _no_imp(r):
    r["imp"] = []


def _site_and_app(r):
    r["app"] = {"id": "app-1", "bundle": "com.example.news"}


def _no_id(r):
    r["id"] = ""


def _auction_type(r):
    r["at"] = 3


def _duplicate_imp(r):
    r["imp"].append(copy.deepcopy(r["imp"][0]))


def _floor_currency(r):
    r["imp"][0]["bidfloorcur"] = "XYZ"


def _devicetype(r):
    r["device"]["devicetype"] = 9


def _no_media(r):
    del r["imp"][0]["banner"]


def _video_without_mimes(r):
    r["imp"][0]["video"] = {"minduration": 5, "maxduration": 30}


def _negative_history(r):
    r["user"]["ext"]["attention"]["history"] = [1, -2]


def _response_currency(r):
    r["cur"] = ["ZZZ"]


def _negative_tmax(r):
    r["tmax"] = -5


INVALID_REQUESTS = [
    pytest.param(_banner_w, "request.imp[0].banner.w must be positive", id="banner-w"),
    pytest.param(_no_imp, "request.imp must contain at least one imp", id="no-imp"),
    pytest.param(
        _site_and_app,
        "request must have exactly one of site, app or dooh (got site and app)",
        id="site-and-app",
    ),
    pytest.param(_no_id, "request.id is required", id="no-id"),
    pytest.param(_auction_type, "request.at must be 1 (first price) or 2 (second price)", id="at"),
    pytest.param(_duplicate_imp, 'request.imp[1].id "1" is not unique', id="duplicate-imp"),
    pytest.param(
        _floor_currency,
        f'request.imp[0].bidfloorcur "XYZ" is not a supported currency (supported: {CURRENCIES})',
        id="bidfloorcur",
    ),
    pytest.param(
        _response_currency,
        f'request.cur[0] "ZZZ" is not a supported currency (supported: {CURRENCIES})',
        id="cur",
    ),
    pytest.param(_devicetype, "request.device.devicetype must be between 0 and 7", id="devicetype"),
    pytest.param(
        _no_media, "request.imp[0] must have a banner, video or native object", id="no-media"
    ),
    pytest.param(
        _video_without_mimes, "request.imp[0].video.mimes must not be empty", id="video-mimes"
    ),
    pytest.param(
        _negative_history,
        "request.user.ext.attention.history[1] must not be negative",
        id="history",
    ),
    pytest.param(_negative_tmax, "request.tmax must not be negative", id="tmax"),
]


@pytest.mark.parametrize(("mutate", "message"), INVALID_REQUESTS)
def test_bid_rejects_an_invalid_request_naming_the_field(grpc_channel, mutate, message):
    error = rpc_error(exchange_stub(grpc_channel).Bid, bid_request(mutate))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == message


def test_site_and_app_message_starts_with_the_rule(grpc_channel):
    error = rpc_error(exchange_stub(grpc_channel).Bid, bid_request(_site_and_app))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("request must have exactly one of site, app or dooh")


def test_oversized_request_is_resource_exhausted_and_the_server_goes_on(grpc_channel):
    stub = exchange_stub(grpc_channel)

    def huge_bcat(r):
        r["bcat"] = [f"IAB{i % 26}-{i}" for i in range(40_000)]

    request = bid_request(huge_bcat)
    assert request.ByteSize() > MAX_REQUEST_BYTES
    error = rpc_error(stub.Bid, request)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    after = stub.Bid(bid_request(), timeout=TIMEOUT)
    assert only_bid(after).price > 0


def test_no_creative_fits_is_a_no_bid_500(grpc_channel):
    def tiny_banner(r):
        r["imp"][0]["banner"] = {"w": 7, "h": 7}

    request = bid_request(tiny_banner)
    response = exchange_stub(grpc_channel).Bid(request, timeout=TIMEOUT)
    assert response.id == request.id
    assert len(response.seatbid) == 0
    assert response.nbr == NoBidReason.NO_ELIGIBLE_CAMPAIGN == 500


def test_tmax_too_short_is_a_no_bid_502(grpc_channel):
    def short_tmax(r):
        r["tmax"] = 1

    response = exchange_stub(grpc_channel).Bid(bid_request(short_tmax), timeout=TIMEOUT)
    assert len(response.seatbid) == 0
    assert response.nbr == NoBidReason.TMAX_TOO_SHORT == 502


def test_floor_above_every_bid_is_a_no_bid_501(grpc_channel):
    def high_floor(r):
        r["imp"][0]["bidfloor"] = 1_000_000.0

    response = exchange_stub(grpc_channel).Bid(bid_request(high_floor), timeout=TIMEOUT)
    assert len(response.seatbid) == 0
    assert response.nbr == NoBidReason.BELOW_FLOOR == 501


def test_huge_bidfloor_is_invalid_not_internal(grpc_channel):
    def huge_floor(r):
        r["imp"][0]["bidfloor"] = 1e308

    error = rpc_error(exchange_stub(grpc_channel).Bid, bid_request(huge_floor))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "request.imp[0].bidfloor must be at most 1000000"


# --- Notify ------------------------------------------------------------------------------


def test_notices_move_the_trade_once_and_are_in_the_ledger(server, grpc_channel):
    stub = exchange_stub(grpc_channel)
    request = bid_request()
    bid = only_bid(stub.Bid(request, timeout=TIMEOUT))
    sig = bid.ext.attention.sig
    notify = stub.Notify

    win = exchange_pb2.Notice(
        type=exchange_pb2.NOTICE_TYPE_WIN, bid_id=bid.id, price=bid.price, sig=sig
    )
    first = notify(win, timeout=TIMEOUT)
    assert (first.recorded, first.bid_id, first.state) == (True, bid.id, "pending")
    again = notify(win, timeout=TIMEOUT)
    assert (again.recorded, again.state) == (False, "pending")  # idempotent

    bill = exchange_pb2.Notice(
        type=exchange_pb2.NOTICE_TYPE_BILL, bid_id=bid.id, price=bid.price, cur="USD", sig=sig
    )
    assert notify(bill, timeout=TIMEOUT).state == "posted"
    measured = exchange_pb2.Notice(
        type=exchange_pb2.NOTICE_TYPE_ATTENTION, bid_id=bid.id, attentive_seconds=0.5, sig=sig
    )
    assert notify(measured, timeout=TIMEOUT).recorded is True
    loss = exchange_pb2.Notice(
        type=exchange_pb2.NOTICE_TYPE_LOSS, bid_id=bid.id, loss_reason=102, sig=sig
    )
    error = rpc_error(notify, loss)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == f"bid {bid.id} was billed: it cannot be lost"

    # The trade was durable before the bid came back; each notice after its commit.
    reserved = round(bid.price * 1e6) // 1000
    trued = min(reserved, reserved * 500 // round(bid.ext.attention.seconds * 1000))
    trades = read_db(
        server.db_path,
        "SELECT request_id, imp_id, campaign_id, price_cur_micros, cur, state, charged_micros "
        "FROM ledger_trades WHERE id = ?",
        bid.id,
    )
    assert trades == [
        (request.id, "1", bid.ext.attention.campaign_id, round(bid.price * 1e6), "USD", "posted",
         trued)
    ]  # fmt: skip
    notices = read_db(
        server.db_path,
        "SELECT kind, outcome FROM ledger_notices WHERE trade_id = ? ORDER BY received_ns",
        bid.id,
    )
    assert notices == [
        ("win", "recorded"),
        ("win", "duplicate"),
        ("bill", "recorded"),
        ("attention", "recorded"),
        ("loss", "conflict"),
    ]


def test_notify_with_a_forged_signature_is_permission_denied(grpc_channel):
    bid = only_bid(exchange_stub(grpc_channel).Bid(bid_request(), timeout=TIMEOUT))
    notice = exchange_pb2.Notice(
        type=exchange_pb2.NOTICE_TYPE_LOSS, bid_id=bid.id, sig="0" * 32, loss_reason=2
    )
    error = rpc_error(exchange_stub(grpc_channel).Notify, notice)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "the URL was altered or not issued here" in error.details()


def test_notify_for_a_test_bid_is_not_found(grpc_channel):
    request = bid_request()
    request.test = 1
    bid = only_bid(exchange_stub(grpc_channel).Bid(request, timeout=TIMEOUT))
    notice = exchange_pb2.Notice(
        type=exchange_pb2.NOTICE_TYPE_WIN, bid_id=bid.id, price=bid.price,
        sig=bid.ext.attention.sig,
    )  # fmt: skip
    error = rpc_error(exchange_stub(grpc_channel).Notify, notice)
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert (
        error.details() == f'bid "{bid.id}" is not a trade of this exchange (test bids make none)'
    )


@pytest.fixture(scope="module")
def won_bid(grpc_channel) -> openrtb_pb2.Bid:
    return only_bid(exchange_stub(grpc_channel).Bid(bid_request(), timeout=TIMEOUT))


@pytest.mark.parametrize(
    ("notice", "message"),
    [
        pytest.param(
            {"type": exchange_pb2.NOTICE_TYPE_UNSPECIFIED, "price": 1.0},
            "notice.type must be NOTICE_TYPE_WIN, NOTICE_TYPE_BILL, NOTICE_TYPE_LOSS or "
            "NOTICE_TYPE_ATTENTION",
            id="unspecified-type",
        ),
        pytest.param(
            {"type": exchange_pb2.NOTICE_TYPE_WIN, "price": 1.0, "cur": "XYZ"},
            'notice.cur "XYZ" is not a supported currency',
            id="currency",
        ),
        pytest.param(
            {"type": exchange_pb2.NOTICE_TYPE_BILL, "price": -1.0},
            "notice.price must be a finite number >= 0",
            id="negative-price",
        ),
        pytest.param(
            {"type": exchange_pb2.NOTICE_TYPE_WIN, "price": float("nan")},
            "notice.price must be a finite number >= 0",
            id="nan-price",
        ),
        pytest.param(
            {"type": exchange_pb2.NOTICE_TYPE_LOSS, "loss_reason": -1},
            "notice.reason must be an OpenRTB loss reason code, 0 to 2147483647",
            id="loss-reason",
        ),
        pytest.param(
            {"type": exchange_pb2.NOTICE_TYPE_WIN, "price": 1.0, "bid_id": "not/a-bid"},
            "notice.bid must be at most 64 letters or digits",
            id="bid-id",
        ),
        pytest.param(
            {"type": exchange_pb2.NOTICE_TYPE_WIN, "price": 1.0, "bid_id": ""},
            "notice.bid is required",
            id="no-bid-id",
        ),
    ],
)
def test_notify_rejects_an_invalid_notice(grpc_channel, won_bid, notice, message):
    fields = {"bid_id": won_bid.id, **notice}
    error = rpc_error(exchange_stub(grpc_channel).Notify, exchange_pb2.Notice(**fields))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == message


def test_notify_with_a_huge_price_is_invalid_not_internal(grpc_channel, won_bid):
    notice = exchange_pb2.Notice(type=exchange_pb2.NOTICE_TYPE_BILL, bid_id=won_bid.id, price=1e300)
    error = rpc_error(exchange_stub(grpc_channel).Notify, notice)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "notice.price must be at most 1000000"


# --- Admin -------------------------------------------------------------------------------


def test_list_campaigns_pages_through_every_campaign(grpc_channel):
    admin = admin_stub(grpc_channel)
    ids: list[str] = []
    token = ""
    pages = 0
    while True:
        page = admin.ListCampaigns(
            admin_pb2.ListCampaignsRequest(page_size=50, page_token=token), timeout=TIMEOUT
        )
        pages += 1
        assert len(page.campaigns) <= 50
        for status in page.campaigns:
            ids.append(status.campaign.id)
            assert status.spent_today_micros >= 0
            assert (
                status.remaining_today_micros
                == status.campaign.daily_budget_micros - status.spent_today_micros
            )
        token = page.next_page_token
        if not token:
            break
        assert token == ids[-1]
        assert pages < 100, "ListCampaigns never stopped handing out tokens"
    assert len(ids) == DEMO_CAMPAIGNS
    assert pages == DEMO_CAMPAIGNS // 50
    assert all(a < b for a, b in itertools.pairwise(ids)), "ids not strictly increasing"

    default = admin.ListCampaigns(admin_pb2.ListCampaignsRequest(), timeout=TIMEOUT)
    assert [s.campaign.id for s in default.campaigns] == ids[:100]
    assert default.next_page_token == ids[99]

    got = admin.GetCampaign(admin_pb2.CampaignRef(id=ids[17]), timeout=TIMEOUT)
    assert got.campaign.id == ids[17]
    assert got.campaign.creatives
    assert got.campaign.acpm_micros > 0


def test_list_campaigns_rejects_a_page_size_out_of_range(grpc_channel):
    error = rpc_error(
        admin_stub(grpc_channel).ListCampaigns, admin_pb2.ListCampaignsRequest(page_size=1001)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "request.page_size must be between 1 and 1000"


def test_get_unknown_campaign_is_not_found(grpc_channel):
    error = rpc_error(admin_stub(grpc_channel).GetCampaign, admin_pb2.CampaignRef(id="nope-404"))
    assert error.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        pytest.param(
            lambda c: setattr(c.creatives[0], "w", 0),
            "campaign.creatives[0].w must be positive",
            id="creative-w",
        ),
        pytest.param(lambda c: setattr(c, "id", ""), "campaign.id is required", id="no-id"),
        pytest.param(
            lambda c: setattr(c, "acpm_micros", 0),
            "campaign.acpm_micros must be positive",
            id="acpm",
        ),
        pytest.param(
            lambda c: setattr(c.creatives[0], "kind", admin_pb2.CREATIVE_KIND_UNSPECIFIED),
            "campaign.creatives[0].kind must be banner, video or native",
            id="creative-kind",
        ),
        pytest.param(
            lambda c: c.targeting.country.append("US"),
            'campaign.targeting.country[0] "US" must be an ISO-3166-1 alpha-3 code like "USA"',
            id="country",
        ),
    ],
)
def test_upsert_rejects_an_invalid_campaign(grpc_channel, edit, message):
    campaign = mega_campaign("zz-invalid")
    edit(campaign)
    admin = admin_stub(grpc_channel)
    error = rpc_error(admin.UpsertCampaign, campaign)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == message
    assert "campaign." in error.details()
    missing = rpc_error(admin.GetCampaign, admin_pb2.CampaignRef(id="zz-invalid"))
    assert missing.code() == grpc.StatusCode.NOT_FOUND


def test_upsert_pause_and_resume_steer_the_auction(start_server):
    with start_server().channel() as channel:
        admin, exchange = admin_stub(channel), exchange_stub(channel)
        mega = mega_campaign()

        status = admin.UpsertCampaign(mega, timeout=TIMEOUT)
        assert status.campaign == mega
        assert status.spent_today_micros == 0
        assert status.remaining_today_micros == mega.daily_budget_micros
        assert (
            admin.GetCampaign(admin_pb2.CampaignRef(id=mega.id), timeout=TIMEOUT).campaign == mega
        )

        bid = only_bid(exchange.Bid(bid_request(), timeout=TIMEOUT))
        assert bid.ext.attention.campaign_id == mega.id
        assert bid.cid == mega.id
        assert bid.crid == "zz-mega-b300x250"
        assert bid.adm == "<div>mega</div>"
        assert list(bid.adomain) == ["mega.example"]

        spent = admin.GetCampaign(admin_pb2.CampaignRef(id=mega.id), timeout=TIMEOUT)
        charge = round(bid.price * 1e6) // 1000  # a win charges CPM / 1000
        assert spent.spent_today_micros == charge > 0
        assert spent.remaining_today_micros == mega.daily_budget_micros - charge

        # Test mode buys nothing: the auction runs, the budget is untouched.
        test_bid = only_bid(exchange.Bid(bid_request(lambda r: r.update(test=1)), timeout=TIMEOUT))
        assert test_bid.cid == mega.id
        unchanged = admin.GetCampaign(admin_pb2.CampaignRef(id=mega.id), timeout=TIMEOUT)
        assert unchanged.spent_today_micros == charge

        paused = admin.PauseCampaign(admin_pb2.CampaignRef(id=mega.id), timeout=TIMEOUT)
        assert paused.campaign.paused is True
        other = only_bid(exchange.Bid(bid_request(), timeout=TIMEOUT))
        assert other.cid != mega.id

        resumed = admin.ResumeCampaign(admin_pb2.CampaignRef(id=mega.id), timeout=TIMEOUT)
        assert resumed.campaign.paused is False
        again = only_bid(exchange.Bid(bid_request(), timeout=TIMEOUT))
        assert again.cid == mega.id

        for call in (admin.PauseCampaign, admin.ResumeCampaign):
            error = rpc_error(call, admin_pb2.CampaignRef(id="nope-404"))
            assert error.code() == grpc.StatusCode.NOT_FOUND


def test_campaigns_and_spend_survive_a_restart(start_server):
    first = start_server()
    mega = mega_campaign("zz-durable")
    with first.channel() as channel:
        admin, exchange = admin_stub(channel), exchange_stub(channel)
        admin.UpsertCampaign(mega, timeout=TIMEOUT)
        for _ in range(3):
            assert only_bid(exchange.Bid(bid_request(), timeout=TIMEOUT)).cid == mega.id
        before = admin.GetCampaign(admin_pb2.CampaignRef(id=mega.id), timeout=TIMEOUT)
    assert before.spent_today_micros > 0
    first.stop()  # SIGTERM; the exit status is checked at teardown

    second = start_server(db_path=first.db_path)
    with second.channel() as channel:
        admin = admin_stub(channel)
        after = admin.GetCampaign(admin_pb2.CampaignRef(id=mega.id), timeout=TIMEOUT)
        assert after.campaign == mega
        assert after.spent_today_micros == before.spent_today_micros
        assert after.remaining_today_micros == before.remaining_today_micros
        listed = admin.ListCampaigns(
            admin_pb2.ListCampaignsRequest(page_size=1000), timeout=TIMEOUT
        )
        assert len(listed.campaigns) == DEMO_CAMPAIGNS + 1


# --- shutdown ----------------------------------------------------------------------------

STOPPED = "stopped; all queued writes committed"


def test_sigint_stops_gracefully(start_server):
    running = start_server()
    assert running.stop(signal.SIGINT) == 0
    assert STOPPED in running.log()


def test_sigterm_stops_gracefully(start_server):
    running = start_server()
    assert running.stop(signal.SIGTERM) == 0
    assert STOPPED in running.log()


# --- health and reflection ---------------------------------------------------------------


@pytest.mark.parametrize("service", ["", "attnx.v1.Exchange", "attnx.v1.Admin"])
def test_health_check_is_serving(grpc_channel, service):
    stub = health_pb2_grpc.HealthStub(grpc_channel)
    response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_health_check_of_an_unknown_service_is_not_found(grpc_channel):
    stub = health_pb2_grpc.HealthStub(grpc_channel)
    error = rpc_error(stub.Check, health_pb2.HealthCheckRequest(service="attnx.v1.Nope"))
    assert error.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_the_services_and_serves_their_descriptors(grpc_channel):
    stub = reflection_pb2_grpc.ServerReflectionStub(grpc_channel)
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="attnx.v1.Exchange"),
    ]
    listed, found = list(stub.ServerReflectionInfo(iter(requests), timeout=TIMEOUT))

    names = {s.name for s in listed.list_services_response.service}
    assert {"attnx.v1.Exchange", "attnx.v1.Admin", "grpc.health.v1.Health"} <= names

    files = found.file_descriptor_response.file_descriptor_proto
    assert files, found
    descriptors = [descriptor_pb2.FileDescriptorProto.FromString(raw) for raw in files]
    exchange_file = next(d for d in descriptors if d.package == "attnx.v1" and d.service)
    service = next(s for s in exchange_file.service if s.name == "Exchange")
    assert {m.name for m in service.method} == {"Bid", "Notify"}

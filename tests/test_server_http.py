"""The HTTP/JSON front end of a real exchange process: auctions, notice URLs, health.

One server per module (`server`); requests go through one httpx client, so a
dropped connection fails the test that caused it.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import grpc
import httpx
import orjson
import pytest
from google.protobuf import json_format

from exchange.example import example_request
from protos.attnx.v1 import exchange_pb2_grpc, openrtb_pb2

TIMEOUT = 10.0
MAX_REQUEST_BYTES = 256 * 1024
DEMO_CAMPAIGNS = 400
CURRENCIES = "AUD, CAD, EUR, GBP, JPY, USD"
AUCTION = "/openrtb2/auction"


@pytest.fixture(scope="module")
def http(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_base, timeout=TIMEOUT) as client:
        yield client


def request_body(mutate: Callable[[dict[str, Any]], Any] | None = None) -> dict[str, Any]:
    body = copy.deepcopy(example_request())
    if mutate is not None:
        mutate(body)
    return body


def post_auction(http: httpx.Client, body: dict[str, Any] | bytes) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return http.post(AUCTION, content=content, headers={"content-type": "application/json"})


def only_bid(response: dict[str, Any]) -> dict[str, Any]:
    assert len(response["seatbid"]) == 1, response
    assert len(response["seatbid"][0]["bid"]) == 1, response
    return response["seatbid"][0]["bid"][0]


def win(http: httpx.Client) -> dict[str, Any]:
    """A fresh won bid from the example request."""
    response = post_auction(http, request_body())
    assert response.status_code == 200, response.text
    return only_bid(response.json())


def notice_path(url: str) -> str:
    """The path and query of a notice URL, to GET from this test's server.

    The bid's URLs carry the server's configured public address; with `--http
    127.0.0.1:0` that is port 0 (a server bug, reported), so only the path and
    query are used here.
    """
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def assert_error(response: httpx.Response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": message}


# --- auctions ----------------------------------------------------------------------------


def test_auction_with_the_example_returns_a_bid(http):
    body = request_body()
    response = post_auction(http, body)

    assert response.status_code == 200, response.text
    assert response.headers["x-openrtb-version"] == "2.6"
    assert response.headers["content-type"] == "application/json"
    answer = response.json()
    assert answer["id"] == body["id"]
    assert answer["cur"] == "USD"
    assert answer["seatbid"][0]["seat"]
    bid = only_bid(answer)
    assert bid["impid"] == "1"
    assert bid["price"] > 0
    assert (bid["w"], bid["h"]) == (300, 250)
    assert bid["exp"] == 300
    assert bid["adm"]
    assert bid["crid"]
    assert bid["adomain"]
    for key, kind, macro in (
        ("nurl", "win", "${AUCTION_PRICE}"),
        ("burl", "bill", "${AUCTION_PRICE}"),
        ("lurl", "loss", "${AUCTION_LOSS}"),
    ):
        assert f"/notice/{kind}?" in bid[key]
        assert f"bid={bid['id']}" in bid[key]
        assert macro in bid[key]
    attention = bid["ext"]["attention"]
    assert attention["seconds"] > 0
    assert 0 < attention["p_view"] <= 1
    assert attention["campaign_id"] == bid["cid"]
    assert attention["acpm"] > 0


def test_auction_answers_in_the_first_accepted_currency(http):
    response = post_auction(http, request_body(lambda r: r.update(cur=["EUR", "USD"])))
    assert response.status_code == 200, response.text
    assert response.json()["cur"] == "EUR"
    assert "cur=EUR" in only_bid(response.json())["nurl"]


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda r: r["imp"][0].update(banner={"w": 7, "h": 7}), id="nothing-fits"),
        pytest.param(lambda r: r.update(tmax=1), id="tmax-too-short"),
        pytest.param(lambda r: r["imp"][0].update(bidfloor=1_000_000), id="below-floor"),
    ],
)
def test_no_bid_is_204_with_an_empty_body(http, mutate):
    response = post_auction(http, request_body(mutate))
    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["x-openrtb-version"] == "2.6"


def _set(path: tuple, value: Any) -> Callable[[dict[str, Any]], None]:
    """An edit that sets body[path...] = value."""

    def mutate(body: dict[str, Any]) -> None:
        target = body
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            lambda: request_body(_set(("imp", 0, "banner", "w"), -1)),
            "request.imp[0].banner.w must be positive",
            id="banner-w",
        ),
        pytest.param(
            lambda: request_body(_set(("imp", 0, "bidfloor"), "abc")),
            "request.imp[0].bidfloor must be a number",
            id="bidfloor-type",
        ),
        pytest.param(
            lambda: request_body(_set(("cur",), ["XYZ"])),
            f'request.cur[0] "XYZ" is not a supported currency (supported: {CURRENCIES})',
            id="cur",
        ),
        pytest.param(
            lambda: request_body(_set(("tmax",), "120")),
            "request.tmax must be an integer",
            id="tmax-type",
        ),
        pytest.param(
            lambda: request_body(_set(("imp", 0, "banner", "h"), 2**31)),
            "request.imp[0].banner.h must be a 32-bit integer",
            id="int32",
        ),
        pytest.param(
            lambda: request_body(_set(("at",), True)),
            "request.at must be an integer",
            id="bool-is-not-int",
        ),
        pytest.param(
            lambda: request_body(_set(("site",), ["site-1"])),
            "request.site must be a JSON object",
            id="site-type",
        ),
        pytest.param(
            lambda: request_body(_set(("imp", 0), "1")),
            "request.imp[0] must be a JSON object",
            id="imp-type",
        ),
        pytest.param(
            lambda: request_body(_set(("bcat", 1), 26)),
            "request.bcat[1] must be a string",
            id="bcat-item",
        ),
        pytest.param(lambda: [example_request()], "request must be a JSON object", id="array"),
    ],
)
def test_bad_request_is_400_naming_the_field(http, body, message):
    assert_error(post_auction(http, body()), 400, message)


@pytest.mark.parametrize(
    "raw", [b"{", b"", b"not json", b'{"id": "x",}', b"\xff\xfe\x00"], ids=repr
)
def test_invalid_json_is_400(http, raw):
    response = post_auction(http, raw)
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith("request is not valid JSON: ")


def test_body_over_256_kib_is_413_and_the_server_goes_on(http):
    body = request_body(_set(("bcat",), [f"IAB{i % 26}-{i}" for i in range(40_000)]))
    raw = orjson.dumps(body)
    assert len(raw) > MAX_REQUEST_BYTES
    too_large = f"request body is larger than {MAX_REQUEST_BYTES} bytes"
    assert_error(post_auction(http, raw), 413, too_large)

    # Without a Content-Length (chunked), the limit holds while reading.
    def chunks() -> Iterator[bytes]:
        for start in range(0, len(raw), 16 * 1024):
            yield raw[start : start + 16 * 1024]

    chunked = http.post(AUCTION, content=chunks())
    assert_error(chunked, 413, too_large)

    assert win(http)["price"] > 0


def test_body_of_exactly_the_limit_is_read(http):
    body = orjson.dumps(request_body())
    padded = body[:-1] + b" " * (MAX_REQUEST_BYTES - len(body)) + b"}"
    assert len(padded) == MAX_REQUEST_BYTES
    assert post_auction(http, padded).status_code == 200


def test_huge_bidfloor_is_a_clear_400(http):
    response = post_auction(http, request_body(_set(("imp", 0, "bidfloor"), 1e308)))
    assert_error(response, 400, "request.imp[0].bidfloor must be at most 1000000")


# --- notices -----------------------------------------------------------------------------


def test_notice_urls_move_the_trade_through_its_life_once(http):
    bid = win(http)
    price = f"{bid['price']:.2f}"  # callers often substitute two decimals: to the cent is fine
    win_path = notice_path(bid["nurl"]).replace("${AUCTION_PRICE}", price)
    pending = {"recorded": True, "bid": bid["id"], "state": "pending"}

    first = http.get(win_path)
    assert first.status_code == 200, first.text
    assert first.json() == pending
    again = http.get(win_path)
    assert again.status_code == 200, again.text
    assert again.json() == {**pending, "recorded": False}

    beacon = notice_path(bid["ext"]["attention"]["beacon"]).replace("${ATTENTION_SECONDS}", "1.5")
    assert http.get(beacon).json() == pending  # kept until the bill posts

    bill = http.get(notice_path(bid["burl"]).replace("${AUCTION_PRICE}", price))
    assert bill.status_code == 200, bill.text
    assert bill.json() == {**pending, "state": "posted"}

    loss = http.get(notice_path(bid["lurl"]).replace("${AUCTION_LOSS}", "102"))
    assert_error(loss, 409, f"bid {bid['id']} was billed: it cannot be lost")
    other_price = http.get(notice_path(bid["burl"]).replace("${AUCTION_PRICE}", "0.01"))
    assert other_price.status_code == 409
    assert "is not the clearing price" in other_price.json()["error"]


def test_a_forged_or_altered_notice_is_403(http):
    bid = win(http)
    path = notice_path(bid["lurl"]).replace("${AUCTION_LOSS}", "2")
    forged = path.replace(f"sig={bid['ext']['attention']['sig']}", "sig=" + "0" * 32)
    assert_error(
        http.get(forged),
        403,
        f"notice.sig does not match bid {bid['id']}: the URL was altered or not issued here",
    )
    other = win(http)
    altered = path.replace(bid["id"], other["id"])  # another bid, this bid's signature
    assert http.get(altered).status_code == 403
    unsigned = path.replace(f"&sig={bid['ext']['attention']['sig']}", "")
    assert_error(
        http.get(unsigned),
        400,
        "notice.sig is required: use the notice URL exactly as the bid gave it",
    )


def test_notice_with_the_macro_left_in_is_400(http):
    bid = win(http)
    response = http.get(notice_path(bid["nurl"]))  # ${AUCTION_PRICE} not substituted
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    assert "${AUCTION_PRICE}" in message
    assert message == (
        "notice.price still holds the macro ${AUCTION_PRICE}: substitute it before calling"
    )

    loss = http.get(notice_path(bid["lurl"]))
    assert loss.status_code == 400, loss.text
    assert "${AUCTION_LOSS}" in loss.json()["error"]


def test_a_notice_for_a_test_bid_is_404_it_made_no_trade(http):
    response = post_auction(http, request_body(lambda body: body.update(test=1)))
    bid = only_bid(response.json())
    path = notice_path(bid["burl"]).replace("${AUCTION_PRICE}", "1")
    message = f'bid "{bid["id"]}" is not a trade of this exchange (test bids make none)'
    assert_error(http.get(path), 404, message)


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        pytest.param(
            "/notice/click",
            {"price": "1"},
            'notice type "click" must be one of win, bill, loss, attention',
            id="unknown-type",
        ),
        pytest.param(
            "/notice/win", {"bid": None, "price": "1"}, "notice.bid is required", id="no-bid"
        ),
        pytest.param("/notice/win", {}, "notice.price is required for a win notice", id="no-price"),
        pytest.param(
            "/notice/bill", {"price": "abc"}, "notice.price must be a number", id="price-text"
        ),
        pytest.param(
            "/notice/win",
            {"price": "-1"},
            "notice.price must be a finite number >= 0",
            id="negative-price",
        ),
        pytest.param(
            "/notice/win",
            {"price": "inf"},
            "notice.price must be a finite number >= 0",
            id="infinite-price",
        ),
        pytest.param(
            "/notice/win",
            {"price": "1", "cur": "XYZ"},
            'notice.cur "XYZ" is not a supported currency',
            id="currency",
        ),
        pytest.param(
            "/notice/loss", {"reason": "x"}, "notice.reason must be an integer", id="reason"
        ),
    ],
)
def test_invalid_notice_is_400(http, path, params, message):
    query = {"bid": win(http)["id"], **params}
    response = http.get(path, params={k: v for k, v in query.items() if v is not None})
    assert_error(response, 400, message)


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        pytest.param("win", {"price": "1e308"}, id="price-1e308"),
        pytest.param("bill", {"price": "1e300"}, id="price-1e300"),
        pytest.param("loss", {"reason": str(10**20)}, id="reason-10e20"),
    ],
)
def test_huge_notice_numbers_are_not_a_500(http, kind, params):
    bid = win(http)
    response = http.get(f"/notice/{kind}", params={"bid": bid["id"], **params})
    assert response.status_code == 400, response.text


def test_notice_urls_point_at_the_listening_server(server, http):
    bid = win(http)
    assert bid["nurl"].startswith(f"{server.http_base}/notice/win?")


# --- health ------------------------------------------------------------------------------


def test_healthz(http):
    response = http.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["campaigns"]) == ("ok", DEMO_CAMPAIGNS)
    assert {
        "trades",
        "duplicate_trades",
        "caught_up",
        "queue_full",
        "notices",
        "expired",
        "rejected",
    } == set(body["ledger"])


# --- one message whichever protocol ------------------------------------------------------


PARITY = [
    pytest.param(
        _set(("imp", 0, "banner", "w"), -1), "request.imp[0].banner.w must be positive", id="w"
    ),
    pytest.param(_set(("imp",), []), "request.imp must contain at least one imp", id="no-imp"),
    pytest.param(
        _set(("app",), {"id": "app-1"}),
        "request must have exactly one of site, app or dooh (got site and app)",
        id="site-and-app",
    ),
    pytest.param(
        _set(("cur",), ["XYZ"]),
        f'request.cur[0] "XYZ" is not a supported currency (supported: {CURRENCIES})',
        id="cur",
    ),
    pytest.param(
        _set(("device", "devicetype"), 9),
        "request.device.devicetype must be between 0 and 7",
        id="devicetype",
    ),
    pytest.param(
        _set(("imp", 0, "video"), {"mimes": ["video/mp4"], "minduration": 30, "maxduration": 5}),
        "request.imp[0].video.maxduration must not be less than minduration",
        id="video-durations",
    ),
]


@pytest.mark.parametrize(("mutate", "message"), PARITY)
def test_http_and_grpc_give_the_same_message(http, grpc_channel, mutate, message):
    body = request_body(mutate)
    assert_error(post_auction(http, body), 400, message)

    proto = json_format.ParseDict(body, openrtb_pb2.BidRequest())
    with pytest.raises(grpc.RpcError) as info:
        exchange_pb2_grpc.ExchangeStub(grpc_channel).Bid(proto, timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == message


# --- robustness ----------------------------------------------------------------------------


def _junk_bodies(seed: int, n: int) -> list[bytes]:
    """`n` bodies no exchange may accept, none of which may get a 500 or a dropped connection."""
    rng = random.Random(seed)
    example = orjson.dumps(example_request("junk"))
    wrong_types: list[tuple[tuple, Any]] = [
        (("id",), 5),
        (("imp",), {"id": "1"}),
        (("imp", 0, "id"), ["1"]),
        (("imp", 0, "banner"), "300x250"),
        (("imp", 0, "banner", "w"), 300.5),
        (("imp", 0, "banner", "format"), {"w": 300}),
        (("imp", 0, "bidfloor"), [0.5]),
        (("site", "cat"), "IAB12"),
        (("site", "publisher"), 1),
        (("device", "geo"), "USA"),
        (("device", "devicetype"), "2"),
        (("user", "ext", "attention", "history"), [1, "2"]),
        (("user", "ext", "attention", "history"), [1, 2**40]),
        (("user", "ext"), []),
        (("cur",), "USD"),
        (("tmax",), -(2**63)),
        (("at",), 2**64 - 1),
        (("test",), 1.0),
    ]
    huge_numbers = [
        b'{"id": 1e999}',
        b'{"id": "x", "tmax": 123456789012345678901234567890}',
        b'{"id": "x", "tmax": -1e400}',
        b'{"id": "x", "imp": [{"id": "1", "bidfloor": 1e99999}]}',
        b'{"id": "x", "at": 18446744073709551616}',
        b"123456789012345678901234567890",
        b"-" + b"9" * 5000,
        b"0." + b"1" * 10000,
        b'{"id": "x", "imp": [{"id": "1", "exp": 9e18}]}',
    ]
    bodies: list[bytes] = []
    for i in range(n):
        kind = i % 7
        if kind == 0:  # random bytes
            bodies.append(rng.randbytes(rng.randint(0, 4096)))
        elif kind == 1:  # the example cut short
            bodies.append(example[: rng.randint(0, len(example) - 1)])
        elif kind == 2:  # deep nesting, past any parser's depth limit
            depth = rng.choice([1_025, 5_000, 10_000])
            opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
            nested = opener * depth + b"1" + closer * depth
            bodies.append(rng.choice([nested, b'{"id": "x", "imp": ' + nested + b"}"]))
        elif kind == 3:  # huge numbers
            bodies.append(rng.choice(huge_numbers))
        elif kind == 4:  # a field of the wrong type
            path, value = rng.choice(wrong_types)
            bodies.append(orjson.dumps(request_body(_set(path, value))))
        elif kind == 5:  # valid JSON, but not a request object
            bodies.append(rng.choice([b"null", b"[]", b'"a"', b"true", b"0", b"[{}]"]))
        else:  # over the size limit, sometimes with a valid start
            size = MAX_REQUEST_BYTES + rng.randint(1, 64 * 1024)
            bodies.append((example + rng.randbytes(size))[:size])
    return bodies


def test_junk_is_always_400_or_413_and_the_server_survives(http):
    statuses: dict[int, int] = {}
    for i, body in enumerate(_junk_bodies(seed=20240611, n=200)):
        response = post_auction(http, body)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code in (400, 413), (i, body[:120], response.text)
        assert "error" in response.json()
    assert statuses.get(400) and statuses.get(413), statuses

    health = http.get("/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert win(http)["price"] > 0

"""Request validation through both front ends: the same input gets the same answer.

Each rule is a row: a mutation of a valid OpenRTB JSON request and the exact
message expected. Rows run through JSON (orjson -> decode_json -> validate) and
protobuf (ParseDict -> decode_proto -> validate). Type errors can only be
written in JSON, so they have their own table.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from google.protobuf import json_format

from exchange.decode_json import decode_json
from exchange.decode_proto import decode_proto
from exchange.errors import BadRequest
from exchange.openrtb import (
    DEFAULT_AUCTION_TYPE,
    Banner,
    BidRequest,
    Device,
    Geo,
    Imp,
    Publisher,
    Site,
    User,
)
from exchange.validate import validate
from protos.attnx.v1 import openrtb_pb2

CURRENCIES = frozenset({"USD", "EUR", "GBP"})
SUPPORTED = "(supported: EUR, GBP, USD)"
DELETE = object()  # mutation value: remove the key

BASE: dict[str, Any] = {
    "id": "req-1",
    "imp": [
        {
            "id": "1",
            "banner": {"w": 300, "h": 250, "pos": 1},
            "bidfloor": 0.5,
            "bidfloorcur": "USD",
            "tagid": "slot-top",
        }
    ],
    "site": {
        "id": "site-1",
        "domain": "news.example",
        "cat": ["IAB12"],
        "page": "https://news.example/story",
        "publisher": {"id": "pub-1", "name": "News Co"},
    },
    "device": {
        "ua": "Mozilla/5.0",
        "ip": "203.0.113.7",
        "geo": {"country": "USA", "region": "CA"},
        "devicetype": 2,
        "os": "iOS",
    },
    "user": {"id": "user-1", "ext": {"attention": {"history": [42, 7, 3, 1]}}},
    "tmax": 120,
    "cur": ["USD"],
    "bcat": ["IAB25"],
}

VIDEO = {"mimes": ["video/mp4"], "minduration": 5, "maxduration": 30}


def mutate(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Copy `base` and apply {"imp.0.banner.w": value} changes (DELETE removes the key)."""
    d = copy.deepcopy(base)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node: Any = d
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = int(last) if isinstance(node, list) else last
        if value is DELETE:
            del node[key]
        else:
            node[key] = copy.deepcopy(value)
    return d


def via_json(d: dict[str, Any]) -> BidRequest:
    return decode_json(orjson.dumps(d))


def via_proto(d: dict[str, Any]) -> BidRequest:
    msg = json_format.ParseDict(d, openrtb_pb2.BidRequest(), ignore_unknown_fields=True)
    return decode_proto(msg)


def rejection(decode: Callable[[Any], BidRequest], d: Any) -> str | None:
    """The BadRequest message for decode + validate, or None if the request passes."""
    try:
        validate(decode(d), CURRENCIES)
    except BadRequest as e:
        return str(e)
    return None


# --- rules: both front ends ---

RULES: list[tuple[str, dict[str, Any], str]] = [
    ("id-missing", {"id": DELETE}, "request.id is required"),
    ("id-empty", {"id": ""}, "request.id is required"),
    ("imp-missing", {"imp": DELETE}, "request.imp must contain at least one imp"),
    ("imp-empty", {"imp": []}, "request.imp must contain at least one imp"),
    (
        "imp-too-many",
        {"imp": [{"id": str(n), "native": {"request": "{}"}} for n in range(65)]},
        "request.imp must not have more than 64 imps (got 65)",
    ),
    ("imp-id-missing", {"imp.0.id": DELETE}, "request.imp[0].id is required"),
    (
        "imp-id-duplicate",
        {"imp": [BASE["imp"][0], {"id": "1", "native": {"request": "{}"}}]},
        'request.imp[1].id "1" is not unique',
    ),
    (
        "imp-no-media",
        {"imp.0.banner": DELETE},
        "request.imp[0] must have a banner, video or native object",
    ),
    ("tmax-negative", {"tmax": -1}, "request.tmax must not be negative"),
    ("at-3", {"at": 3}, "request.at must be 1 (first price) or 2 (second price)"),
    ("at-negative", {"at": -1}, "request.at must be 1 (first price) or 2 (second price)"),
    ("no-inventory", {"site": DELETE}, "request must have exactly one of site, app or dooh"),
    (
        "site-and-app",
        {"app": {"bundle": "com.example"}},
        "request must have exactly one of site, app or dooh (got site and app)",
    ),
    (
        "site-app-dooh",
        {"app": {"bundle": "com.example"}, "dooh": {"id": "screen-1"}},
        "request must have exactly one of site, app or dooh (got site, app and dooh)",
    ),
    ("banner-w-zero", {"imp.0.banner.w": 0}, "request.imp[0].banner.w must be positive"),
    ("banner-w-negative", {"imp.0.banner.w": -300}, "request.imp[0].banner.w must be positive"),
    ("banner-h-missing", {"imp.0.banner.h": DELETE}, "request.imp[0].banner.h must be positive"),
    (
        "banner-no-size",
        {"imp.0.banner": {}},
        "request.imp[0].banner must have w and h or a non-empty format",
    ),
    (
        "banner-empty-format",
        {"imp.0.banner": {"format": []}},
        "request.imp[0].banner must have w and h or a non-empty format",
    ),
    (
        "banner-format-h",
        {"imp.0.banner": {"format": [{"w": 300, "h": 250}, {"w": 728}]}},
        "request.imp[0].banner.format[1].h must be positive",
    ),
    (
        "banner-format-w",
        {"imp.0.banner": {"format": [{"w": -1, "h": 250}]}},
        "request.imp[0].banner.format[0].w must be positive",
    ),
    (
        "banner-format-negative-w",
        {"imp.0.banner.w": -1, "imp.0.banner.format": [{"w": 300, "h": 250}]},
        "request.imp[0].banner.w must be positive",
    ),
    (
        "video-no-mimes",
        {"imp.0.banner": DELETE, "imp.0.video": {"mimes": []}},
        "request.imp[0].video.mimes must not be empty",
    ),
    (
        "video-minduration",
        {"imp.0.banner": DELETE, "imp.0.video": {**VIDEO, "minduration": -1}},
        "request.imp[0].video.minduration must not be negative",
    ),
    (
        "video-maxduration",
        {"imp.0.banner": DELETE, "imp.0.video": {**VIDEO, "maxduration": -1}},
        "request.imp[0].video.maxduration must not be negative",
    ),
    (
        "video-max-below-min",
        {"imp.0.banner": DELETE, "imp.0.video": {**VIDEO, "minduration": 30, "maxduration": 15}},
        "request.imp[0].video.maxduration must not be less than minduration",
    ),
    (
        "video-checked-beside-banner",
        {"imp.0.video": {"mimes": []}},
        "request.imp[0].video.mimes must not be empty",
    ),
    (
        "bidfloor-negative",
        {"imp.0.bidfloor": -0.01},
        "request.imp[0].bidfloor must be a finite number >= 0",
    ),
    (
        "bidfloor-absurd",
        {"imp.0.bidfloor": 1e7},
        "request.imp[0].bidfloor must be at most 1000000",
    ),
    (
        "bidfloorcur-unknown",
        {"imp.0.bidfloorcur": "XYZ"},
        f'request.imp[0].bidfloorcur "XYZ" is not a supported currency {SUPPORTED}',
    ),
    (
        "bidfloorcur-quoted-and-cut",
        {"imp.0.bidfloorcur": 'a"' + "b" * 60},
        'request.imp[0].bidfloorcur "a\\"'
        + "b" * 38
        + '..." is not a supported currency '
        + SUPPORTED,
    ),
    (
        "cur-unknown",
        {"cur": ["USD", "XYZ"]},
        f'request.cur[1] "XYZ" is not a supported currency {SUPPORTED}',
    ),
    (
        "history-negative",
        {"user.ext.attention.history": [5, 4, 3, -1]},
        "request.user.ext.attention.history[3] must not be negative",
    ),
    (
        "devicetype-high",
        {"device.devicetype": 8},
        "request.device.devicetype must be between 0 and 7",
    ),
    (
        "devicetype-negative",
        {"device.devicetype": -1},
        "request.device.devicetype must be between 0 and 7",
    ),
    (
        "second-imp-checked",
        {"imp": [BASE["imp"][0], {"id": "2", "banner": {"w": 300, "h": -250}}]},
        "request.imp[1].banner.h must be positive",
    ),
]


@pytest.mark.parametrize(("changes", "message"), [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_rule_same_message_from_both_front_ends(changes: dict[str, Any], message: str) -> None:
    d = mutate(BASE, changes)
    assert rejection(via_json, d) == message
    assert rejection(via_proto, d) == message


VALID: list[tuple[str, dict[str, Any]]] = [
    ("base", {}),
    ("native-only", {"imp.0.banner": DELETE, "imp.0.native": {"request": "{}", "ver": "1.2"}}),
    ("video-only", {"imp.0.banner": DELETE, "imp.0.video": VIDEO}),
    ("video-max-unset", {"imp.0.banner": DELETE, "imp.0.video": {**VIDEO, "maxduration": 0}}),
    ("format-only", {"imp.0.banner": {"format": [{"w": 300, "h": 250}, {"w": 320, "h": 50}]}}),
    ("format-with-lone-w", {"imp.0.banner": {"w": 300, "format": [{"w": 300, "h": 250}]}}),
    ("app", {"site": DELETE, "app": {"bundle": "com.example", "cat": ["IAB1"]}}),
    ("dooh", {"site": DELETE, "dooh": {"id": "screen-1", "venuetype": ["airport"]}}),
    ("first-price", {"at": 1}),
    ("tmax-unset", {"tmax": 0}),
    ("no-floor-currency", {"imp.0.bidfloorcur": "", "imp.0.bidfloor": 0}),
    ("cur-absent", {"cur": DELETE}),
    ("no-device-no-user", {"device": DELETE, "user": DELETE}),
    ("user-without-ext", {"user.ext": DELETE}),
    ("devicetype-unset", {"device.devicetype": 0}),
    ("max-imps", {"imp": [{"id": str(n), "native": {"request": "{}"}} for n in range(64)]}),
]


@pytest.mark.parametrize("changes", [r[1] for r in VALID], ids=[r[0] for r in VALID])
def test_valid_requests_pass_both_front_ends(changes: dict[str, Any]) -> None:
    d = mutate(BASE, changes)
    assert rejection(via_json, d) is None
    assert rejection(via_proto, d) is None
    assert via_json(d) == via_proto(d)


def test_base_decodes_to_the_same_values_in_both_front_ends() -> None:
    expected = BidRequest(
        id="req-1",
        imp=[
            Imp(
                id="1",
                banner=Banner(w=300, h=250, pos=1),
                bidfloor=0.5,
                bidfloorcur="USD",
                tagid="slot-top",
            )
        ],
        site=Site(
            id="site-1",
            domain="news.example",
            cat=["IAB12"],
            page="https://news.example/story",
            publisher=Publisher(id="pub-1", name="News Co"),
        ),
        device=Device(
            ua="Mozilla/5.0",
            ip="203.0.113.7",
            geo=Geo(country="USA", region="CA"),
            devicetype=2,
            os="iOS",
        ),
        user=User(id="user-1", history=[42, 7, 3, 1]),
        at=DEFAULT_AUCTION_TYPE,
        tmax=120,
        cur=["USD"],
        bcat=["IAB25"],
    )
    for decode in (via_json, via_proto):
        req = decode(BASE)
        assert req == expected
        assert req.at == 2
        assert req.user is not None and req.user.history == [42, 7, 3, 1]
        assert req.country() == "USA"
        assert req.content_categories() == ["IAB12"]


def test_at_defaults_to_second_price_when_absent_or_null() -> None:
    assert "at" not in BASE
    assert via_json(BASE).at == 2
    assert via_json(mutate(BASE, {"at": None})).at == 2
    assert via_proto(BASE).at == 2
    assert via_json(mutate(BASE, {"at": 1})).at == 1
    assert via_proto(mutate(BASE, {"at": 1})).at == 1


def test_user_geo_is_decoded_and_used_when_device_has_none() -> None:
    d = mutate(BASE, {"device.geo": DELETE, "user.geo": {"country": "GBR"}})
    for decode in (via_json, via_proto):
        req = decode(d)
        assert req.user is not None and req.user.geo == Geo(country="GBR")
        assert req.country() == "GBR"


def test_unknown_fields_are_ignored() -> None:
    d = mutate(
        BASE,
        {
            "ext": {"prebid": {"debug": True}},
            "regs": {"gdpr": 1},
            "source": {"tid": "t-1"},
            "imp.0.secure": 1,
            "imp.0.ext": {"anything": [1, "two", None]},
            "imp.0.banner.mimes": ["image/png"],
            "site.name": "News",
            "user.ext.consent": "CO-abc",
            "user.ext.attention.model": "v2",
            "device.geo.lat": 37.7,
            "made_up": {"nested": [{"deep": 1}]},
        },
    )
    assert via_json(d) == via_json(BASE)
    assert via_proto(d) == via_proto(BASE)
    assert rejection(via_json, d) is None


def test_null_fields_take_defaults() -> None:
    d = mutate(
        BASE,
        {
            "tmax": None,
            "cur": None,
            "site.publisher": None,
            "device.geo": None,
            "user.ext": None,
            "imp.0.bidfloor": None,
            "imp.0.video": None,
        },
    )
    req = via_json(d)
    assert req.tmax == 0 and req.cur == []
    assert req.site is not None and req.site.publisher is None
    assert req.device is not None and req.device.geo is None
    assert req.user is not None and req.user.history == []
    assert req.imp[0].bidfloor == 0.0 and req.imp[0].video is None
    assert rejection(via_json, d) is None


@pytest.mark.parametrize("floor", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_bidfloor_from_protobuf(floor: str) -> None:
    # JSON has no NaN or infinity (orjson refuses them); protobuf doubles do.
    d = mutate(BASE, {"imp.0.bidfloor": floor})
    assert rejection(via_proto, d) == "request.imp[0].bidfloor must be a finite number >= 0"


def test_at_zero_is_unset_in_protobuf_but_invalid_in_json() -> None:
    # proto3 cannot tell 0 from absent; JSON can, and 0 is not an auction type.
    d = mutate(BASE, {"at": 0})
    assert via_proto(d).at == 2
    assert rejection(via_json, d) == "request.at must be 1 (first price) or 2 (second price)"


def test_max_imps_is_configurable() -> None:
    d = mutate(BASE, {"imp": [{"id": str(n), "native": {}} for n in range(3)]})
    with pytest.raises(
        BadRequest, match=r"^request\.imp must not have more than 2 imps \(got 3\)$"
    ):
        validate(via_json(d), CURRENCIES, max_imps=2)
    validate(via_json(d), CURRENCIES, max_imps=3)


def test_bad_request_carries_path_and_rule() -> None:
    with pytest.raises(BadRequest) as info:
        validate(via_json(mutate(BASE, {"imp.0.banner.w": 0})), CURRENCIES)
    assert info.value.path == "request.imp[0].banner.w"
    assert info.value.rule == "must be positive"


# --- type errors and malformed bodies: only JSON can express them ---

JSON_ONLY: list[tuple[str, dict[str, Any], str]] = [
    ("request-id-number", {"id": 1}, "request.id must be a string"),
    ("imp-object", {"imp": {"id": "1"}}, "request.imp must be an array"),
    ("imp-entry-number", {"imp": [1]}, "request.imp[0] must be a JSON object"),
    ("imp-entry-null", {"imp": [None]}, "request.imp[0] must be a JSON object"),
    ("imp-id-number", {"imp.0.id": 1}, "request.imp[0].id must be a string"),
    ("bidfloor-string", {"imp.0.bidfloor": "0.5"}, "request.imp[0].bidfloor must be a number"),
    ("bidfloor-bool", {"imp.0.bidfloor": True}, "request.imp[0].bidfloor must be a number"),
    (
        "bidfloorcur-list",
        {"imp.0.bidfloorcur": ["USD"]},
        "request.imp[0].bidfloorcur must be a string",
    ),
    ("banner-list", {"imp.0.banner": []}, "request.imp[0].banner must be a JSON object"),
    ("banner-w-float", {"imp.0.banner.w": 300.0}, "request.imp[0].banner.w must be an integer"),
    ("banner-w-string", {"imp.0.banner.w": "300"}, "request.imp[0].banner.w must be an integer"),
    ("banner-w-bool", {"imp.0.banner.w": True}, "request.imp[0].banner.w must be an integer"),
    (
        "banner-w-int64",
        {"imp.0.banner.w": 2**31},
        "request.imp[0].banner.w must be a 32-bit integer",
    ),
    (
        "banner-format-object",
        {"imp.0.banner.format": {}},
        "request.imp[0].banner.format must be an array",
    ),
    (
        "banner-format-entry",
        {"imp.0.banner.format": [{"w": 300, "h": 250}, "300x250"]},
        "request.imp[0].banner.format[1] must be a JSON object",
    ),
    (
        "banner-format-h-string",
        {"imp.0.banner.format": [{"w": 300, "h": "250"}]},
        "request.imp[0].banner.format[0].h must be an integer",
    ),
    (
        "video-mimes-string",
        {"imp.0.video": {"mimes": "video/mp4"}},
        "request.imp[0].video.mimes must be an array",
    ),
    (
        "video-mimes-entry",
        {"imp.0.video": {"mimes": [4]}},
        "request.imp[0].video.mimes[0] must be a string",
    ),
    (
        "native-request-object",
        {"imp.0.native": {"request": {}}},
        "request.imp[0].native.request must be a string",
    ),
    ("site-list", {"site": []}, "request.site must be a JSON object"),
    ("site-cat-entry", {"site.cat": ["IAB1", 2]}, "request.site.cat[1] must be a string"),
    (
        "site-publisher-string",
        {"site.publisher": "pub"},
        "request.site.publisher must be a JSON object",
    ),
    ("site-publisher-id", {"site.publisher.id": 7}, "request.site.publisher.id must be a string"),
    ("app-bundle", {"site": DELETE, "app": {"bundle": 1}}, "request.app.bundle must be a string"),
    (
        "dooh-venuetype",
        {"site": DELETE, "dooh": {"venuetype": "x"}},
        "request.dooh.venuetype must be an array",
    ),
    ("device-string", {"device": "iPhone"}, "request.device must be a JSON object"),
    ("device-geo-number", {"device.geo": 1}, "request.device.geo must be a JSON object"),
    (
        "geo-country-number",
        {"device.geo.country": 840},
        "request.device.geo.country must be a string",
    ),
    (
        "devicetype-string",
        {"device.devicetype": "2"},
        "request.device.devicetype must be an integer",
    ),
    ("user-geo-region", {"user.geo": {"region": []}}, "request.user.geo.region must be a string"),
    ("user-ext-string", {"user.ext": "x"}, "request.user.ext must be a JSON object"),
    (
        "attention-list",
        {"user.ext.attention": []},
        "request.user.ext.attention must be a JSON object",
    ),
    (
        "history-string",
        {"user.ext.attention.history": "1,2"},
        "request.user.ext.attention.history must be an array",
    ),
    (
        "history-entry-string",
        {"user.ext.attention.history": [1, "2"]},
        "request.user.ext.attention.history[1] must be an integer",
    ),
    (
        "history-entry-float",
        {"user.ext.attention.history": [1.5]},
        "request.user.ext.attention.history[0] must be an integer",
    ),
    (
        "history-entry-int64",
        {"user.ext.attention.history": [1, -(2**31) - 1]},
        "request.user.ext.attention.history[1] must be a 32-bit integer",
    ),
    ("at-float", {"at": 1.0}, "request.at must be an integer"),
    ("tmax-float", {"tmax": 1.5}, "request.tmax must be an integer"),
    ("test-bool", {"test": False}, "request.test must be an integer"),
    ("cur-string", {"cur": "USD"}, "request.cur must be an array"),
    ("cur-entry-null", {"cur": [None]}, "request.cur[0] must be a string"),
    ("bcat-object", {"bcat": {}}, "request.bcat must be an array"),
    ("badv-entry", {"badv": [{}]}, "request.badv[0] must be a string"),
    ("bapp-number", {"bapp": 1}, "request.bapp must be an array"),
]


@pytest.mark.parametrize(
    ("changes", "message"), [r[1:] for r in JSON_ONLY], ids=[r[0] for r in JSON_ONLY]
)
def test_json_type_errors(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest) as info:
        via_json(mutate(BASE, changes))
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[]", "request must be a JSON object"),
        (b"null", "request must be a JSON object"),
        (b'"request"', "request must be a JSON object"),
        (b'{"id": "r", "tmax": 100000000000000000000000000000}', "request.tmax must be an integer"),
    ],
)
def test_json_body_shape(body: bytes, message: str) -> None:
    with pytest.raises(BadRequest) as info:
        decode_json(body)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b'{"id": "r",}', b"\xff", b'{"imp": [{"bidfloor": NaN}]}', b'{"tmax": 1e400}'],
)
def test_invalid_json(body: bytes) -> None:
    with pytest.raises(BadRequest) as info:
        decode_json(body)
    assert info.value.path == "request"
    assert info.value.rule.startswith("is not valid JSON: ")
    assert len(str(info.value)) < 200


# --- fuzz: any mangling ends in a decoded request or a BadRequest, never anything else ---

FUZZ_VALUES: list[Any] = [
    None, -1, 0, 1, 2, 8, 1.5, -0.5, 1e300, "x", "", "USD", [], {}, True, False,
    2**31, 2**63 - 1, -(2**63), ["x"], [1], [None], {"w": 1}, {"id": "1"},
]  # fmt: skip


def _nodes(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Every (dotted path, value) in a JSON document, for picking a spot to mangle."""
    items: Any
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return []
    out = []
    for key, child in items:
        path = f"{prefix}{key}"
        out.append((path, child))
        out.extend(_nodes(child, path + "."))
    return out


def _mangle(rng: random.Random, d: dict[str, Any]) -> dict[str, Any]:
    """Delete, replace or add (as an unknown field) 1 to 3 values anywhere in `d`."""
    for _ in range(rng.randint(1, 3)):
        nodes = _nodes(d)
        roll = rng.random()
        if roll < 0.1 or not nodes:
            objects = [path + "." for path, v in nodes if isinstance(v, dict)]
            d = mutate(d, {rng.choice(["", *objects]) + "extra": rng.choice(FUZZ_VALUES)})
        elif roll < 0.35:
            d = mutate(d, {rng.choice(nodes)[0]: DELETE})
        else:
            d = mutate(d, {rng.choice(nodes)[0]: rng.choice(FUZZ_VALUES)})
    return d


def test_fuzz_mutations_raise_only_bad_request() -> None:
    rng = random.Random(20240601)
    counts = {"type_error": 0, "valid": 0, "invalid": 0, "compared": 0}
    for _ in range(2000):
        d = _mangle(rng, BASE)
        body = orjson.dumps(d)
        if rng.random() < 0.05:
            body = body[: rng.randrange(len(body))]
        try:
            req = decode_json(body)
        except BadRequest:
            counts["type_error"] += 1
            continue
        json_answer = rejection(lambda r: r, req)
        counts["valid" if json_answer is None else "invalid"] += 1
        # Where protobuf can carry the same request, it must get the same answer
        # (except `at` 0, which proto3 cannot tell from absent).
        if d.get("at") == 0:
            continue
        try:
            msg = json_format.ParseDict(d, openrtb_pb2.BidRequest(), ignore_unknown_fields=True)
        except json_format.ParseError:
            continue
        assert rejection(decode_proto, msg) == json_answer, d
        counts["compared"] += 1
    assert min(counts.values()) > 50, counts

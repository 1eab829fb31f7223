"""OpenRTB 2.6 JSON (HTTP front end) -> the exchange's BidRequest objects.

This is the hot path, so each object has its own small hand-written decoder
(no reflection) and error paths are only formatted when something is wrong.
Only types are checked here; value rules live in ``exchange.validate`` so the
JSON and protobuf front ends answer a bad request with the same message.
Unknown fields are ignored; absent or null fields take the dataclass defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import orjson

from exchange.errors import BadRequest
from exchange.openrtb import (
    DEFAULT_AUCTION_TYPE,
    App,
    Banner,
    BidRequest,
    Device,
    Dooh,
    Format,
    Geo,
    Imp,
    Native,
    Publisher,
    Site,
    User,
    Video,
)

__all__ = ["decode_json"]

T = TypeVar("T")
JsonObject = dict[str, Any]

# The protobuf front end carries these fields as int32; JSON must not accept more.
_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1
_INT_ONLY = {int}


def decode_json(body: bytes) -> BidRequest:
    """Decode an OpenRTB 2.6 JSON bid request; BadRequest names the offending field."""
    try:
        d = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BadRequest("request", f"is not valid JSON: {e}") from None
    if type(d) is not dict:
        raise BadRequest("request", "must be a JSON object")
    p = "request"
    return BidRequest(
        id=_str(d, "id", p),
        imp=_objs(d, "imp", p, _imp),
        site=_sub(d, "site", p, _site),
        app=_sub(d, "app", p, _app),
        dooh=_sub(d, "dooh", p, _dooh),
        device=_sub(d, "device", p, _device),
        user=_sub(d, "user", p, _user),
        at=_int(d, "at", p, DEFAULT_AUCTION_TYPE),
        tmax=_int(d, "tmax", p),
        cur=_strs(d, "cur", p),
        bcat=_strs(d, "bcat", p),
        badv=_strs(d, "badv", p),
        bapp=_strs(d, "bapp", p),
        test=_int(d, "test", p),
    )


# --- scalar and container helpers: `p` is the JSON path of the object `o` ---


def _str(o: JsonObject, key: str, p: str) -> str:
    v = o.get(key)
    if type(v) is str:
        return v
    if v is None:
        return ""
    raise BadRequest(f"{p}.{key}", "must be a string")


def _int(o: JsonObject, key: str, p: str, default: int = 0) -> int:
    v = o.get(key)
    if type(v) is int:  # `type is` rejects bool, which is an int subclass
        if _INT32_MIN <= v <= _INT32_MAX:
            return v
        raise BadRequest(f"{p}.{key}", "must be a 32-bit integer")
    if v is None:
        return default
    raise BadRequest(f"{p}.{key}", "must be an integer")


def _num(o: JsonObject, key: str, p: str) -> float:
    v = o.get(key)
    t = type(v)
    if t is float:
        return v
    if t is int:  # orjson yields ints only up to 64 bits, so float() cannot overflow
        return float(v)
    if v is None:
        return 0.0
    raise BadRequest(f"{p}.{key}", "must be a number")


def _list(o: JsonObject, key: str, p: str) -> list[Any]:
    v = o.get(key)
    if type(v) is list:
        return v
    if v is None:
        return []
    raise BadRequest(f"{p}.{key}", "must be an array")


def _strs(o: JsonObject, key: str, p: str) -> list[str]:
    v = _list(o, key, p)
    for i, s in enumerate(v):
        if type(s) is not str:
            raise BadRequest(f"{p}.{key}[{i}]", "must be a string")
    return v  # orjson built it and nobody else holds it: no copy needed


def _ints(o: JsonObject, key: str, p: str) -> list[int]:
    v = _list(o, key, p)
    # Checked in C (histories run to ~50 ids); the loop only finds the culprit.
    if v and (set(map(type, v)) != _INT_ONLY or min(v) < _INT32_MIN or max(v) > _INT32_MAX):
        for i, n in enumerate(v):
            if type(n) is not int:
                raise BadRequest(f"{p}.{key}[{i}]", "must be an integer")
            if not _INT32_MIN <= n <= _INT32_MAX:
                raise BadRequest(f"{p}.{key}[{i}]", "must be a 32-bit integer")
    return v


def _obj(o: JsonObject, key: str, p: str) -> JsonObject | None:
    v = o.get(key)
    if v is None or type(v) is dict:
        return v
    raise BadRequest(f"{p}.{key}", "must be a JSON object")


def _sub(o: JsonObject, key: str, p: str, decode: Callable[[JsonObject, str], T]) -> T | None:
    v = _obj(o, key, p)
    return None if v is None else decode(v, f"{p}.{key}")


def _objs(o: JsonObject, key: str, p: str, decode: Callable[[JsonObject, str], T]) -> list[T]:
    out: list[T] = []
    for i, v in enumerate(_list(o, key, p)):
        if type(v) is not dict:
            raise BadRequest(f"{p}.{key}[{i}]", "must be a JSON object")
        out.append(decode(v, f"{p}.{key}[{i}]"))
    return out


# --- one decoder per OpenRTB object ---


def _imp(o: JsonObject, p: str) -> Imp:
    return Imp(
        id=_str(o, "id", p),
        banner=_sub(o, "banner", p, _banner),
        video=_sub(o, "video", p, _video),
        native=_sub(o, "native", p, _native),
        bidfloor=_num(o, "bidfloor", p),
        bidfloorcur=_str(o, "bidfloorcur", p),
        tagid=_str(o, "tagid", p),
        exp=_int(o, "exp", p),
        instl=_int(o, "instl", p),
    )


def _format(o: JsonObject, p: str) -> Format:
    return Format(w=_int(o, "w", p), h=_int(o, "h", p))


def _banner(o: JsonObject, p: str) -> Banner:
    return Banner(
        format=_objs(o, "format", p, _format),
        w=_int(o, "w", p),
        h=_int(o, "h", p),
        pos=_int(o, "pos", p),
    )


def _video(o: JsonObject, p: str) -> Video:
    return Video(
        mimes=_strs(o, "mimes", p),
        minduration=_int(o, "minduration", p),
        maxduration=_int(o, "maxduration", p),
        w=_int(o, "w", p),
        h=_int(o, "h", p),
        plcmt=_int(o, "plcmt", p),
        pos=_int(o, "pos", p),
    )


def _native(o: JsonObject, p: str) -> Native:
    return Native(request=_str(o, "request", p), ver=_str(o, "ver", p))


def _publisher(o: JsonObject, p: str) -> Publisher:
    return Publisher(id=_str(o, "id", p), name=_str(o, "name", p), domain=_str(o, "domain", p))


def _site(o: JsonObject, p: str) -> Site:
    return Site(
        id=_str(o, "id", p),
        domain=_str(o, "domain", p),
        cat=_strs(o, "cat", p),
        page=_str(o, "page", p),
        publisher=_sub(o, "publisher", p, _publisher),
    )


def _app(o: JsonObject, p: str) -> App:
    return App(
        id=_str(o, "id", p),
        bundle=_str(o, "bundle", p),
        domain=_str(o, "domain", p),
        cat=_strs(o, "cat", p),
        publisher=_sub(o, "publisher", p, _publisher),
    )


def _dooh(o: JsonObject, p: str) -> Dooh:
    return Dooh(
        id=_str(o, "id", p),
        venuetype=_strs(o, "venuetype", p),
        publisher=_sub(o, "publisher", p, _publisher),
    )


def _geo(o: JsonObject, p: str) -> Geo:
    return Geo(country=_str(o, "country", p), region=_str(o, "region", p))


def _device(o: JsonObject, p: str) -> Device:
    return Device(
        ua=_str(o, "ua", p),
        ip=_str(o, "ip", p),
        geo=_sub(o, "geo", p, _geo),
        devicetype=_int(o, "devicetype", p),
        os=_str(o, "os", p),
    )


def _user(o: JsonObject, p: str) -> User:
    history: list[int] = []
    ext = _obj(o, "ext", p)
    if ext is not None:
        attention = _obj(ext, "attention", f"{p}.ext")
        if attention is not None:
            history = _ints(attention, "history", f"{p}.ext.attention")
    return User(id=_str(o, "id", p), geo=_sub(o, "geo", p, _geo), history=history)

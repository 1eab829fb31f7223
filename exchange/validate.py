"""The one set of OpenRTB 2.6 request rules, shared by the gRPC and HTTP front ends.

Both decoders produce the same BidRequest objects, so checking here (and not in
each decoder) gives a caller the same message whichever protocol it speaks.
Paths use the OpenRTB JSON form (``request.imp[0].banner.w``). It runs on every
request: the happy path is plain comparisons, and messages are only built when
a rule is broken.
"""

from __future__ import annotations

import math
from collections.abc import Collection

import orjson

from exchange.currency import MAX_CPM
from exchange.errors import BadRequest
from exchange.openrtb import Banner, BidRequest, Imp, Video

__all__ = ["MAX_DEVICE_TYPE", "validate"]

MAX_DEVICE_TYPE = 7  # OpenRTB 2.6 device types are 1..7; 0 means not sent
_QUOTE_LIMIT = 40  # caller-supplied text echoed in a message (gRPC trailers are small)


def validate(req: BidRequest, currencies: Collection[str], max_imps: int = 64) -> None:
    """Raise BadRequest for the first broken rule; return None if the request is usable."""
    if not req.id:
        raise BadRequest("request.id", "is required")
    imps = req.imp
    if not imps:
        raise BadRequest("request.imp", "must contain at least one imp")
    if len(imps) > max_imps:
        raise BadRequest(
            "request.imp", f"must not have more than {max_imps} imps (got {len(imps)})"
        )
    if req.tmax < 0:
        raise BadRequest("request.tmax", "must not be negative")
    if req.at != 1 and req.at != 2:
        raise BadRequest("request.at", "must be 1 (first price) or 2 (second price)")
    if (req.site is None) + (req.app is None) + (req.dooh is None) != 2:
        raise _inventory_error(req)
    for i, cur in enumerate(req.cur):
        if cur not in currencies:
            raise _unsupported(f"request.cur[{i}]", cur, currencies)

    seen: set[str] = set()
    for i, imp in enumerate(imps):
        if not imp.id:
            raise BadRequest(f"request.imp[{i}].id", "is required")
        if imp.id in seen:
            raise BadRequest(f"request.imp[{i}].id", f"{_quote(imp.id)} is not unique")
        seen.add(imp.id)
        _check_imp(imp, i, currencies)

    device = req.device
    if device is not None and not 0 <= device.devicetype <= MAX_DEVICE_TYPE:
        raise BadRequest("request.device.devicetype", f"must be between 0 and {MAX_DEVICE_TYPE}")
    user = req.user
    if user is not None and user.history and min(user.history) < 0:
        j = next(j for j, item in enumerate(user.history) if item < 0)
        raise BadRequest(f"request.user.ext.attention.history[{j}]", "must not be negative")


def _inventory_error(req: BidRequest) -> BadRequest:
    """OpenRTB: the impression is on exactly one of a site, an app or a DOOH screen."""
    given = [
        name
        for name, obj in (("site", req.site), ("app", req.app), ("dooh", req.dooh))
        if obj is not None
    ]
    rule = "must have exactly one of site, app or dooh"
    if given:
        rule += f" (got {', '.join(given[:-1])} and {given[-1]})"
    return BadRequest("request", rule)


def _check_imp(imp: Imp, i: int, currencies: Collection[str]) -> None:
    if imp.banner is None and imp.video is None and imp.native is None:
        raise BadRequest(f"request.imp[{i}]", "must have a banner, video or native object")
    if imp.banner is not None:
        _check_banner(imp.banner, i)
    if imp.video is not None:
        _check_video(imp.video, i)
    if not 0.0 <= imp.bidfloor < math.inf:  # also false for NaN (protobuf can send it)
        raise BadRequest(f"request.imp[{i}].bidfloor", "must be a finite number >= 0")
    if imp.bidfloor > MAX_CPM:
        raise BadRequest(f"request.imp[{i}].bidfloor", f"must be at most {MAX_CPM:.0f}")
    if imp.bidfloorcur and imp.bidfloorcur not in currencies:
        raise _unsupported(f"request.imp[{i}].bidfloorcur", imp.bidfloorcur, currencies)


def _check_banner(b: Banner, i: int) -> None:
    """Sizes come from `format` if given, else from w and h; a size is never <= 0.

    With a format list, a lone w or h (0 for the other) is tolerated as unset,
    since protobuf cannot tell 0 from absent; a negative one never is.
    """
    if b.format:
        if b.w < 0:
            raise BadRequest(f"request.imp[{i}].banner.w", "must be positive")
        if b.h < 0:
            raise BadRequest(f"request.imp[{i}].banner.h", "must be positive")
        for k, f in enumerate(b.format):
            if f.w <= 0:
                raise BadRequest(f"request.imp[{i}].banner.format[{k}].w", "must be positive")
            if f.h <= 0:
                raise BadRequest(f"request.imp[{i}].banner.format[{k}].h", "must be positive")
        return
    if b.w == 0 and b.h == 0:
        raise BadRequest(f"request.imp[{i}].banner", "must have w and h or a non-empty format")
    if b.w <= 0:
        raise BadRequest(f"request.imp[{i}].banner.w", "must be positive")
    if b.h <= 0:
        raise BadRequest(f"request.imp[{i}].banner.h", "must be positive")


def _check_video(v: Video, i: int) -> None:
    if not v.mimes:
        raise BadRequest(f"request.imp[{i}].video.mimes", "must not be empty")
    if v.minduration < 0:
        raise BadRequest(f"request.imp[{i}].video.minduration", "must not be negative")
    if v.maxduration < 0:
        raise BadRequest(f"request.imp[{i}].video.maxduration", "must not be negative")
    # maxduration 0 means not sent (protobuf cannot tell it from absent).
    if v.maxduration and v.minduration and v.maxduration < v.minduration:
        raise BadRequest(f"request.imp[{i}].video.maxduration", "must not be less than minduration")


def _unsupported(path: str, cur: str, currencies: Collection[str]) -> BadRequest:
    supported = ", ".join(sorted(currencies))
    return BadRequest(path, f"{_quote(cur)} is not a supported currency (supported: {supported})")


def _quote(text: str) -> str:
    """JSON-quote caller text, cut short so an error message stays small."""
    if len(text) > _QUOTE_LIMIT:
        text = text[:_QUOTE_LIMIT] + "..."
    return orjson.dumps(text).decode()

"""Win, billing and loss notices from the HTTP notice URLs and the gRPC Notify call.

Both are checked the same way and become one `NoticeEvent`. An unsubstituted
OpenRTB macro (the caller sent `${AUCTION_PRICE}` as is) gets its own message,
because that is the usual integration mistake.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from exchange.currency import MAX_CPM, RateTable
from exchange.errors import BadRequest
from exchange.store import NoticeEvent
from protos.attnx.v1 import exchange_pb2

NOTICE_TYPES = ("win", "bill", "loss")
_PROTO_TYPES = {
    exchange_pb2.NOTICE_TYPE_WIN: "win",
    exchange_pb2.NOTICE_TYPE_BILL: "bill",
    exchange_pb2.NOTICE_TYPE_LOSS: "loss",
}
MAX_BID_ID = 64
MAX_LOSS_REASON = 2**31 - 1  # int32, as in the Notice message


def _check(
    kind: str, bid_id: str, price: float | None, cur: str, reason: int | None, rates: RateTable
) -> NoticeEvent:
    if not bid_id:
        raise BadRequest("notice.bid", "is required")
    if len(bid_id) > MAX_BID_ID or not bid_id.isalnum():
        raise BadRequest("notice.bid", f"must be at most {MAX_BID_ID} letters or digits")
    if kind in ("win", "bill"):
        if price is None:
            raise BadRequest("notice.price", f"is required for a {kind} notice")
        if not math.isfinite(price) or price < 0:
            raise BadRequest("notice.price", "must be a finite number >= 0")
        if price > MAX_CPM:
            raise BadRequest("notice.price", f"must be at most {MAX_CPM:.0f}")
    else:
        price = None
        if reason is not None and not 0 <= reason <= MAX_LOSS_REASON:
            raise BadRequest(
                "notice.reason", f"must be an OpenRTB loss reason code, 0 to {MAX_LOSS_REASON}"
            )
    if cur and cur not in rates:
        raise BadRequest("notice.cur", f'"{cur}" is not a supported currency')
    return NoticeEvent(bid_id, kind, price, cur, reason if kind == "loss" else None)


def _query_value(query: Mapping[str, str], key: str) -> str | None:
    value = query.get(key)
    if value is not None and "${" in value:
        raise BadRequest(
            f"notice.{key}", f"still holds the macro {value}: substitute it before calling"
        )
    return value


def notice_from_query(kind: str, query: Mapping[str, str], rates: RateTable) -> NoticeEvent:
    """A notice from `GET /notice/{kind}?bid=...&price=...&cur=...&reason=...`."""
    if kind not in NOTICE_TYPES:
        raise BadRequest("notice", f'type "{kind}" must be one of {", ".join(NOTICE_TYPES)}')
    price_text = _query_value(query, "price")
    reason_text = _query_value(query, "reason")
    try:
        price = float(price_text) if price_text is not None else None
    except ValueError:
        raise BadRequest("notice.price", "must be a number") from None
    try:
        reason = int(reason_text) if reason_text is not None else None
    except ValueError:
        raise BadRequest("notice.reason", "must be an integer") from None
    return _check(kind, query.get("bid", ""), price, query.get("cur", ""), reason, rates)


def notice_from_proto(msg: exchange_pb2.Notice, rates: RateTable) -> NoticeEvent:
    kind = _PROTO_TYPES.get(msg.type)
    if kind is None:
        raise BadRequest(
            "notice.type", "must be NOTICE_TYPE_WIN, NOTICE_TYPE_BILL or NOTICE_TYPE_LOSS"
        )
    price = msg.price if kind in ("win", "bill") else None
    return _check(kind, msg.bid_id, price, msg.cur, msg.loss_reason, rates)

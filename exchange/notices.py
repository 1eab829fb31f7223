"""Win, billing, loss and attention notices from the HTTP notice URLs and gRPC Notify.

Both are checked the same way and become one `settlement.Notice`: fields first
(a BadRequest naming the field), then the signature (Forbidden: the URL was
altered or not issued here). An unsubstituted OpenRTB macro (the caller sent
`${AUCTION_PRICE}` as is) gets its own message: the usual integration mistake.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from exchange.currency import MAX_CPM, RateTable
from exchange.errors import BadRequest, Forbidden
from exchange.settlement import Notice
from exchange.signing import NoticeSigner
from protos.attnx.v1 import exchange_pb2

NOTICE_TYPES = ("win", "bill", "loss", "attention")
_PROTO_TYPES = {
    exchange_pb2.NOTICE_TYPE_WIN: "win",
    exchange_pb2.NOTICE_TYPE_BILL: "bill",
    exchange_pb2.NOTICE_TYPE_LOSS: "loss",
    exchange_pb2.NOTICE_TYPE_ATTENTION: "attention",
}
MAX_BID_ID = 64
MAX_LOSS_REASON = 2**31 - 1  # int32, as in the Notice message
MAX_SECONDS = 86_400.0  # a measurement longer than a day is not a measurement


def _check(
    kind: str,
    bid_id: str,
    sig: str,
    price: float | None,
    cur: str,
    reason: int | None,
    seconds: float | None,
    rates: RateTable,
    signer: NoticeSigner,
) -> Notice:
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
    if kind == "loss" and reason is not None and not 0 <= reason <= MAX_LOSS_REASON:
        raise BadRequest(
            "notice.reason", f"must be an OpenRTB loss reason code, 0 to {MAX_LOSS_REASON}"
        )
    if kind == "attention":
        if seconds is None:
            raise BadRequest("notice.seconds", "is required for an attention notice")
        if not math.isfinite(seconds) or not 0 <= seconds <= MAX_SECONDS:
            raise BadRequest("notice.seconds", f"must be a number from 0 to {MAX_SECONDS:.0f}")
    if cur and cur not in rates:
        raise BadRequest("notice.cur", f'"{cur}" is not a supported currency')
    if not sig:
        raise BadRequest("notice.sig", "is required: use the notice URL exactly as the bid gave it")
    if not signer.verify(bid_id, sig):
        raise Forbidden(
            f"notice.sig does not match bid {bid_id}: the URL was altered or not issued here"
        )
    return Notice(
        kind,
        bid_id,
        price=price,
        cur=cur,
        loss_reason=reason if kind == "loss" else None,
        seconds=seconds if kind == "attention" else None,
    )


def _query_value(query: Mapping[str, str], key: str) -> str | None:
    value = query.get(key)
    if value is not None and "${" in value:
        raise BadRequest(
            f"notice.{key}", f"still holds the macro {value}: substitute it before calling"
        )
    return value


def _number(query: Mapping[str, str], key: str, kind: type) -> float | int | None:
    text = _query_value(query, key)
    try:
        return kind(text) if text is not None else None
    except ValueError:
        what = "a number" if kind is float else "an integer"
        raise BadRequest(f"notice.{key}", f"must be {what}") from None


def notice_from_query(
    kind: str, query: Mapping[str, str], rates: RateTable, signer: NoticeSigner
) -> Notice:
    """A notice from `GET /notice/{kind}?bid=..&sig=..&price=..&cur=..&reason=..&seconds=..`."""
    if kind not in NOTICE_TYPES:
        raise BadRequest("notice", f'type "{kind}" must be one of {", ".join(NOTICE_TYPES)}')
    return _check(
        kind,
        query.get("bid", ""),
        query.get("sig", ""),
        _number(query, "price", float),
        query.get("cur", ""),
        _number(query, "reason", int),
        _number(query, "seconds", float),
        rates,
        signer,
    )


def notice_from_proto(msg: exchange_pb2.Notice, rates: RateTable, signer: NoticeSigner) -> Notice:
    kind = _PROTO_TYPES.get(msg.type)
    if kind is None:
        raise BadRequest(
            "notice.type",
            "must be NOTICE_TYPE_WIN, NOTICE_TYPE_BILL, NOTICE_TYPE_LOSS or NOTICE_TYPE_ATTENTION",
        )
    price = msg.price if kind in ("win", "bill") else None
    seconds = msg.attentive_seconds if kind == "attention" else None
    return _check(
        kind, msg.bid_id, msg.sig, price, msg.cur, msg.loss_reason, seconds, rates, signer
    )

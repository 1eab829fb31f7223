"""Auction results to the wire: protobuf for gRPC, OpenRTB JSON (orjson) for HTTP."""

from __future__ import annotations

import orjson

from exchange.openrtb import AuctionResult, WonBid
from protos.attnx.v1 import openrtb_pb2


def _by_seat(bids: list[WonBid]) -> dict[str, list[WonBid]]:
    seats: dict[str, list[WonBid]] = {}
    for bid in bids:
        seats.setdefault(bid.seat, []).append(bid)
    return seats


def to_proto(result: AuctionResult) -> openrtb_pb2.BidResponse:
    response = openrtb_pb2.BidResponse(id=result.id, cur=result.cur, nbr=result.nbr)
    for seat, bids in _by_seat(result.bids).items():
        seatbid = response.seatbid.add(seat=seat)
        for b in bids:
            bid = seatbid.bid.add(
                id=b.id,
                impid=b.impid,
                price=b.price,
                adm=b.adm,
                nurl=b.nurl,
                burl=b.burl,
                lurl=b.lurl,
                adomain=b.adomain,
                bundle=b.bundle,
                cid=b.campaign_id,
                crid=b.crid,
                cat=b.cat,
                w=b.w,
                h=b.h,
                exp=b.exp,
            )
            attention = bid.ext.attention
            attention.seconds = b.seconds
            attention.p_view = b.p_view
            attention.p_click = b.p_click
            attention.acpm = b.acpm
            attention.campaign_id = b.campaign_id
            attention.sig = b.sig
            attention.beacon = b.beacon
    return response


def _bid_json(b: WonBid) -> dict:
    bid = {
        "id": b.id,
        "impid": b.impid,
        "price": b.price,
        "adm": b.adm,
        "nurl": b.nurl,
        "burl": b.burl,
        "lurl": b.lurl,
        "adomain": b.adomain,
        "cid": b.campaign_id,
        "crid": b.crid,
        "cat": b.cat,
        "ext": {
            "attention": {
                "seconds": round(b.seconds, 4),
                "p_view": round(b.p_view, 4),
                "p_click": round(b.p_click, 6),
                "acpm": b.acpm,
                "campaign_id": b.campaign_id,
                "sig": b.sig,
                "beacon": b.beacon,
            }
        },
    }
    if b.bundle:
        bid["bundle"] = b.bundle
    if b.w or b.h:
        bid["w"], bid["h"] = b.w, b.h
    if b.exp:
        bid["exp"] = b.exp
    return bid


def to_json(result: AuctionResult) -> bytes:
    """A bid response; callers send no body at all (HTTP 204) when there are no bids."""
    seatbid = [
        {"seat": seat, "bid": [_bid_json(b) for b in bids]}
        for seat, bids in _by_seat(result.bids).items()
    ]
    return orjson.dumps({"id": result.id, "seatbid": seatbid, "cur": result.cur})

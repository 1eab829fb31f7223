"""attnx.v1 protobuf (gRPC front end) -> the exchange's BidRequest objects.

Protobuf already guarantees the types, so this only copies fields and turns
unset submessages into None (HasField), matching what ``decode_json`` builds
for the same request; ``exchange.validate`` then checks both the same way.
Repeated scalars are copied by slicing (a list, at half the cost of list()).
"""

from __future__ import annotations

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
from protos.attnx.v1 import openrtb_pb2 as pb

__all__ = ["decode_proto"]


def decode_proto(msg: pb.BidRequest) -> BidRequest:
    """Copy a wire BidRequest into the exchange's model; `at` 0 means not sent."""
    return BidRequest(
        id=msg.id,
        imp=[_imp(i) for i in msg.imp],
        site=_site(msg.site) if msg.HasField("site") else None,
        app=_app(msg.app) if msg.HasField("app") else None,
        dooh=_dooh(msg.dooh) if msg.HasField("dooh") else None,
        device=_device(msg.device) if msg.HasField("device") else None,
        user=_user(msg.user) if msg.HasField("user") else None,
        at=msg.at or DEFAULT_AUCTION_TYPE,
        tmax=msg.tmax,
        cur=msg.cur[:],
        bcat=msg.bcat[:],
        badv=msg.badv[:],
        bapp=msg.bapp[:],
        test=msg.test,
    )


def _imp(m: pb.Imp) -> Imp:
    return Imp(
        id=m.id,
        banner=_banner(m.banner) if m.HasField("banner") else None,
        video=_video(m.video) if m.HasField("video") else None,
        native=Native(request=m.native.request, ver=m.native.ver) if m.HasField("native") else None,
        bidfloor=m.bidfloor,
        bidfloorcur=m.bidfloorcur,
        tagid=m.tagid,
        exp=m.exp,
        instl=m.instl,
    )


def _banner(m: pb.Banner) -> Banner:
    formats = [Format(w=f.w, h=f.h) for f in m.format] if m.format else []
    return Banner(format=formats, w=m.w, h=m.h, pos=m.pos)


def _video(m: pb.Video) -> Video:
    return Video(
        mimes=m.mimes[:],
        minduration=m.minduration,
        maxduration=m.maxduration,
        w=m.w,
        h=m.h,
        plcmt=m.plcmt,
        pos=m.pos,
    )


def _publisher(owner: pb.Site | pb.App | pb.Dooh) -> Publisher | None:
    if not owner.HasField("publisher"):
        return None
    m = owner.publisher
    return Publisher(id=m.id, name=m.name, domain=m.domain)


def _site(m: pb.Site) -> Site:
    return Site(id=m.id, domain=m.domain, cat=m.cat[:], page=m.page, publisher=_publisher(m))


def _app(m: pb.App) -> App:
    return App(id=m.id, bundle=m.bundle, domain=m.domain, cat=m.cat[:], publisher=_publisher(m))


def _dooh(m: pb.Dooh) -> Dooh:
    return Dooh(id=m.id, venuetype=m.venuetype[:], publisher=_publisher(m))


def _geo(owner: pb.Device | pb.User) -> Geo | None:
    if not owner.HasField("geo"):
        return None
    geo = owner.geo
    return Geo(country=geo.country, region=geo.region)


def _device(m: pb.Device) -> Device:
    return Device(ua=m.ua, ip=m.ip, geo=_geo(m), devicetype=m.devicetype, os=m.os)


def _user(m: pb.User) -> User:
    # Unset submessages read as empty, so this is [] when ext or attention is absent.
    return User(id=m.id, geo=_geo(m), history=m.ext.attention.history[:])

from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BidRequest(_message.Message):
    __slots__ = ("id", "imp", "site", "app", "dooh", "device", "user", "at", "tmax", "cur", "bcat", "badv", "bapp", "regs", "source", "test")
    ID_FIELD_NUMBER: _ClassVar[int]
    IMP_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    DOOH_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    TMAX_FIELD_NUMBER: _ClassVar[int]
    CUR_FIELD_NUMBER: _ClassVar[int]
    BCAT_FIELD_NUMBER: _ClassVar[int]
    BADV_FIELD_NUMBER: _ClassVar[int]
    BAPP_FIELD_NUMBER: _ClassVar[int]
    REGS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TEST_FIELD_NUMBER: _ClassVar[int]
    id: str
    imp: _containers.RepeatedCompositeFieldContainer[Imp]
    site: Site
    app: App
    dooh: Dooh
    device: Device
    user: User
    at: int
    tmax: int
    cur: _containers.RepeatedScalarFieldContainer[str]
    bcat: _containers.RepeatedScalarFieldContainer[str]
    badv: _containers.RepeatedScalarFieldContainer[str]
    bapp: _containers.RepeatedScalarFieldContainer[str]
    regs: Regs
    source: Source
    test: int
    def __init__(self, id: _Optional[str] = ..., imp: _Optional[_Iterable[_Union[Imp, _Mapping]]] = ..., site: _Optional[_Union[Site, _Mapping]] = ..., app: _Optional[_Union[App, _Mapping]] = ..., dooh: _Optional[_Union[Dooh, _Mapping]] = ..., device: _Optional[_Union[Device, _Mapping]] = ..., user: _Optional[_Union[User, _Mapping]] = ..., at: _Optional[int] = ..., tmax: _Optional[int] = ..., cur: _Optional[_Iterable[str]] = ..., bcat: _Optional[_Iterable[str]] = ..., badv: _Optional[_Iterable[str]] = ..., bapp: _Optional[_Iterable[str]] = ..., regs: _Optional[_Union[Regs, _Mapping]] = ..., source: _Optional[_Union[Source, _Mapping]] = ..., test: _Optional[int] = ...) -> None: ...

class Imp(_message.Message):
    __slots__ = ("id", "banner", "video", "native", "bidfloor", "bidfloorcur", "tagid", "exp", "instl", "secure")
    ID_FIELD_NUMBER: _ClassVar[int]
    BANNER_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    NATIVE_FIELD_NUMBER: _ClassVar[int]
    BIDFLOOR_FIELD_NUMBER: _ClassVar[int]
    BIDFLOORCUR_FIELD_NUMBER: _ClassVar[int]
    TAGID_FIELD_NUMBER: _ClassVar[int]
    EXP_FIELD_NUMBER: _ClassVar[int]
    INSTL_FIELD_NUMBER: _ClassVar[int]
    SECURE_FIELD_NUMBER: _ClassVar[int]
    id: str
    banner: Banner
    video: Video
    native: Native
    bidfloor: float
    bidfloorcur: str
    tagid: str
    exp: int
    instl: int
    secure: int
    def __init__(self, id: _Optional[str] = ..., banner: _Optional[_Union[Banner, _Mapping]] = ..., video: _Optional[_Union[Video, _Mapping]] = ..., native: _Optional[_Union[Native, _Mapping]] = ..., bidfloor: _Optional[float] = ..., bidfloorcur: _Optional[str] = ..., tagid: _Optional[str] = ..., exp: _Optional[int] = ..., instl: _Optional[int] = ..., secure: _Optional[int] = ...) -> None: ...

class Format(_message.Message):
    __slots__ = ("w", "h")
    W_FIELD_NUMBER: _ClassVar[int]
    H_FIELD_NUMBER: _ClassVar[int]
    w: int
    h: int
    def __init__(self, w: _Optional[int] = ..., h: _Optional[int] = ...) -> None: ...

class Banner(_message.Message):
    __slots__ = ("format", "w", "h", "pos")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    W_FIELD_NUMBER: _ClassVar[int]
    H_FIELD_NUMBER: _ClassVar[int]
    POS_FIELD_NUMBER: _ClassVar[int]
    format: _containers.RepeatedCompositeFieldContainer[Format]
    w: int
    h: int
    pos: int
    def __init__(self, format: _Optional[_Iterable[_Union[Format, _Mapping]]] = ..., w: _Optional[int] = ..., h: _Optional[int] = ..., pos: _Optional[int] = ...) -> None: ...

class Video(_message.Message):
    __slots__ = ("mimes", "minduration", "maxduration", "w", "h", "plcmt", "pos")
    MIMES_FIELD_NUMBER: _ClassVar[int]
    MINDURATION_FIELD_NUMBER: _ClassVar[int]
    MAXDURATION_FIELD_NUMBER: _ClassVar[int]
    W_FIELD_NUMBER: _ClassVar[int]
    H_FIELD_NUMBER: _ClassVar[int]
    PLCMT_FIELD_NUMBER: _ClassVar[int]
    POS_FIELD_NUMBER: _ClassVar[int]
    mimes: _containers.RepeatedScalarFieldContainer[str]
    minduration: int
    maxduration: int
    w: int
    h: int
    plcmt: int
    pos: int
    def __init__(self, mimes: _Optional[_Iterable[str]] = ..., minduration: _Optional[int] = ..., maxduration: _Optional[int] = ..., w: _Optional[int] = ..., h: _Optional[int] = ..., plcmt: _Optional[int] = ..., pos: _Optional[int] = ...) -> None: ...

class Native(_message.Message):
    __slots__ = ("request", "ver")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    VER_FIELD_NUMBER: _ClassVar[int]
    request: str
    ver: str
    def __init__(self, request: _Optional[str] = ..., ver: _Optional[str] = ...) -> None: ...

class Publisher(_message.Message):
    __slots__ = ("id", "name", "domain", "cat")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    CAT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    domain: str
    cat: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., domain: _Optional[str] = ..., cat: _Optional[_Iterable[str]] = ...) -> None: ...

class Site(_message.Message):
    __slots__ = ("id", "name", "domain", "cat", "page", "ref", "publisher")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    CAT_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    PUBLISHER_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    domain: str
    cat: _containers.RepeatedScalarFieldContainer[str]
    page: str
    ref: str
    publisher: Publisher
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., domain: _Optional[str] = ..., cat: _Optional[_Iterable[str]] = ..., page: _Optional[str] = ..., ref: _Optional[str] = ..., publisher: _Optional[_Union[Publisher, _Mapping]] = ...) -> None: ...

class App(_message.Message):
    __slots__ = ("id", "name", "bundle", "domain", "storeurl", "cat", "publisher")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    STOREURL_FIELD_NUMBER: _ClassVar[int]
    CAT_FIELD_NUMBER: _ClassVar[int]
    PUBLISHER_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    bundle: str
    domain: str
    storeurl: str
    cat: _containers.RepeatedScalarFieldContainer[str]
    publisher: Publisher
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., bundle: _Optional[str] = ..., domain: _Optional[str] = ..., storeurl: _Optional[str] = ..., cat: _Optional[_Iterable[str]] = ..., publisher: _Optional[_Union[Publisher, _Mapping]] = ...) -> None: ...

class Dooh(_message.Message):
    __slots__ = ("id", "name", "venuetype", "publisher")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VENUETYPE_FIELD_NUMBER: _ClassVar[int]
    PUBLISHER_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    venuetype: _containers.RepeatedScalarFieldContainer[str]
    publisher: Publisher
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., venuetype: _Optional[_Iterable[str]] = ..., publisher: _Optional[_Union[Publisher, _Mapping]] = ...) -> None: ...

class Geo(_message.Message):
    __slots__ = ("country", "region", "city", "lat", "lon", "type")
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    CITY_FIELD_NUMBER: _ClassVar[int]
    LAT_FIELD_NUMBER: _ClassVar[int]
    LON_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    country: str
    region: str
    city: str
    lat: float
    lon: float
    type: int
    def __init__(self, country: _Optional[str] = ..., region: _Optional[str] = ..., city: _Optional[str] = ..., lat: _Optional[float] = ..., lon: _Optional[float] = ..., type: _Optional[int] = ...) -> None: ...

class Device(_message.Message):
    __slots__ = ("ua", "ip", "geo", "devicetype", "os", "osv", "language")
    UA_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    GEO_FIELD_NUMBER: _ClassVar[int]
    DEVICETYPE_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    OSV_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    ua: str
    ip: str
    geo: Geo
    devicetype: int
    os: str
    osv: str
    language: str
    def __init__(self, ua: _Optional[str] = ..., ip: _Optional[str] = ..., geo: _Optional[_Union[Geo, _Mapping]] = ..., devicetype: _Optional[int] = ..., os: _Optional[str] = ..., osv: _Optional[str] = ..., language: _Optional[str] = ...) -> None: ...

class AttentionUser(_message.Message):
    __slots__ = ("history",)
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    history: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, history: _Optional[_Iterable[int]] = ...) -> None: ...

class UserExt(_message.Message):
    __slots__ = ("attention",)
    ATTENTION_FIELD_NUMBER: _ClassVar[int]
    attention: AttentionUser
    def __init__(self, attention: _Optional[_Union[AttentionUser, _Mapping]] = ...) -> None: ...

class User(_message.Message):
    __slots__ = ("id", "buyeruid", "yob", "gender", "geo", "ext")
    ID_FIELD_NUMBER: _ClassVar[int]
    BUYERUID_FIELD_NUMBER: _ClassVar[int]
    YOB_FIELD_NUMBER: _ClassVar[int]
    GENDER_FIELD_NUMBER: _ClassVar[int]
    GEO_FIELD_NUMBER: _ClassVar[int]
    EXT_FIELD_NUMBER: _ClassVar[int]
    id: str
    buyeruid: str
    yob: int
    gender: str
    geo: Geo
    ext: UserExt
    def __init__(self, id: _Optional[str] = ..., buyeruid: _Optional[str] = ..., yob: _Optional[int] = ..., gender: _Optional[str] = ..., geo: _Optional[_Union[Geo, _Mapping]] = ..., ext: _Optional[_Union[UserExt, _Mapping]] = ...) -> None: ...

class Regs(_message.Message):
    __slots__ = ("coppa", "gdpr", "us_privacy", "gpp")
    COPPA_FIELD_NUMBER: _ClassVar[int]
    GDPR_FIELD_NUMBER: _ClassVar[int]
    US_PRIVACY_FIELD_NUMBER: _ClassVar[int]
    GPP_FIELD_NUMBER: _ClassVar[int]
    coppa: int
    gdpr: int
    us_privacy: str
    gpp: str
    def __init__(self, coppa: _Optional[int] = ..., gdpr: _Optional[int] = ..., us_privacy: _Optional[str] = ..., gpp: _Optional[str] = ...) -> None: ...

class Source(_message.Message):
    __slots__ = ("tid", "fd")
    TID_FIELD_NUMBER: _ClassVar[int]
    FD_FIELD_NUMBER: _ClassVar[int]
    tid: str
    fd: int
    def __init__(self, tid: _Optional[str] = ..., fd: _Optional[int] = ...) -> None: ...

class BidResponse(_message.Message):
    __slots__ = ("id", "seatbid", "bidid", "cur", "nbr")
    ID_FIELD_NUMBER: _ClassVar[int]
    SEATBID_FIELD_NUMBER: _ClassVar[int]
    BIDID_FIELD_NUMBER: _ClassVar[int]
    CUR_FIELD_NUMBER: _ClassVar[int]
    NBR_FIELD_NUMBER: _ClassVar[int]
    id: str
    seatbid: _containers.RepeatedCompositeFieldContainer[SeatBid]
    bidid: str
    cur: str
    nbr: int
    def __init__(self, id: _Optional[str] = ..., seatbid: _Optional[_Iterable[_Union[SeatBid, _Mapping]]] = ..., bidid: _Optional[str] = ..., cur: _Optional[str] = ..., nbr: _Optional[int] = ...) -> None: ...

class SeatBid(_message.Message):
    __slots__ = ("seat", "bid")
    SEAT_FIELD_NUMBER: _ClassVar[int]
    BID_FIELD_NUMBER: _ClassVar[int]
    seat: str
    bid: _containers.RepeatedCompositeFieldContainer[Bid]
    def __init__(self, seat: _Optional[str] = ..., bid: _Optional[_Iterable[_Union[Bid, _Mapping]]] = ...) -> None: ...

class AttentionBid(_message.Message):
    __slots__ = ("seconds", "p_view", "p_click", "acpm", "campaign_id", "sig", "beacon")
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    P_VIEW_FIELD_NUMBER: _ClassVar[int]
    P_CLICK_FIELD_NUMBER: _ClassVar[int]
    ACPM_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    SIG_FIELD_NUMBER: _ClassVar[int]
    BEACON_FIELD_NUMBER: _ClassVar[int]
    seconds: float
    p_view: float
    p_click: float
    acpm: float
    campaign_id: str
    sig: str
    beacon: str
    def __init__(self, seconds: _Optional[float] = ..., p_view: _Optional[float] = ..., p_click: _Optional[float] = ..., acpm: _Optional[float] = ..., campaign_id: _Optional[str] = ..., sig: _Optional[str] = ..., beacon: _Optional[str] = ...) -> None: ...

class BidExt(_message.Message):
    __slots__ = ("attention",)
    ATTENTION_FIELD_NUMBER: _ClassVar[int]
    attention: AttentionBid
    def __init__(self, attention: _Optional[_Union[AttentionBid, _Mapping]] = ...) -> None: ...

class Bid(_message.Message):
    __slots__ = ("id", "impid", "price", "adm", "nurl", "burl", "lurl", "adomain", "bundle", "cid", "crid", "cat", "w", "h", "exp", "ext")
    ID_FIELD_NUMBER: _ClassVar[int]
    IMPID_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    ADM_FIELD_NUMBER: _ClassVar[int]
    NURL_FIELD_NUMBER: _ClassVar[int]
    BURL_FIELD_NUMBER: _ClassVar[int]
    LURL_FIELD_NUMBER: _ClassVar[int]
    ADOMAIN_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    CID_FIELD_NUMBER: _ClassVar[int]
    CRID_FIELD_NUMBER: _ClassVar[int]
    CAT_FIELD_NUMBER: _ClassVar[int]
    W_FIELD_NUMBER: _ClassVar[int]
    H_FIELD_NUMBER: _ClassVar[int]
    EXP_FIELD_NUMBER: _ClassVar[int]
    EXT_FIELD_NUMBER: _ClassVar[int]
    id: str
    impid: str
    price: float
    adm: str
    nurl: str
    burl: str
    lurl: str
    adomain: _containers.RepeatedScalarFieldContainer[str]
    bundle: str
    cid: str
    crid: str
    cat: _containers.RepeatedScalarFieldContainer[str]
    w: int
    h: int
    exp: int
    ext: BidExt
    def __init__(self, id: _Optional[str] = ..., impid: _Optional[str] = ..., price: _Optional[float] = ..., adm: _Optional[str] = ..., nurl: _Optional[str] = ..., burl: _Optional[str] = ..., lurl: _Optional[str] = ..., adomain: _Optional[_Iterable[str]] = ..., bundle: _Optional[str] = ..., cid: _Optional[str] = ..., crid: _Optional[str] = ..., cat: _Optional[_Iterable[str]] = ..., w: _Optional[int] = ..., h: _Optional[int] = ..., exp: _Optional[int] = ..., ext: _Optional[_Union[BidExt, _Mapping]] = ...) -> None: ...

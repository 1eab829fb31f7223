"""The exchange's own view of an OpenRTB 2.6 bid request and its result.

Both front ends (gRPC protobuf and HTTP JSON) decode into these plain objects,
one validator checks them, and the auction reads nothing else. Only the fields
the exchange uses are kept; unknown fields are dropped at decode time.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from exchange.users import Impression

DEFAULT_AUCTION_TYPE = 2  # OpenRTB: second price unless `at` says otherwise


@dataclass(slots=True)
class Format:
    w: int = 0
    h: int = 0


@dataclass(slots=True)
class Banner:
    format: list[Format] = field(default_factory=list)
    w: int = 0
    h: int = 0
    pos: int = 0


@dataclass(slots=True)
class Video:
    mimes: list[str] = field(default_factory=list)
    minduration: int = 0
    maxduration: int = 0
    w: int = 0
    h: int = 0
    plcmt: int = 0
    pos: int = 0


@dataclass(slots=True)
class Native:
    request: str = ""
    ver: str = ""


@dataclass(slots=True)
class Imp:
    id: str = ""
    banner: Banner | None = None
    video: Video | None = None
    native: Native | None = None
    bidfloor: float = 0.0
    bidfloorcur: str = ""
    tagid: str = ""
    exp: int = 0
    instl: int = 0


@dataclass(slots=True)
class Publisher:
    id: str = ""
    name: str = ""
    domain: str = ""


@dataclass(slots=True)
class Site:
    id: str = ""
    domain: str = ""
    cat: list[str] = field(default_factory=list)
    page: str = ""
    publisher: Publisher | None = None


@dataclass(slots=True)
class App:
    id: str = ""
    bundle: str = ""
    domain: str = ""
    cat: list[str] = field(default_factory=list)
    publisher: Publisher | None = None


@dataclass(slots=True)
class Dooh:
    id: str = ""
    venuetype: list[str] = field(default_factory=list)
    publisher: Publisher | None = None


@dataclass(slots=True)
class Geo:
    country: str = ""
    region: str = ""


@dataclass(slots=True)
class Device:
    ua: str = ""
    ip: str = ""
    geo: Geo | None = None
    devicetype: int = 0
    os: str = ""


@dataclass(slots=True)
class User:
    id: str = ""
    geo: Geo | None = None
    # Attention extension: recently engaged item ids, newest first.
    history: list[int] = field(default_factory=list)


@dataclass(slots=True)
class BidRequest:
    id: str = ""
    imp: list[Imp] = field(default_factory=list)
    site: Site | None = None
    app: App | None = None
    dooh: Dooh | None = None
    device: Device | None = None
    user: User | None = None
    at: int = DEFAULT_AUCTION_TYPE
    tmax: int = 0
    cur: list[str] = field(default_factory=list)
    bcat: list[str] = field(default_factory=list)
    badv: list[str] = field(default_factory=list)
    bapp: list[str] = field(default_factory=list)
    test: int = 0

    def content_categories(self) -> list[str]:
        """Categories of the site or app the impression is on (for targeting)."""
        source = self.site or self.app
        return source.cat if source is not None else []

    def country(self) -> str:
        geo = (self.device.geo if self.device else None) or (self.user.geo if self.user else None)
        return geo.country if geo is not None else ""


@dataclass(slots=True)
class WonBid:
    """One imp's winner, priced, in the units the encoders need."""

    id: str  # deterministic trade id
    impid: str
    price: float  # clearing CPM in the response currency
    price_cpm_micros: int  # clearing CPM in USD micros (what the ledger will use)
    seat: str
    campaign_id: str
    crid: str
    adm: str
    adomain: list[str]
    bundle: str
    cat: list[str]
    w: int
    h: int
    exp: int
    nurl: str
    burl: str
    lurl: str
    beacon: str  # the attention beacon URL
    sig: str  # the notice signature in every notice URL
    seconds: float
    p_view: float
    p_click: float
    acpm: float  # in the response currency


@dataclass(slots=True)
class AuctionResult:
    id: str
    cur: str
    bids: list[WonBid]
    nbr: int = 0  # no-bid reason, set when `bids` is empty
    durable: Awaitable | None = None  # done once the trades are journaled: then answer
    shown: list[Impression] = field(default_factory=list)  # for the user store, once durable

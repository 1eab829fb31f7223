from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreativeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CREATIVE_KIND_UNSPECIFIED: _ClassVar[CreativeKind]
    CREATIVE_KIND_BANNER: _ClassVar[CreativeKind]
    CREATIVE_KIND_VIDEO: _ClassVar[CreativeKind]
    CREATIVE_KIND_NATIVE: _ClassVar[CreativeKind]
CREATIVE_KIND_UNSPECIFIED: CreativeKind
CREATIVE_KIND_BANNER: CreativeKind
CREATIVE_KIND_VIDEO: CreativeKind
CREATIVE_KIND_NATIVE: CreativeKind

class Creative(_message.Message):
    __slots__ = ("id", "kind", "w", "h", "mime", "duration", "adm", "cat")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    W_FIELD_NUMBER: _ClassVar[int]
    H_FIELD_NUMBER: _ClassVar[int]
    MIME_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    ADM_FIELD_NUMBER: _ClassVar[int]
    CAT_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: CreativeKind
    w: int
    h: int
    mime: str
    duration: int
    adm: str
    cat: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[_Union[CreativeKind, str]] = ..., w: _Optional[int] = ..., h: _Optional[int] = ..., mime: _Optional[str] = ..., duration: _Optional[int] = ..., adm: _Optional[str] = ..., cat: _Optional[_Iterable[str]] = ...) -> None: ...

class Targeting(_message.Message):
    __slots__ = ("cat", "country", "devicetype")
    CAT_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    DEVICETYPE_FIELD_NUMBER: _ClassVar[int]
    cat: _containers.RepeatedScalarFieldContainer[str]
    country: _containers.RepeatedScalarFieldContainer[str]
    devicetype: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, cat: _Optional[_Iterable[str]] = ..., country: _Optional[_Iterable[str]] = ..., devicetype: _Optional[_Iterable[int]] = ...) -> None: ...

class Campaign(_message.Message):
    __slots__ = ("id", "advertiser", "adomain", "seat", "bundle", "creatives", "acpm_micros", "daily_budget_micros", "targeting", "paused", "frequency_cap")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADVERTISER_FIELD_NUMBER: _ClassVar[int]
    ADOMAIN_FIELD_NUMBER: _ClassVar[int]
    SEAT_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    CREATIVES_FIELD_NUMBER: _ClassVar[int]
    ACPM_MICROS_FIELD_NUMBER: _ClassVar[int]
    DAILY_BUDGET_MICROS_FIELD_NUMBER: _ClassVar[int]
    TARGETING_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_CAP_FIELD_NUMBER: _ClassVar[int]
    id: str
    advertiser: str
    adomain: _containers.RepeatedScalarFieldContainer[str]
    seat: str
    bundle: str
    creatives: _containers.RepeatedCompositeFieldContainer[Creative]
    acpm_micros: int
    daily_budget_micros: int
    targeting: Targeting
    paused: bool
    frequency_cap: FrequencyCap
    def __init__(self, id: _Optional[str] = ..., advertiser: _Optional[str] = ..., adomain: _Optional[_Iterable[str]] = ..., seat: _Optional[str] = ..., bundle: _Optional[str] = ..., creatives: _Optional[_Iterable[_Union[Creative, _Mapping]]] = ..., acpm_micros: _Optional[int] = ..., daily_budget_micros: _Optional[int] = ..., targeting: _Optional[_Union[Targeting, _Mapping]] = ..., paused: _Optional[bool] = ..., frequency_cap: _Optional[_Union[FrequencyCap, _Mapping]] = ...) -> None: ...

class FrequencyCap(_message.Message):
    __slots__ = ("count", "window_s")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    count: int
    window_s: int
    def __init__(self, count: _Optional[int] = ..., window_s: _Optional[int] = ...) -> None: ...

class CampaignStatus(_message.Message):
    __slots__ = ("campaign", "spent_today_micros", "remaining_today_micros", "multiplier", "pass_rate")
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    SPENT_TODAY_MICROS_FIELD_NUMBER: _ClassVar[int]
    REMAINING_TODAY_MICROS_FIELD_NUMBER: _ClassVar[int]
    MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    PASS_RATE_FIELD_NUMBER: _ClassVar[int]
    campaign: Campaign
    spent_today_micros: int
    remaining_today_micros: int
    multiplier: float
    pass_rate: float
    def __init__(self, campaign: _Optional[_Union[Campaign, _Mapping]] = ..., spent_today_micros: _Optional[int] = ..., remaining_today_micros: _Optional[int] = ..., multiplier: _Optional[float] = ..., pass_rate: _Optional[float] = ...) -> None: ...

class CampaignRef(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListCampaignsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListCampaignsResponse(_message.Message):
    __slots__ = ("campaigns", "next_page_token")
    CAMPAIGNS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    campaigns: _containers.RepeatedCompositeFieldContainer[CampaignStatus]
    next_page_token: str
    def __init__(self, campaigns: _Optional[_Iterable[_Union[CampaignStatus, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SwapModelRequest(_message.Message):
    __slots__ = ("path", "backend")
    PATH_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    path: str
    backend: str
    def __init__(self, path: _Optional[str] = ..., backend: _Optional[str] = ...) -> None: ...

class ModelStatus(_message.Message):
    __slots__ = ("name", "version", "backend", "path")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    backend: str
    path: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., backend: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class GetPacingRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class PacingStatus(_message.Message):
    __slots__ = ("method", "policy_version", "interval_s", "last_tick_unix_ms", "last_tick_us", "campaigns", "next_page_token")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    LAST_TICK_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_TICK_US_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGNS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    method: str
    policy_version: str
    interval_s: float
    last_tick_unix_ms: int
    last_tick_us: float
    campaigns: _containers.RepeatedCompositeFieldContainer[CampaignStatus]
    next_page_token: str
    def __init__(self, method: _Optional[str] = ..., policy_version: _Optional[str] = ..., interval_s: _Optional[float] = ..., last_tick_unix_ms: _Optional[int] = ..., last_tick_us: _Optional[float] = ..., campaigns: _Optional[_Iterable[_Union[CampaignStatus, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

"""Campaigns: what an advertiser buys, and how it is checked.

A campaign bids an aCPM (micros of USD per 1000 attentive seconds) with a daily
budget (micros of USD) and one or more creatives. The same validator guards the
campaigns file and the Admin service, so both answer with the same messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class CreativeKind(IntEnum):
    BANNER = 1
    VIDEO = 2
    NATIVE = 3


@dataclass(slots=True)
class Creative:
    id: str
    kind: CreativeKind
    w: int = 0
    h: int = 0
    mime: str = ""  # video only
    duration: int = 0  # video only, seconds
    adm: str = ""
    cat: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Targeting:
    cat: list[str] = field(default_factory=list)  # empty = any category
    country: list[str] = field(default_factory=list)  # empty = any country
    devicetype: list[int] = field(default_factory=list)  # empty = any device


@dataclass(frozen=True, slots=True)
class FrequencyCap:
    """At most `count` impressions per user within any `window_s` seconds."""

    count: int
    window_s: int


MAX_CAP_WINDOW_S = 30 * 86_400  # user state is kept for 30 days


@dataclass(slots=True)
class Campaign:
    id: str
    advertiser: str
    adomain: list[str]
    seat: str
    creatives: list[Creative]
    acpm_micros: int
    daily_budget_micros: int
    targeting: Targeting = field(default_factory=Targeting)
    bundle: str = ""
    paused: bool = False
    frequency_cap: FrequencyCap | None = None  # None: no cap

"""The campaign index: every creative as one row of flat arrays, read by the kernels.

Targeting and blocking are bitsets over small vocabularies (categories,
countries) so that one kernel pass decides a row with a few AND operations.
Updates are incremental: an upsert deactivates the campaign's old rows and
appends new ones, a pause flips its rows' `active` flags, a budget running out
is read from the state on every request. Updates and auctions both run on the
event loop, and an auction never yields, so a request sees the index either
before or after an update, never halfway.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from exchange.campaigns import Campaign, Creative, CreativeKind
from exchange.errors import NotFound
from exchange.state import CampaignState
from inference.baseline import prior_seconds
from kernels.eligibility import eligible_rows

ANY_DEVICE = 0xFF  # bit d set = device type d admitted; all bits = untargeted
ANY_COUNTRY = ""  # the posting list of rows that target no country
_STAMP_LIMIT = 2**31 - 1
FILTER_CACHE = 4096  # request and imp filters kept between upserts


NO_SIZE = 0  # the key of non-banner rows, and of sizes no slot can have


def size_key(w: int, h: int) -> int:
    """(w, h) as one uint32; NO_SIZE for sizes outside 1..65535 px, which match nothing."""
    if not (0 < w <= 0xFFFF and 0 < h <= 0xFFFF):
        return NO_SIZE
    return (w << 16) | h


def category_and_parents(cat: str) -> list[str]:
    """IAB categories nest as `IAB1-5` under `IAB1`: a rule on the parent covers both."""
    parent, dash, _ = cat.partition("-")
    return [cat, parent] if dash else [cat]


def tie_key(campaign_id: str) -> int:
    """Exact ties go to the lower key: stable, and independent of the order of upserts."""
    return zlib.crc32(campaign_id.encode())


@dataclass(frozen=True, slots=True)
class RequestFilter:
    """What one request asks of every row, as the kernel reads it."""

    categories: np.ndarray  # [W] uint64 page categories and their parents
    country_word: int  # -1: a country no campaign targets
    country_bit: np.uint64
    devicetype: int
    bcat: np.ndarray  # [W] uint64
    blocked: np.ndarray  # [B] int32 sorted campaign entries (badv, bapp)
    country: str  # for the country posting lists


@dataclass(frozen=True, slots=True)
class ImpFilter:
    """The slot of one imp."""

    banner_sizes: np.ndarray  # [K] uint32 size keys
    video_mimes: np.ndarray  # [M] int32 mime ids
    min_duration: float
    max_duration: float  # 0: none
    native: bool
    slots: tuple  # posting-list keys of the slot: size keys, "video", "native"


class Vocabulary:
    """Strings to bit positions, growing as campaigns name new values."""

    def __init__(self) -> None:
        self.bits: dict[str, int] = {}

    def add(self, value: str) -> int:
        return self.bits.setdefault(value, len(self.bits))

    def words(self) -> int:
        return max(1, (len(self.bits) + 63) // 64)

    def bitset(self, values, words: int) -> np.ndarray:
        """Known values as a bitset [words] uint64; unknown ones match nothing."""
        out = np.zeros(words, dtype=np.uint64)
        for value in values:
            bit = self.bits.get(value)
            if bit is not None:
                out[bit >> 6] |= np.uint64(1) << np.uint64(bit & 63)
        return out


class PostingLists:
    """Rows by key (a banner size, a creative kind, a country), append-only and sorted:
    rows only ever get higher numbers, and stale rows stay, switched off by `active`."""

    EMPTY = np.zeros(0, dtype=np.int32)

    def __init__(self) -> None:
        self._rows: dict[object, np.ndarray] = {}
        self._used: dict[object, int] = {}

    def add(self, key: object, row: int) -> None:
        rows, used = self._rows.get(key), self._used.get(key, 0)
        if rows is None or used == len(rows):
            rows = _grow(rows if rows is not None else self.EMPTY, max(16, 2 * used))
            self._rows[key] = rows
        rows[used] = row
        self._used[key] = used + 1

    def get(self, key: object) -> np.ndarray:
        rows = self._rows.get(key)
        return self.EMPTY if rows is None else rows[: self._used[key]]

    def count(self, key: object) -> int:
        return self._used.get(key, 0)


def _grow(a: np.ndarray, rows: int, cols: int | None = None) -> np.ndarray:
    shape = (rows,) if a.ndim == 1 else (rows, cols if cols is not None else a.shape[1])
    out = np.zeros(shape, dtype=a.dtype)
    if a.ndim == 1:
        out[: len(a)] = a
    else:
        out[: a.shape[0], : a.shape[1]] = a
    return out


class CampaignIndex:
    ROW_ARRAYS: ClassVar[dict[str, type]] = {  # name: dtype, one value per row
        "active": np.bool_, "campaign": np.int32, "slot": np.int32, "ad": np.int32,
        "kind": np.int8, "size": np.uint32, "width": np.int32, "height": np.int32,
        "mime": np.int32, "duration": np.float32,
        "acpm": np.int64, "devices": np.uint8, "tie": np.uint32, "any_cat": np.bool_,
        "any_country": np.bool_, "capped": np.bool_,  # has a frequency cap
        "prior_s": np.float32,  # expected attentive seconds before scoring (candidate cap)
    }  # fmt: skip
    BITSET_ARRAYS: ClassVar[tuple[str, ...]] = ("target_cat", "creative_cat", "target_country")

    def __init__(self, state: CampaignState, capacity: int = 1024) -> None:
        self.state = state
        self.n = 0  # rows in use
        self.entries: list[Campaign] = []  # every campaign version; old ones have no active rows
        self.entry_of: dict[str, int] = {}  # campaign id -> its current entry
        self.rows_of: list[list[int]] = []  # entry -> its rows
        self.creatives: list[Creative] = []  # row -> creative
        self.ad_ids: dict[tuple[str, str], int] = {}
        self.categories, self.countries = Vocabulary(), Vocabulary()
        self.mime_ids: dict[str, int] = {}
        self.by_slot = PostingLists()  # banner size key, or "video" / "native"
        self.by_country = PostingLists()  # a targeted country, or ANY_COUNTRY
        self.by_domain: dict[str, set[int]] = {}
        self.by_bundle: dict[str, set[int]] = {}
        for name, dtype in self.ROW_ARRAYS.items():
            setattr(self, name, np.zeros(capacity, dtype=dtype))
        for name in self.BITSET_ARRAYS:
            setattr(self, name, np.zeros((capacity, 1), dtype=np.uint64))
        self.seen = np.zeros(capacity, dtype=np.int32)  # [E] per-entry stamps
        self._stamp = 0
        self._filters: dict[tuple, RequestFilter | ImpFilter] = {}  # cleared by any upsert
        self._out = np.zeros(capacity, dtype=np.int32)

    def __len__(self) -> int:
        return self.n

    # -- updates ----------------------------------------------------------------

    def upsert(self, c: Campaign) -> None:
        """Replace the campaign's rows (or add them): O(its creatives), nothing rebuilt."""
        self._filters.clear()  # vocabularies and block lists may change
        old = self.entry_of.get(c.id)
        if old is not None:
            self.active[self.rows_of[old]] = False
        entry = len(self.entries)
        self.entries.append(c)
        self.entry_of[c.id] = entry
        self.rows_of.append([])
        if entry >= len(self.seen):
            self.seen = _grow(self.seen, 2 * len(self.seen))
        for domain in c.adomain:
            self.by_domain.setdefault(domain, set()).add(entry)
        if c.bundle:
            self.by_bundle.setdefault(c.bundle, set()).add(entry)
        slot = self.state.slot(c.id)
        self.state.set_budget(slot, c.daily_budget_micros, c.acpm_micros)
        t = c.targeting
        for value in t.cat:
            self.categories.add(value)
        for value in t.country:
            self.countries.add(value)
        for creative in c.creatives:
            for cat in creative.cat:
                for value in category_and_parents(cat):
                    self.categories.add(value)
        self._fit_vocabularies()
        devices = ANY_DEVICE
        if t.devicetype:
            devices = 0
            for d in t.devicetype:
                devices |= 1 << d
        target_cat = self.categories.bitset(t.cat, self.target_cat.shape[1])
        target_country = self.countries.bitset(t.country, self.target_country.shape[1])
        for creative in c.creatives:
            row = self._new_row()
            self.rows_of[entry].append(row)
            self.creatives.append(creative)
            values = {
                "campaign": entry, "slot": slot, "kind": int(creative.kind),
                "ad": self.ad_ids.setdefault((c.id, creative.id), len(self.ad_ids)),
                "size": size_key(creative.w, creative.h) if creative.kind == CreativeKind.BANNER
                else NO_SIZE,  # only banners are matched by size
                "width": creative.w, "height": creative.h, "duration": creative.duration,
                "mime": self.mime_ids.setdefault(creative.mime, len(self.mime_ids)),
                "acpm": c.acpm_micros, "devices": devices, "tie": tie_key(c.id),
                "any_cat": not t.cat, "any_country": not t.country,
                "capped": c.frequency_cap is not None,
                "prior_s": prior_seconds(creative.kind, creative.w, creative.h, creative.duration),
            }  # fmt: skip
            for name, value in values.items():
                getattr(self, name)[row] = value
            self.target_cat[row] = target_cat
            self.target_country[row] = target_country
            cats = [p for cat in creative.cat for p in category_and_parents(cat)]
            self.creative_cat[row] = self.categories.bitset(cats, self.creative_cat.shape[1])
            if creative.kind == CreativeKind.BANNER:
                self.by_slot.add(int(self.size[row]), row)
            else:
                self.by_slot.add(creative.kind.name.lower(), row)
            for country in t.country or [ANY_COUNTRY]:
                self.by_country.add(country, row)
            self.active[row] = not c.paused  # last: the row exists only once complete

    def set_paused(self, campaign_id: str, paused: bool) -> Campaign:
        entry = self._entry(campaign_id)
        self.entries[entry] = replace(self.entries[entry], paused=paused)
        self.active[self.rows_of[entry]] = not paused
        return self.entries[entry]

    def get(self, campaign_id: str) -> Campaign:
        return self.entries[self._entry(campaign_id)]

    def campaigns(self) -> list[Campaign]:
        return sorted((self.entries[e] for e in self.entry_of.values()), key=lambda c: c.id)

    def _entry(self, campaign_id: str) -> int:
        try:
            return self.entry_of[campaign_id]
        except KeyError:
            raise NotFound(f'campaign "{campaign_id}" does not exist') from None

    def _new_row(self) -> int:
        if self.n == len(self.active):
            rows = 2 * len(self.active)
            for name in (*self.ROW_ARRAYS, *self.BITSET_ARRAYS):
                setattr(self, name, _grow(getattr(self, name), rows))
            self._out = _grow(self._out, rows)
        self.n += 1
        return self.n - 1

    def _fit_vocabularies(self) -> None:
        """Widen the bitsets when a vocabulary outgrows them (rare: doubles each time)."""
        for names, vocab in (
            (("target_cat", "creative_cat"), self.categories),
            (("target_country",), self.countries),
        ):
            for name in names:
                a = getattr(self, name)
                if vocab.words() > a.shape[1]:
                    setattr(self, name, _grow(a, a.shape[0], 2 * vocab.words()))

    # -- per request ------------------------------------------------------------

    def request_filter(
        self, categories: list[str], country: str, devicetype: int, bcat: list[str],
        badv: list[str], bapp: list[str],
    ) -> RequestFilter:  # fmt: skip
        """Cached: the same site, country and block lists recur all day."""
        key = (tuple(categories), country, devicetype, tuple(bcat), tuple(badv), tuple(bapp))
        cached = self._filters.get(key)
        if cached is None:
            if len(self._filters) >= FILTER_CACHE:
                self._filters.clear()
            cached = self._filters[key] = self._request_filter(*key)
        return cached

    def _request_filter(self, categories, country, devicetype, bcat, badv, bapp) -> RequestFilter:
        words = self.target_cat.shape[1]
        page = [p for cat in categories for p in category_and_parents(cat)]
        bit = self.countries.bits.get(country)
        blocked: set[int] = set()
        for values, by in ((badv, self.by_domain), (bapp, self.by_bundle)):
            for value in values:
                blocked |= by.get(value, set())
        return RequestFilter(
            categories=self.categories.bitset(page, words),
            country_word=-1 if bit is None else bit >> 6,
            country_bit=np.uint64(0 if bit is None else 1 << (bit & 63)),
            devicetype=min(max(devicetype, 0), 7),
            bcat=self.categories.bitset(bcat, words),
            blocked=np.array(sorted(blocked), dtype=np.int32),
            country=country,
        )

    def imp_filter(self, banner_sizes: list[int], video, native: bool) -> ImpFilter:
        key = (tuple(banner_sizes), video and (tuple(video.mimes), video.minduration,
               video.maxduration), native)  # fmt: skip
        cached = self._filters.get(key)
        if cached is None:
            if len(self._filters) >= FILTER_CACHE:
                self._filters.clear()
            cached = self._filters[key] = self._imp_filter(banner_sizes, video, native)
        return cached

    def _imp_filter(self, banner_sizes: list[int], video, native: bool) -> ImpFilter:
        known = self.mime_ids
        mimes = [] if video is None else [known[m] for m in video.mimes if m in known]
        sizes = [k for k in banner_sizes if k != NO_SIZE]
        slots = (*sizes, *(["video"] if mimes else []), *(["native"] if native else []))
        return ImpFilter(
            banner_sizes=np.array(sizes, dtype=np.uint32),
            video_mimes=np.array(mimes, dtype=np.int32),
            min_duration=float(video.minduration) if video is not None else 0.0,
            max_duration=float(video.maxduration) if video is not None else 0.0,
            native=native,
            slots=slots,
        )

    def _rows_to_check(self, r: RequestFilter, imp: ImpFilter) -> np.ndarray:
        """The shorter of the slot's posting lists and the country's: every row that
        could qualify is in both, so either one is complete."""
        by_slot = [self.by_slot.get(key) for key in imp.slots]
        by_country = [self.by_country.get(r.country), self.by_country.get(ANY_COUNTRY)]
        if r.country == ANY_COUNTRY:
            by_country = by_country[1:]
        shorter = min(by_slot, by_country, key=lambda lists: sum(len(x) for x in lists))
        if len(shorter) <= 1:
            return shorter[0] if shorter else PostingLists.EMPTY
        return np.concatenate(shorter)

    def candidates(self, r: RequestFilter, imp: ImpFilter) -> np.ndarray:
        """Eligible rows for one imp, the first fitting creative per campaign. [C] int32"""
        self._stamp += 1
        if self._stamp == _STAMP_LIMIT:
            self.seen[:] = 0
            self._stamp = 1
        count = eligible_rows(
            self._rows_to_check(r, imp), self.active, self.campaign, self.slot, self.kind,
            self.size, self.mime, self.duration, self.devices, self.any_cat, self.target_cat,
            self.any_country, self.target_country, self.creative_cat, self.state.limit,
            self.state.spent, r.categories, r.country_word, r.country_bit, r.devicetype, r.bcat,
            r.blocked,
            imp.banner_sizes, imp.video_mimes, imp.min_duration, imp.max_duration, imp.native,
            self.seen, self._stamp, self._out,
        )  # fmt: skip
        return self._out[:count].copy()

"""Eligibility: which index rows may bid on one imp, in one pass (Numba, CPU).

One call checks the rows of one posting list (the index picks the shorter of
the slot's and the country's, so a narrowly targeted market costs the few
rows that could qualify, not a scan of everything) and returns the candidate
rows: active, budget left, the creative fits the slot (banner size, video mime
and duration, native), targeting admits the request (category, country and
device-type bitsets), nothing is blocked (bcat bitset, blocked campaigns from
badv/bapp), and only the first eligible creative of each campaign (a stamp per
campaign, so no per-call clearing).

`eligible_oracle` is the same rule in plain numpy: the reference the kernel is
tested against, never used on a request.
"""

from __future__ import annotations

import numpy as np
from numba import njit

BANNER, VIDEO, NATIVE = 1, 2, 3  # exchange.campaigns.CreativeKind


@njit(cache=True, nogil=True, inline="always")
def _any_bits(a: np.ndarray, b: np.ndarray) -> bool:
    for w in range(a.shape[0]):  # noqa: SIM110 - numba compiles loops, not generators
        if a[w] & b[w]:
            return True
    return False


@njit(cache=True, nogil=True, inline="always")
def _contains(sorted_values: np.ndarray, value: int) -> bool:
    i = np.searchsorted(sorted_values, value)
    return i < sorted_values.shape[0] and sorted_values[i] == value


@njit(cache=True, nogil=True)
def eligible_rows(
    rows: np.ndarray,  # [R] int32 rows to check: a posting list chosen by the index
    active: np.ndarray,  # [N] bool
    campaign: np.ndarray,  # [N] int32 campaign entry
    slot: np.ndarray,  # [N] int32 budget slot
    kind: np.ndarray,  # [N] int8 creative kind
    size: np.ndarray,  # [N] uint32 (w << 16) | h of banners, 0 for other kinds
    mime: np.ndarray,  # [N] int32 video mime id
    duration: np.ndarray,  # [N] float32 video seconds
    devices: np.ndarray,  # [N] uint8 device-type bitset (all bits: untargeted)
    any_cat: np.ndarray,  # [N] bool untargeted by category
    target_cat: np.ndarray,  # [N, W] uint64 targeted categories
    any_country: np.ndarray,  # [N] bool
    target_country: np.ndarray,  # [N, G] uint64
    creative_cat: np.ndarray,  # [N, W] uint64 the creative's categories and their parents
    budget: np.ndarray,  # [S] int64 daily budget per slot
    spent: np.ndarray,  # [S] int64 spent today per slot
    request_cat: np.ndarray,  # [W] uint64 the page's categories and their parents
    country_word: int,  # -1: country unknown to the index
    country_bit: np.uint64,
    devicetype: int,
    bcat: np.ndarray,  # [W] uint64 blocked categories
    blocked_campaigns: np.ndarray,  # [B] int32 sorted campaign entries (badv, bapp)
    banner_sizes: np.ndarray,  # [K] uint32 allowed banner size keys (empty: no banner)
    video_mimes: np.ndarray,  # [M] int32 allowed mime ids (empty: no video)
    min_duration: float,
    max_duration: float,  # 0: no maximum
    native: bool,
    seen: np.ndarray,  # [E] int32 scratch: the stamp of the last call that took the campaign
    stamp: int,
    out: np.ndarray,  # [N] int32 scratch for the result
) -> int:
    """Write the candidate rows (ascending) to `out`; returns how many.

    `rows` need not hold every row, only every row that could qualify: the index
    passes the shorter of the slot's and the country's posting lists.
    """
    device_bit = np.uint8(1 << devicetype)
    check_blocked = blocked_campaigns.shape[0] > 0
    passed = 0
    ascending = True  # one posting list is already sorted; a concatenation may not be
    for i in rows:
        if not active[i] or not (devices[i] & device_bit):
            continue
        k = kind[i]
        fits = False
        if k == BANNER:
            for key in banner_sizes:
                fits |= size[i] == key
        elif k == VIDEO:
            d = duration[i]
            if d >= min_duration and (max_duration <= 0 or d <= max_duration):
                for m in video_mimes:
                    fits |= mime[i] == m
        elif k == NATIVE:
            fits = native
        if not fits:
            continue
        if not any_country[i] and (
            country_word < 0 or not (target_country[i, country_word] & country_bit)
        ):
            continue
        if not any_cat[i] and not _any_bits(target_cat[i], request_cat):
            continue
        s = slot[i]
        if spent[s] >= budget[s] or _any_bits(creative_cat[i], bcat):
            continue
        if check_blocked and _contains(blocked_campaigns, campaign[i]):
            continue
        ascending &= passed == 0 or out[passed - 1] < i
        out[passed] = i
        passed += 1
    if not ascending:
        out[:passed].sort()  # row order: a campaign's first eligible creative is its candidate
    count = 0
    for j in range(passed):
        i = out[j]
        c = campaign[i]
        if seen[c] != stamp:
            seen[c] = stamp
            out[count] = i
            count += 1
    return count


def eligible_oracle(
    n_rows, active, campaign, slot, kind, size, mime, duration, devices, any_cat, target_cat,
    any_country, target_country, creative_cat, budget, spent, request_cat, country_word,
    country_bit, devicetype, bcat, blocked_campaigns, banner_sizes, video_mimes, min_duration,
    max_duration, native,
) -> np.ndarray:  # fmt: skip
    """The same rule as `eligible_rows`, in whole-array numpy. [C] int64 rows"""
    n = n_rows
    kind, size, mime, duration = kind[:n], size[:n], mime[:n], duration[:n]
    fits = (kind == BANNER) & np.isin(size, banner_sizes)
    video_ok = (duration >= min_duration) & ((max_duration <= 0) | (duration <= max_duration))
    fits |= (kind == VIDEO) & np.isin(mime, video_mimes) & video_ok
    fits |= (kind == NATIVE) & native
    ok = active[:n] & fits & (spent[slot[:n]] < budget[slot[:n]])
    ok &= (devices[:n] & np.uint8(1 << devicetype)) != 0
    ok &= any_cat[:n] | ((target_cat[:n] & request_cat) != 0).any(axis=1)
    if country_word >= 0:
        ok &= any_country[:n] | ((target_country[:n, country_word] & country_bit) != 0)
    else:
        ok &= any_country[:n]
    ok &= ~((creative_cat[:n] & bcat) != 0).any(axis=1)
    ok &= ~np.isin(campaign[:n], blocked_campaigns)
    rows = np.flatnonzero(ok)
    _, first = np.unique(campaign[rows], return_index=True)  # first row of each campaign
    return rows[np.sort(first)]


@njit(cache=True, nogil=True)
def count_seen(rows: np.ndarray, row_slot: np.ndarray, seen: np.ndarray) -> None:
    """One more eligible auction for each candidate's campaign (the pacer's counter)."""
    for r in rows:
        seen[row_slot[r]] += 1

"""Rank candidates by expected value and price the winner (Numba, CPU).

A candidate's bid, as a CPM in USD micros, is its expected value per thousand
impressions: aCPM × pacing multiplier × predicted attentive seconds, rounded
down. A bid is valid if it is positive, at or above the floor, and the
campaign could pay it (bid / 1000 within its remaining budget). The highest
valid bid wins; exact ties go to the lower tie key (a hash of the campaign
id: deterministic, and no campaign is favoured by the order it was added in).
First price pays the bid; second price pays max(runner-up, floor) plus one
increment, never more than the bid.

One pass over the candidates, no allocation. `*_oracle` functions are the
same rules in numpy, kept as the test reference.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

FIRST_PRICE = 1
SECOND_PRICE = 2


class Outcome(NamedTuple):
    winner: int  # position in the candidate arrays; -1 when nobody may win
    price_cpm_micros: int  # clearing CPM, USD micros
    runner_up_cpm_micros: int  # -1 when there was no other valid bid


# The rules, once, as plain functions: compiled here for the CPU and by kernels.cuda
# as device functions, so both paths bid, validate and price exactly alike.


def bid_value(acpm, multiplier, seconds) -> int:
    """floor(aCPM x multiplier x seconds); 0 outside (0, 9e18), NaN included."""
    value = acpm * multiplier * seconds
    if not (0.0 < value < 9.0e18):  # a broken prediction bids nothing
        return 0
    return math.floor(value)


def is_valid(bid, floor, remaining) -> bool:
    """Positive, at or above the floor, and payable (a win charges bid / 1000 at most)."""
    return bid > 0 and bid >= floor and bid // 1000 <= remaining


def clearing(best_bid, second_bid, floor, auction_type, increment) -> int:
    if auction_type == FIRST_PRICE:
        return best_bid
    return min(max(max(second_bid, floor), 0) + increment, best_bid)


_bid = njit(cache=True, nogil=True, inline="always")(bid_value)
_valid = njit(cache=True, nogil=True, inline="always")(is_valid)
_clearing = njit(cache=True, nogil=True, inline="always")(clearing)


@njit(cache=True, nogil=True)
def rank_and_price(
    acpm: np.ndarray,  # [C] int64 micros per 1000 attentive seconds
    multiplier: np.ndarray,  # [C] float64 pacing
    seconds: np.ndarray,  # [C] float32 predicted attentive seconds
    remaining: np.ndarray,  # [C] int64 budget left today, micros
    tie: np.ndarray,  # [C] uint32 tie keys
    floor: int,  # CPM micros
    auction_type: int,
    increment: int,
) -> tuple[int, int, int]:
    """(winner, clearing CPM micros, runner-up CPM micros); winner -1 if nobody may win."""
    best, best_bid, second_bid = -1, -1, -1
    for i in range(acpm.shape[0]):
        bid = _bid(acpm[i], multiplier[i], seconds[i])
        if not _valid(bid, floor, remaining[i]):
            continue
        if bid > best_bid or (bid == best_bid and tie[i] < tie[best]):
            second_bid = best_bid
            best, best_bid = i, bid
        elif bid > second_bid:
            second_bid = bid
    if best < 0:
        return -1, 0, -1
    return best, _clearing(best_bid, second_bid, floor, auction_type, increment), second_bid


@njit(cache=True, nogil=True)
def rank_and_price_rows(
    rows: np.ndarray,  # [C] int32 index rows of the candidates
    row_acpm: np.ndarray,  # [N] int64, by row
    row_slot: np.ndarray,  # [N] int32 campaign slot, by row
    row_tie: np.ndarray,  # [N] uint32, by row
    multiplier: np.ndarray,  # [S] float64 pacing, by slot
    budget: np.ndarray,  # [S] int64 what may be spent here today (budget or leases), by slot
    spent: np.ndarray,  # [S] int64 spent today micros, by slot
    seconds: np.ndarray,  # [C] float32 predicted attentive seconds
    floor: int,
    auction_type: int,
    increment: int,
) -> tuple[int, int, int]:
    """`rank_and_price` over index rows: the gathers happen here, in one call, rather
    than as six numpy fancy indexes on the hot path."""
    slots = row_slot[rows]  # [C]
    return rank_and_price(
        row_acpm[rows], multiplier[slots], seconds, budget[slots] - spent[slots], row_tie[rows],
        floor, auction_type, increment,
    )  # fmt: skip


@njit(cache=True, nogil=True)
def top_k(acpm, multiplier, seconds, remaining, tie, floor: int, out: np.ndarray) -> int:
    """The len(out) best valid candidates, best first, into `out`; returns how many.

    For multi-slot responses: an insertion into a sorted run of k, so O(C·k).
    """
    k = out.shape[0]
    bids = np.empty(k, dtype=np.int64)
    n = 0
    for i in range(acpm.shape[0]):
        bid = _bid(acpm[i], multiplier[i], seconds[i])
        if not _valid(bid, floor, remaining[i]):
            continue
        j = n
        while j > 0 and (bid > bids[j - 1] or (bid == bids[j - 1] and tie[i] < tie[out[j - 1]])):
            j -= 1
        if j >= k:
            continue
        for m in range(min(n, k - 1), j, -1):
            bids[m], out[m] = bids[m - 1], out[m - 1]
        bids[j], out[j] = bid, i
        n = min(n + 1, k)
    return n


@njit(cache=True, nogil=True)
def rank_and_price_batch(
    offsets: np.ndarray,  # [I+1] int64: imp j's candidates are [offsets[j], offsets[j+1])
    acpm,
    multiplier,
    seconds,
    remaining,
    tie,  # [sum C] concatenated candidates
    floors: np.ndarray,  # [I] int64
    auction_type: int,
    increment: int,
    winners: np.ndarray,  # [I] int64 out: position within the imp's slice, -1 none
    prices: np.ndarray,  # [I] int64 out
) -> None:
    """Many imps in one call (no Python between them)."""
    for j in range(offsets.shape[0] - 1):
        lo, hi = offsets[j], offsets[j + 1]
        w, p, _ = rank_and_price(
            acpm[lo:hi], multiplier[lo:hi], seconds[lo:hi], remaining[lo:hi], tie[lo:hi],
            floors[j], auction_type, increment,
        )  # fmt: skip
        winners[j], prices[j] = w, p


def bids_oracle(acpm, multiplier, seconds) -> np.ndarray:
    with np.errstate(invalid="ignore"):  # 0 * inf: a broken prediction, dropped below
        value = acpm * multiplier.astype(np.float64) * seconds.astype(np.float64)  # [C]
    value = np.where((value > 0) & (value < 9.0e18), value, 0.0)  # NaN compares false
    return np.floor(value).astype(np.int64)


def rank_and_price_oracle(
    acpm, multiplier, seconds, remaining, tie, floor, auction_type, increment
) -> tuple[int, int, int]:
    bids = bids_oracle(acpm, multiplier, seconds)
    valid = (bids > 0) & (bids >= floor) & (bids // 1000 <= remaining)
    if not valid.any():
        return -1, 0, -1
    idx = np.flatnonzero(valid)
    order = idx[np.lexsort((tie[idx], -bids[idx]))]  # bid desc, then tie key asc
    best = int(order[0])
    second = int(bids[order[1]]) if order.size > 1 else -1
    if auction_type == FIRST_PRICE:
        return best, int(bids[best]), second
    return best, min(max(second, floor, 0) + increment, int(bids[best])), second


def top_k_oracle(acpm, multiplier, seconds, remaining, tie, floor, k) -> np.ndarray:
    bids = bids_oracle(acpm, multiplier, seconds)
    idx = np.flatnonzero((bids > 0) & (bids >= floor) & (bids // 1000 <= remaining))
    return idx[np.lexsort((tie[idx], -bids[idx]))][:k]

"""Rank candidates by expected value and price the winner (numpy).

A candidate's bid, as a CPM in USD micros, is its expected value per thousand
impressions: aCPM × pacing multiplier × predicted attentive seconds. The
highest bid at or above the floor wins; exact ties go to the lower position
(the index orders rows by campaign id, so ties break the same way every time).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

FIRST_PRICE = 1
SECOND_PRICE = 2


class Outcome(NamedTuple):
    winner: int  # position in the candidate arrays; -1 when nobody may win
    price_cpm_micros: int  # clearing CPM, USD micros
    runner_up_cpm_micros: int  # -1 when there was no other valid bid


NO_WINNER = Outcome(-1, 0, -1)


def bid_cpm_micros(
    acpm_micros: np.ndarray, multiplier: np.ndarray, seconds: np.ndarray
) -> np.ndarray:
    """Bids as CPM micros, rounded down so a bid never exceeds its value. [C] int64"""
    value = acpm_micros * multiplier * seconds  # [C] float64
    value[~np.isfinite(value)] = 0.0  # a broken prediction bids nothing
    return np.floor(value).astype(np.int64)


def rank_and_price(
    bids: np.ndarray,
    affordable: np.ndarray,
    floor_cpm_micros: int,
    auction_type: int,
    increment_cpm_micros: int,
) -> Outcome:
    """Pick the winner among valid bids and its clearing price.

    Valid bids are positive, at or above the floor and affordable. First price
    pays the bid; second price pays max(runner-up, floor) + one increment,
    never more than the bid itself.
    """
    valid = (bids > 0) & (bids >= floor_cpm_micros) & affordable  # [C] bool
    if not valid.any():
        return NO_WINNER
    ranked = np.where(valid, bids, -1)  # [C] int64
    winner = int(np.argmax(ranked))  # first maximum: ties go to the lower position
    top = int(ranked[winner])
    ranked[winner] = -1
    runner_up = int(ranked.max()) if ranked.size > 1 else -1
    if auction_type == FIRST_PRICE:
        return Outcome(winner, top, runner_up)
    price = min(max(runner_up, floor_cpm_micros, 0) + increment_cpm_micros, top)
    return Outcome(winner, price, runner_up)

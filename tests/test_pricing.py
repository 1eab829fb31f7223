"""Ranking and pricing rules, on the kernel itself."""

import numpy as np
import pytest

from kernels.pricing import FIRST_PRICE, SECOND_PRICE, bid_cpm_micros, rank_and_price

INC = 10_000


def price(bids, floor=0, at=SECOND_PRICE, affordable=None):
    bids = np.asarray(bids, dtype=np.int64)
    ok = np.ones(len(bids), bool) if affordable is None else np.asarray(affordable)
    return rank_and_price(bids, ok, floor, at, INC)


def test_first_price_pays_own_bid():
    out = price([1_000_000, 3_000_000, 2_000_000], at=FIRST_PRICE)
    assert (out.winner, out.price_cpm_micros) == (1, 3_000_000)


def test_second_price_pays_runner_up_plus_increment():
    out = price([1_000_000, 3_000_000, 2_000_000])
    assert (out.winner, out.price_cpm_micros) == (1, 2_000_000 + INC)


def test_second_price_never_above_own_bid():
    out = price([3_000_000, 2_995_000])
    assert out.price_cpm_micros == 3_000_000


def test_floor_sets_price_when_runner_up_is_lower():
    out = price([3_000_000, 1_000_000], floor=2_500_000)
    assert out.price_cpm_micros == 2_500_000 + INC


def test_single_candidate_pays_floor_plus_increment():
    assert price([3_000_000], floor=1_000_000).price_cpm_micros == 1_000_000 + INC
    assert price([3_000_000], floor=0).price_cpm_micros == INC


def test_below_floor_never_wins():
    assert price([999_999, 500_000], floor=1_000_000).winner == -1
    out = price([999_999, 1_000_000], floor=1_000_000)
    assert out.winner == 1
    assert out.price_cpm_micros == 1_000_000  # floor + increment capped at its bid


def test_ties_break_to_lower_position_every_time():
    for _ in range(3):
        out = price([2_000_000, 5_000_000, 5_000_000, 1_000_000])
        assert out.winner == 1
        assert out.price_cpm_micros == 5_000_000


def test_unaffordable_candidates_neither_win_nor_set_the_price():
    out = price([9_000_000, 3_000_000, 2_000_000], affordable=[False, True, True])
    assert (out.winner, out.price_cpm_micros) == (1, 2_000_000 + INC)


def test_empty_and_zero_bids():
    assert price([]).winner == -1
    assert price([0, 0]).winner == -1


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_predictions_bid_nothing(bad):
    bids = bid_cpm_micros(
        np.array([4_000_000, 4_000_000], np.int64),
        np.ones(2),
        np.array([bad, 2.0], np.float32),
    )
    assert bids.tolist() == [0, 8_000_000]


def test_bid_is_acpm_times_multiplier_times_seconds_rounded_down():
    bids = bid_cpm_micros(
        np.array([4_000_000], np.int64), np.array([0.5]), np.array([2.25], np.float32)
    )
    assert bids.tolist() == [4_500_000]

"""The hindsight optimum R*: the knapsack's LP bound against brute force, and which of a
day's opportunities it may buy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.hindsight import hindsight_optimum, knapsack_bound
from exchange.market import Day, simulate, traffic_profile
from exchange.pacers import NoPacing

TOL = 1e-9


@st.composite
def knapsacks(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Up to 10 items (integer charges 0..50, zeros included; float seconds) and budgets
    from 0 to past the total charge."""
    n = draw(st.integers(0, 10))
    seconds = draw(
        st.lists(
            st.one_of(st.just(0.0), st.floats(0.0, 100.0, allow_nan=False)),
            min_size=n,
            max_size=n,
        )
    )
    charge = draw(st.lists(st.one_of(st.just(0), st.integers(0, 50)), min_size=n, max_size=n))
    budgets = draw(st.lists(st.integers(0, 600), min_size=1, max_size=8))
    return np.array(seconds, np.float64), np.array(charge, np.int64), np.array(budgets, np.int64)


def _subsets(n: int) -> np.ndarray:
    """Every subset of n items as a 0/1 row: [2^n, n]."""
    return ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(np.float64)


def integer_optimum(seconds: np.ndarray, charge: np.ndarray, budget: float) -> float:
    """OPT: the best whole subset that fits, by enumerating them all."""
    take = _subsets(len(seconds))
    fits = take @ charge <= budget
    return float((take @ seconds)[fits].max())  # the empty set always fits a budget >= 0


def fractional_optimum(seconds: np.ndarray, charge: np.ndarray, budget: float) -> float:
    """The LP optimum from its vertices: some items whole and at most one fractional,
    every (subset, extra item) pair tried. No sorting by ratio involved."""
    take = _subsets(len(seconds))  # [S, n]
    cost, got = take @ charge, take @ seconds  # [S]
    best = float(got[cost <= budget].max())
    left = budget - cost  # [S]
    for j in range(len(seconds)):
        out = (take[:, j] == 0) & (left >= 0)
        share = 1.0 if charge[j] == 0 else np.minimum(1.0, left[out] / charge[j])
        if out.any():
            best = max(best, float((got[out] + share * seconds[j]).max()))
    return best


def dual_bound(seconds: np.ndarray, charge: np.ndarray, budget: float) -> float:
    """The LP's dual: min over a price per micro λ >= 0 of λ·budget + Σ max(0, s - λ·c).
    Convex and piecewise linear in λ, so its minimum is at 0 or at a ratio s / c."""
    paid = charge > 0
    lambdas = np.concatenate([[0.0], seconds[paid] / charge[paid]])
    values = [lam * budget + np.maximum(0.0, seconds - lam * charge).sum() for lam in lambdas]
    return float(min(values))


@settings(max_examples=250, deadline=None, database=None)
@given(knapsacks())
def test_the_bound_sits_between_the_integer_optimum_and_one_item_more(case) -> None:
    """LP >= OPT (a relaxation), and the LP's one fractional item is all it adds."""
    seconds, charge, budgets = case
    bound = knapsack_bound(seconds, charge, budgets)
    assert bound.shape == budgets.shape
    largest = float(seconds.max()) if len(seconds) else 0.0
    for b, got in zip(budgets, bound, strict=True):
        opt = integer_optimum(seconds, charge, b)
        eps = TOL * (1.0 + seconds.sum())
        assert opt - eps <= got <= opt + largest + eps, (b, opt, got)


@settings(max_examples=250, deadline=None, database=None)
@given(knapsacks())
def test_the_bound_is_the_lp_optimum(case) -> None:
    """Two independent solutions of the same LP (primal vertices, dual breakpoints)
    must agree with the greedy one."""
    seconds, charge, budgets = case
    bound = knapsack_bound(seconds, charge, budgets)
    for b, got in zip(budgets, bound, strict=True):
        eps = TOL * (1.0 + seconds.sum())
        assert got == pytest.approx(fractional_optimum(seconds, charge, b), abs=eps)
        assert got == pytest.approx(dual_bound(seconds, charge, b), abs=eps)


@settings(max_examples=150, deadline=None, database=None)
@given(knapsacks())
def test_more_budget_never_lowers_the_bound(case) -> None:
    seconds, charge, budgets = case
    budgets = np.unique(np.concatenate([budgets, np.arange(0, int(charge.sum()) + 2)]))
    bound = knapsack_bound(seconds, charge, budgets)
    eps = TOL * (1.0 + seconds.sum())
    assert (np.diff(bound) >= -eps).all(), bound


@settings(max_examples=150, deadline=None, database=None)
@given(knapsacks())
def test_the_ends_free_items_only_and_everything(case) -> None:
    """A budget of 0 buys exactly the free items; one that covers every charge buys all."""
    seconds, charge, _ = case
    total = int(charge.sum())
    zero, enough, more = knapsack_bound(seconds, charge, np.array([0, total, total + 1000]))
    assert zero == pytest.approx(float(seconds[charge == 0].sum()), rel=1e-12, abs=0)
    assert enough == pytest.approx(float(seconds.sum()), rel=1e-9, abs=1e-12)
    assert more == pytest.approx(float(seconds.sum()), rel=1e-9, abs=1e-12)


def test_a_worked_example() -> None:
    """A free item (3 s), then 0.5, 0.25 and 0.1 seconds per micro: the budget fills them
    in that order, the last one it reaches by a fraction."""
    seconds = np.array([1.0, 5.0, 1.0, 3.0])
    charge = np.array([10, 10, 4, 0])  # the last is free
    got = knapsack_bound(seconds, charge, np.array([0, 2, 4, 10, 14, 24, 100]))
    expected = [3.0, 3 + 0.2 * 5, 3 + 0.4 * 5, 3 + 5, 3 + 5 + 1, 3 + 5 + 1 + 1, 10.0]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_no_items_no_seconds() -> None:
    got = knapsack_bound(np.zeros(0), np.zeros(0, np.int64), np.array([0, 10**9]))
    np.testing.assert_array_equal(got, [0.0, 0.0])


# --- hindsight_optimum on a hand-built day ----------------------------------------------


def _tiny_day() -> Day:
    """Two campaigns, two intervals; which opportunities are winnable is decided by
    floor(value) > price, exactly like the simulated auction's bid at multiplier 1.

        campaign 0 (aCPM $2):  seconds  value        price      charge  winnable
          a                    1.0      2_000_000    1_000_000  1000    yes (ratio 1e-3)
          b                    0.5      1_000_000    1_000_000  1000    no: a tie loses
          c                    0.25       500_000      100_000   100    yes (2.5e-3)
          d                    2.0000004 4_000_000.8 4_000_000  4000    no: floor(value) ties
          e                    3.0      6_000_000    5_999_999  5999    yes (5.0e-4)
        campaign 1 (aCPM $1):
          f                    1.5      1_500_000      500_000   500    yes (3e-3)
          g                    1.0      1_000_000    2_000_000  2000    no
    """
    acpm = np.array([2_000_000, 1_000_000], np.int64)
    #                  a    f    b    c    g    d          e
    campaign = np.array([0, 1, 0, 0, 1, 0, 0], np.int32)
    seconds = np.array([1.0, 1.5, 0.5, 0.25, 1.0, 2.0000004, 3.0])
    price = np.array(
        [1_000_000, 500_000, 1_000_000, 100_000, 2_000_000, 4_000_000, 5_999_999], np.int64
    )
    return Day(
        seed=0,
        acpm_micros=acpm,
        start=np.array([0, 3, 7], np.int64),
        campaign=campaign,
        value=acpm[campaign] * seconds,
        seconds=seconds,
        price=price,
        uniform=np.zeros(len(campaign)),
        forecast=traffic_profile(2),
    )


def test_hindsight_counts_only_what_a_full_bid_wins() -> None:
    day = _tiny_day()
    # replica 0: campaign 0 has 600 micros (all of c, then half of a), campaign 1 has 250
    #            (half of f); replica 1: exactly the winnable charges (1000 + 100 + 5999
    #            and 500), to the micro; replica 2: budgets to spare.
    budget = np.array([600, 250, 7099, 500, 10_000, 10_000])
    got = hindsight_optimum(day, budget, replicas=3)
    expected = [0.25 + 0.5 * 1.0, 0.5 * 1.5, 0.25 + 1.0 + 3.0, 1.5, 0.25 + 1.0 + 3.0, 1.5]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_hindsight_matches_the_auction_on_the_tiny_day() -> None:
    """With budget to spare, the replay wins exactly the opportunities R* counts."""
    day = _tiny_day()
    episode = simulate(day, np.array([10**12, 10**12]), NoPacing())
    np.testing.assert_allclose(episode.bought, [4.25, 1.5], rtol=1e-12)
    np.testing.assert_array_equal(episode.wins, [3, 1])
    np.testing.assert_array_equal(episode.spent, [1000 + 100 + 5999, 500])
    np.testing.assert_array_equal(day.unpaced_spend(), episode.spent)


def test_a_negative_budget_buys_the_free_items_only() -> None:
    bound = knapsack_bound(np.array([1.0, 2.0]), np.array([10, 0]), np.array([-5, 0]))
    np.testing.assert_allclose(bound, [2.0, 2.0])

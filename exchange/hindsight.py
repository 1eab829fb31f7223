"""The hindsight optimum R*: the most attention a budget could buy with the day known.

Knowing every opportunity's price and value in advance, buying is a knapsack: items
cost their charge (micros) and are worth their true attentive seconds. R* is its LP
relaxation, solved exactly by taking items in order of seconds per micro and a
fraction of the first that does not fit. That is an upper bound on any integral
choice and at most one item's value above the best one, so every method's R / R*
is <= 1 and, on a day of thousands of wins, the bound is tight.

Only opportunities a campaign can win at a multiplier of at most 1 count: pacing
never bids above the advertiser's aCPM.
"""

from __future__ import annotations

import numpy as np


def knapsack_bound(seconds: np.ndarray, charge: np.ndarray, budgets: np.ndarray) -> np.ndarray:
    """LP optimum of max Σ x·seconds s.t. Σ x·charge <= budget, 0 <= x <= 1, per budget.

    seconds [n] float, charge [n] int micros (>= 0), budgets [B] micros -> [B] seconds.
    """
    budgets = np.maximum(np.asarray(budgets, dtype=np.float64), 0.0)  # nothing to spend < 0
    if len(seconds) == 0:
        return np.zeros(len(budgets))
    free = charge <= 0
    base = float(seconds[free].sum())  # free items are always taken
    s, c = seconds[~free].astype(np.float64), charge[~free].astype(np.float64)
    order = np.argsort(-s / c, kind="stable")  # best seconds per micro first
    s, c = s[order], c[order]
    cum_c = np.concatenate([[0.0], np.cumsum(c)])  # [n+1]
    cum_s = np.concatenate([[0.0], np.cumsum(s)])
    whole = np.searchsorted(cum_c, budgets, side="right") - 1  # items that fit entirely
    whole = np.clip(whole, 0, len(c))
    partial = np.zeros(len(budgets))
    more = whole < len(c)
    nxt = whole[more]
    partial[more] = (budgets[more] - cum_c[nxt]) / c[nxt] * s[nxt]
    return base + cum_s[whole] + partial


def hindsight_optimum(day, budget: np.ndarray, replicas: int = 1) -> np.ndarray:
    """R* for each environment of `simulate` (env r * K + k is campaign k), [E] seconds."""
    k = day.campaigns
    budget = np.asarray(budget).reshape(replicas, k)  # [R, K]
    winnable = day.winnable
    charge = day.charge
    out = np.zeros((replicas, k))
    for c in range(k):
        mine = winnable & (day.campaign == c)
        out[:, c] = knapsack_bound(day.seconds[mine], charge[mine], budget[:, c])
    return out.ravel()

"""Quality metrics without scipy or sklearn, and the Bayes-optimal ceilings of a sample.

The Bayes figures rank by the world's true probabilities: no model can beat them on
the same impressions, so every model's AUC is reported next to them.
"""

from __future__ import annotations

import numpy as np

from inference.world import Impressions


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney U), ties given their average rank; O(n log n)."""
    y = np.asarray(labels).astype(bool).ravel()  # [n]
    s = np.asarray(scores, dtype=np.float64).ravel()  # [n]
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.size} vs {s.size}")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUC needs both classes; got {n_pos} positives and {n_neg} negatives")
    order = np.argsort(s, kind="stable")
    sorted_s = s[order]
    # Tie groups: each gets the mean of the 1-based ranks it spans.
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])  # [groups]
    ends = np.r_[starts[1:], s.size]  # [groups], exclusive
    group_rank = (starts + 1 + ends) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(s.size, dtype=np.float64)
    ranks[order] = np.repeat(group_rank, ends - starts)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def mae(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute error, in float64 so a million float32 rows do not lose digits."""
    return float(np.mean(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def bayes_report(imps: Impressions) -> dict[str, float]:
    """The ceilings a model is judged against: ranking and predicting by the true values."""
    return {
        "auc_view_bayes": auc(imps.viewed, imps.p_view),
        "auc_click_bayes": auc(imps.clicked, imps.p_click),
        "seconds_mae_bayes": mae(imps.seconds, imps.expected_seconds),
    }

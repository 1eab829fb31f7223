"""The shortlist: too many candidates for the model, cut to the k with the best prior bid.

A candidate's prior bid is aCPM × its pacing multiplier × its creative's prior
attentive seconds: what it would bid if the model agreed with the prior. One pass
computes the keys, a selection (np.partition, O(C)) finds the k-th largest, and one
more pass keeps the rows above it, then those equal to it until k are taken.
`shortlist_oracle` is the same rule in numpy, for the tests.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def shortlist(rows, acpm, slot, multiplier, prior, k: int) -> np.ndarray:
    """The k rows of `rows` with the highest prior bid, in ascending row order. [k] of [C]"""
    n = rows.shape[0]
    if n <= k:
        return rows
    keys = np.empty(n, dtype=np.float64)  # [C]
    for i in range(n):
        r = rows[i]
        keys[i] = acpm[r] * multiplier[slot[r]] * prior[r]
    cut = np.partition(keys, n - k)[n - k]  # the k-th largest key
    out = np.empty(k, dtype=rows.dtype)  # [k]
    m = 0
    for i in range(n):
        if keys[i] > cut:
            out[m] = rows[i]
            m += 1
    for i in range(n):
        if m == k:
            break
        if keys[i] == cut:
            out[m] = rows[i]
            m += 1
    out.sort()
    return out


def shortlist_oracle(rows, acpm, slot, multiplier, prior, k: int) -> np.ndarray:
    if rows.size <= k:
        return rows
    key = acpm[rows] * multiplier[slot[rows]].astype(np.float64) * prior[rows]
    order = np.argsort(-key, kind="stable")  # ties: the earlier rows
    return np.sort(rows[order[:k]])

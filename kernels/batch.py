"""Many imps at once against the whole index: the CPU kernels or the GPU's, by size.

For work that auctions many impressions in one go — the market simulator, replays,
load generation — rather than the live auction, which answers each request as it
arrives with the CPU kernels. `kernels.cuda.pick_backend` chooses by the batch's
size and whether a GPU is there, and logs the choice; both paths apply the same
rules, and the tests hold each to the numpy oracles.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from kernels import cuda
from kernels.pricing import SECOND_PRICE, rank_and_price

if TYPE_CHECKING:
    from exchange.index import CampaignIndex, ImpFilter, RequestFilter


def auction_batch(
    index: CampaignIndex,
    filters: Sequence[tuple[RequestFilter, ImpFilter]],
    seconds: np.ndarray,  # [I, N] float32 predicted attentive seconds per imp and index row
    floors: np.ndarray,  # [I] int64 CPM micros
    auction_type: int = SECOND_PRICE,
    increment: int = 10_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Winner rows ([I] int64, -1 for none) and clearing CPM micros ([I] int64)."""
    if cuda.pick_backend(len(filters), index.n) == "cuda":
        out = cuda.auction_batch(
            cuda.IndexArrays.from_index(index),
            cuda.RequestBatch.from_filters(filters, len(index.entries)),
            seconds, floors, auction_type, increment,
        )  # fmt: skip
        return out.winners, out.prices
    winners = np.full(len(filters), -1, dtype=np.int64)
    prices = np.zeros(len(filters), dtype=np.int64)
    state = index.state
    for j, (request, imp) in enumerate(filters):
        rows = index.candidates(request, imp)  # [C]
        if rows.size == 0:
            continue
        slots = index.slot[rows]
        w, price, _ = rank_and_price(
            index.acpm[rows], state.multiplier[slots], seconds[j, rows], state.remaining(slots),
            index.tie[rows], int(floors[j]), auction_type, increment,
        )  # fmt: skip
        if w >= 0:
            winners[j], prices[j] = rows[w], price
    return winners, prices

"""The batch dispatcher: the CPU path equals one auction per imp; the GPU path is chosen
by size (the CUDA kernels themselves are held to the oracle in test_kernels_cuda)."""

from __future__ import annotations

import numpy as np

from exchange.demo import demo_campaigns
from exchange.index import CampaignIndex, size_key
from exchange.state import CampaignState
from kernels import batch, cuda
from kernels.pricing import rank_and_price_oracle


def small_market():
    index = CampaignIndex(CampaignState())
    for c in demo_campaigns(300, seed=3):
        index.upsert(c)
    rng = np.random.default_rng(0)
    filters = [
        (
            index.request_filter([str(rng.choice(["IAB1", "IAB3", "IAB12"]))],
                                 str(rng.choice(["USA", "GBR", "JPN"])), int(rng.integers(1, 8)),
                                 [], [], []),
            index.imp_filter([size_key(300, 250)] if rng.random() < 0.8 else [], None,
                             bool(rng.random() < 0.3)),
        )
        for _ in range(40)
    ]  # fmt: skip
    seconds = rng.uniform(0.0, 12.0, (len(filters), index.n)).astype(np.float32)
    floors = rng.choice([0, 500_000, 5_000_000], len(filters)).astype(np.int64)
    return index, filters, seconds, floors


def test_the_cpu_path_is_one_auction_per_imp():
    index, filters, seconds, floors = small_market()
    winners, prices = batch.auction_batch(index, filters, seconds, floors)
    st = index.state
    for j, (r, imp) in enumerate(filters):
        rows = index.candidates(r, imp)
        slots = index.slot[rows]
        w, p, _ = rank_and_price_oracle(
            index.acpm[rows], st.multiplier[slots], seconds[j, rows], st.remaining(slots),
            index.tie[rows], floors[j], 2, 10_000,
        )  # fmt: skip
        assert winners[j] == (rows[w] if w >= 0 else -1)
        assert prices[j] == (p if w >= 0 else 0)
    assert (winners >= 0).sum() > 10  # the market is not empty


def test_a_large_batch_goes_to_the_gpu_when_one_is_there(monkeypatch):
    index, filters, seconds, floors = small_market()
    calls = []

    def fake_gpu_batch(arrays, requests, *args):
        calls.append((arrays.n_rows, requests.n_imps))
        return cuda.BatchOutcome(
            np.full(requests.n_imps, -1), np.zeros(requests.n_imps), np.full(requests.n_imps, -1)
        )

    monkeypatch.setattr(cuda, "gpu_available", lambda: True)
    monkeypatch.setattr(cuda, "GPU_MIN_PAIRS", 40 * index.n)
    monkeypatch.setattr(cuda, "auction_batch", fake_gpu_batch)
    batch.auction_batch(index, filters, seconds, floors)
    assert calls == [(index.n, 40)]
    batch.auction_batch(index, filters[:39], seconds[:39], floors[:39])  # below: the CPU
    assert len(calls) == 1

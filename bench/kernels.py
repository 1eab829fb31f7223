"""Kernel latency: eligibility and rank/price, Numba vs the numpy oracles (and CUDA, batched).

    python -m bench.kernels [--cpu 0] [--quick]

Workload:
- Eligibility: a campaign index (exchange.index.CampaignIndex over exchange.state.
  CampaignState) of the first 1k, 10k and 100k generated demo campaigns
  (exchange.demo.demo_campaigns(100_000, seed=7); about two creatives each, so the 100k
  index has about 200k rows), in two markets. "selective" (stage `eligibility`, the one the
  target is about): all but about 256 campaigns target another country, so a request finds
  the eligible few hundred, as in a real exchange. "broad" (stage `eligibility_broad`):
  the demo set as generated, where 60% of campaigns are untargeted and a third of the
  index qualifies (tens of thousands of candidates at 100k: a stress case, not a
  market). One typical request: site category IAB1, country USA, devicetype 4, one
  300x250 banner, bcat [IAB25]. Timed: `index.candidates(request, imp)`
  (the Numba kernel kernels.eligibility.eligible_rows, as the auction calls it) against
  kernels.eligibility.eligible_oracle on the same arrays; both return the same rows.
- Rank/price: 256 and 1024 candidates with random aCPMs (log-normal around $3.50),
  pacing multipliers, predicted seconds, budgets and tie keys, a floor, second price.
  kernels.pricing.rank_and_price against rank_and_price_oracle.
- CUDA, when a GPU is there: I imps (1, 8 and 256) x the 100k-campaign index in one
  kernels.cuda.auction_batch call (eligibility, per-campaign dedupe, rank, price), with
  the predicted seconds [I, N] already on the GPU (`cuda_us`: per imp) and uploaded from
  the host with the batch (`cuda_h2d_us`); `numba_us` is the CPU path per imp for the
  same imps (candidates + gather + rank_and_price). Winners and prices must match it.

Timing: one CPU (os.sched_setaffinity to --cpu), warm-up first, perf_counter_ns around
each call, p50 (and p99) over many calls. Targets on one core: eligibility over 100k
campaigns <= 100 µs p50; rank/price over 1024 candidates <= 10 µs p50; each at least
3x faster than its numpy oracle. The last line is one JSON object:

    {"bench": "kernels", "results": [{"stage": "eligibility", "n": 1000, "numba_us": ...,
     "numpy_us": ..., "speedup": ...}, ..., {"stage": "rank_price", "n": 256, ...}, ...],
     "skipped": {...}, "targets": {...}}
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from exchange.demo import demo_campaigns
from exchange.index import CampaignIndex, size_key
from exchange.state import CampaignState
from kernels import cuda as kc
from kernels.eligibility import eligible_oracle
from kernels.pricing import SECOND_PRICE, rank_and_price, rank_and_price_oracle

CAMPAIGNS = (1_000, 10_000, 100_000)
CANDIDATES = (256, 1024)
CUDA_IMPS = (1, 8, 256)
TARGETS = {"eligibility_100k_p50_us": 100.0, "rank_price_1024_p50_us": 10.0, "min_speedup": 3.0}


def timed(fn: Callable[[], object], iterations: int, warmup: int = 20) -> dict[str, float]:
    """p50 / p99 of `fn()` in µs."""
    for _ in range(warmup):
        fn()
    samples = np.empty(iterations, np.int64)
    clock = time.perf_counter_ns
    for k in range(iterations):
        t0 = clock()
        fn()
        samples[k] = clock() - t0
    return {
        "p50": float(np.percentile(samples, 50)) / 1e3,
        "p99": float(np.percentile(samples, 99)) / 1e3,
    }


def build_index(campaigns) -> CampaignIndex:
    index = CampaignIndex(CampaignState(capacity=len(campaigns)), capacity=2 * len(campaigns))
    for c in campaigns:
        index.upsert(c)
    return index


def typical_filters(index: CampaignIndex):
    return (
        index.request_filter(["IAB1"], "USA", 4, ["IAB25"], [], []),
        index.imp_filter([size_key(300, 250)], None, False),
    )


def oracle_call(index: CampaignIndex, r, imp) -> Callable[[], np.ndarray]:
    st = index.state

    def call() -> np.ndarray:
        return eligible_oracle(
            index.n, index.active, index.campaign, index.slot, index.kind, index.size,
            index.mime, index.duration, index.devices, index.any_cat, index.target_cat,
            index.any_country, index.target_country, index.creative_cat, st.budget, st.spent,
            r.categories, r.country_word, r.country_bit, r.devicetype, r.bcat, r.blocked,
            imp.banner_sizes, imp.video_mimes, imp.min_duration, imp.max_duration, imp.native,
        )  # fmt: skip

    return call


def selective(campaigns: list, eligible: int = 256) -> list:
    """All but about `eligible` campaigns moved to another country's targeting."""
    every = max(1, len(campaigns) // eligible)
    return [
        c if i % every == 0 else replace(c, targeting=replace(c.targeting, country=["GBR"]))
        for i, c in enumerate(campaigns)
    ]


def bench_eligibility(
    index: CampaignIndex, campaigns: int, quick: bool, stage: str = "eligibility"
) -> dict:
    r, imp = typical_filters(index)
    numba_rows = index.candidates(r, imp)
    numpy_rows = oracle_call(index, r, imp)()
    if not np.array_equal(numba_rows, numpy_rows):
        raise SystemExit(f"eligibility over {campaigns} campaigns: Numba and numpy disagree")
    scale = 10 if quick else 1
    iters = max(50, {1_000: 20_000, 10_000: 5_000}.get(campaigns, 2_000) // scale)
    numba = timed(lambda: index.candidates(r, imp), iters)
    numpy = timed(oracle_call(index, r, imp), max(20, iters // 20))
    return {
        "stage": stage, "n": campaigns, "rows": index.n, "candidates": len(numba_rows),
        "numba_us": round(numba["p50"], 2), "numpy_us": round(numpy["p50"], 2),
        "speedup": round(numpy["p50"] / numba["p50"], 1), "numba_p99_us": round(numba["p99"], 2),
    }  # fmt: skip


def pricing_inputs(c: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    acpm = (np.round(rng.lognormal(np.log(3500), 0.55, c)) * 1000).astype(np.int64)
    multiplier = rng.uniform(0.6, 1.2, c)
    seconds = rng.gamma(2.0, 3.0, c).astype(np.float32)
    remaining = rng.integers(0, 5_000_000_000, c)
    tie = rng.integers(0, 2**32, c).astype(np.uint32)
    return acpm, multiplier, seconds, remaining, tie, 2_000_000, SECOND_PRICE, 10_000


def bench_rank_price(c: int, quick: bool) -> dict:
    args = pricing_inputs(c)
    got = tuple(int(x) for x in rank_and_price(*args))
    if got != rank_and_price_oracle(*args):
        raise SystemExit(f"rank/price over {c} candidates: Numba and numpy disagree")
    iters = 2_000 if quick else 20_000
    numba = timed(lambda: rank_and_price(*args), iters, warmup=200)
    numpy = timed(lambda: rank_and_price_oracle(*args), max(200, iters // 10))
    return {
        "stage": "rank_price", "n": c, "numba_us": round(numba["p50"], 2),
        "numpy_us": round(numpy["p50"], 2), "speedup": round(numpy["p50"] / numba["p50"], 1),
        "numba_p99_us": round(numba["p99"], 2),
    }  # fmt: skip


def batch_filters(index: CampaignIndex, imps: int, seed: int = 2):
    """`imps` varied requests: categories, countries, devices, sizes, some video and native."""
    rng = np.random.default_rng(seed)
    cats = ["IAB1", "IAB2", "IAB9-30", "IAB12", "IAB19", "IAB1-6"]
    countries = ["USA", "GBR", "DEU", "JPN", "BRA"]
    sizes = [size_key(300, 250), size_key(728, 90), size_key(320, 50), size_key(300, 600)]
    out = []
    for _ in range(imps):
        r = index.request_filter(
            [str(rng.choice(cats))], str(rng.choice(countries)), int(rng.integers(1, 8)),
            ["IAB25"], [], [],
        )  # fmt: skip
        k = int(rng.integers(1, 3))
        out.append((r, index.imp_filter([int(s) for s in rng.choice(sizes, k)], None, False)))
    return out


def bench_cuda(index: CampaignIndex, campaigns: int, imps: int, quick: bool) -> dict:
    from numba import cuda

    arrays = kc.IndexArrays.from_index(index)
    device_index = kc.DeviceIndex(arrays)
    filters = batch_filters(index, imps)
    requests = kc.RequestBatch.from_filters(filters, arrays.n_entries)
    rng = np.random.default_rng(3)
    n = arrays.n_rows
    seconds = rng.gamma(2.0, 3.0, (imps, n)).astype(np.float32)
    floors = np.full(imps, 1_000_000, np.int64)
    seconds_d = cuda.to_device(seconds)

    def on_gpu():
        return kc.auction_batch(device_index, requests, seconds_d, floors, SECOND_PRICE, 10_000)

    remaining = index.state.limit - index.state.spent

    def on_cpu():
        winners = np.full(imps, -1, np.int64)
        prices = np.zeros(imps, np.int64)
        for j, (r, f) in enumerate(filters):
            rows = index.candidates(r, f)
            slots = index.slot[rows]
            w, prices[j], _ = rank_and_price(
                index.acpm[rows], index.state.multiplier[slots], seconds[j, rows],
                remaining[slots], index.tie[rows], int(floors[j]), SECOND_PRICE, 10_000,
            )  # fmt: skip
            winners[j] = rows[w] if w >= 0 else -1
        return winners, prices

    want_winners, want_prices = on_cpu()
    got = on_gpu()
    iters = 5 if quick else 30
    gpu = timed(on_gpu, iters, warmup=3)
    gpu_h2d = timed(
        lambda: kc.auction_batch(device_index, requests, seconds, floors, SECOND_PRICE, 10_000),
        max(3, iters // 3),
        warmup=1,
    )
    cpu = timed(on_cpu, max(3, iters // 3), warmup=1)
    name = cuda.get_current_device().name
    return {
        "stage": "cuda_batch", "n": campaigns, "imps": imps, "rows": n,
        "cuda_us": round(gpu["p50"] / imps, 2), "cuda_batch_us": round(gpu["p50"], 1),
        "cuda_h2d_us": round(gpu_h2d["p50"] / imps, 2), "numba_us": round(cpu["p50"] / imps, 2),
        "speedup": round(cpu["p50"] / gpu["p50"], 1),
        "matches_cpu": bool(
            np.array_equal(got.winners, want_winners) and np.array_equal(got.prices, want_prices)
        ),
        "device": name.decode() if isinstance(name, bytes) else str(name),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", type=int, default=0, help="pin to this CPU (default 0)")
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args(argv)
    try:
        os.sched_setaffinity(0, {args.cpu})
    except (AttributeError, OSError) as e:
        print(f"could not pin to CPU {args.cpu}: {e}")

    t0 = time.perf_counter()
    campaigns = demo_campaigns(max(CAMPAIGNS), seed=7)
    print(f"generated {len(campaigns)} demo campaigns in {time.perf_counter() - t0:.1f} s")
    results: list[dict] = []
    skipped: dict[str, str] = {}
    index = None
    for n in CAMPAIGNS:
        for stage, market in (("eligibility", selective), ("eligibility_broad", list)):
            t0 = time.perf_counter()
            index = build_index(market(campaigns[:n]))
            built = time.perf_counter() - t0
            row = bench_eligibility(index, n, args.quick, stage)
            print(f"{stage} {n:>7} campaigns ({index.n} rows, built in {built:.1f} s): {row}")
            results.append(row)
    for c in CANDIDATES:
        row = bench_rank_price(c, args.quick)
        print(f"rank/price {c:>5} candidates: {row}")
        results.append(row)

    if kc.gpu_available():
        kc.warm_up()
        for imps in CUDA_IMPS:
            row = bench_cuda(index, max(CAMPAIGNS), imps, args.quick)
            print(f"cuda {imps} imps x {max(CAMPAIGNS)} campaigns: {row}")
            results.append(row)
    else:
        reason = "simulator only" if kc.cuda_available() else "no CUDA GPU or driver"
        skipped["cuda_batch"] = f"{reason}: kernels.cuda.gpu_available() is False"

    by = {(r["stage"], r["n"]): r for r in results}
    met = {
        "eligibility_100k": by[("eligibility", 100_000)]["numba_us"]
        <= TARGETS["eligibility_100k_p50_us"],
        "rank_price_1024": by[("rank_price", 1024)]["numba_us"]
        <= TARGETS["rank_price_1024_p50_us"],
        "speedups": all(
            r["speedup"] >= TARGETS["min_speedup"]
            for r in results
            if r["stage"] in ("eligibility", "eligibility_broad", "rank_price")
        ),
    }
    print(
        json.dumps(
            {
                "bench": "kernels",
                "results": results,
                "skipped": skipped,
                "targets": TARGETS,
                "met": met,
            }
        )
    )


if __name__ == "__main__":
    main()

"""In-process auction latency: one imp, 64 / 256 / 1024 eligible candidates.

    python -m bench.auction [--scorer onnxruntime-cpu|baseline] [--model DIR]
                            [--iterations 3000] [--large 100000] [--cpu 0]

Workload: one banner imp (300x250, floor $0.50, second price) with a 50-item
history, against an index of 4 x C campaigns of which C fit it (the others are
other sizes or targeted elsewhere), and last 256 that fit among 100k. Each
iteration is the whole in-process hot path: protobuf bytes in -> decode ->
validate -> eligibility -> features -> score -> rank + price -> reserve ->
trade frame written for the settlement process -> protobuf bytes out. The
scorer is the shipped attention model (or `--model DIR`) in ONNX Runtime, one
thread, or the baseline predictor with `--scorer baseline`. Every request has a
new id (a new trade). Timed with perf_counter_ns per call after a warm-up,
pinned to one CPU. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson

from exchange import frames
from exchange.auction import Auction, AuctionSettings
from exchange.book import CampaignBook
from exchange.campaigns import Campaign, Creative, CreativeKind, Targeting
from exchange.currency import RateTable
from exchange.decode_proto import decode_proto
from exchange.encode import to_proto
from exchange.features import history_of, placement_of, scoring_batch
from exchange.settlement import Trade
from exchange.signing import NoticeSigner, new_secret
from exchange.state import CampaignState
from exchange.store import encode_trade
from exchange.validate import validate
from inference.baseline import BaselineScorer
from inference.runtime import DEFAULT_MODEL, describe, load_scorer, warm_up_scorer
from inference.scorer import Scorer
from kernels import pricing
from protos.attnx.v1 import openrtb_pb2

SIZES = (64, 256, 1024)
RATES = RateTable({"USD": 1.0, "EUR": 0.92})


def campaigns_for(candidates: int, total: int | None = None, seed: int = 1) -> list[Campaign]:
    """`candidates` campaigns that fit the imp among `total` (default 4x as many)."""
    rng = np.random.default_rng(seed)
    total = total or 4 * candidates
    every = total // candidates
    out = []
    for i in range(total):
        fits = i % every == 0 and i // every < candidates
        size = (300, 250) if fits else [(728, 90), (160, 600), (320, 50)][i % 3]
        targeting = Targeting() if fits else Targeting(country=["GBR"])
        out.append(
            Campaign(
                id=f"c{i:06d}",
                advertiser=f"adv{i % 97}",
                adomain=[f"adv{i % 97}.example"],
                seat=f"seat{i % 97}",
                creatives=[
                    Creative(f"c{i}-b", CreativeKind.BANNER, *size, adm="<div/>", cat=["IAB3"])
                ],
                acpm_micros=int(rng.integers(1_000, 12_000)) * 1_000,
                daily_budget_micros=10**12,
                targeting=targeting,
            )
        )
    return out


def request_bytes(i: int) -> bytes:
    req = openrtb_pb2.BidRequest(id=f"bench-{i}", at=2, tmax=150, cur=["USD"], bcat=["IAB25"])
    imp = req.imp.add(id="1", bidfloor=0.5, bidfloorcur="USD")
    imp.banner.w, imp.banner.h, imp.banner.pos = 300, 250, 1
    req.site.id, req.site.domain = "s1", "news.example"
    req.site.cat.append("IAB12")
    req.device.devicetype = 4
    req.device.geo.country = "USA"
    req.user.id = "u1"
    req.user.ext.attention.history.extend(range(1, 51))
    return req.SerializeToString()


def percentiles(samples_ns: list[int]) -> dict[str, float]:
    us = np.asarray(samples_ns, dtype=np.float64) / 1e3
    return {
        "p50_us": round(float(np.percentile(us, 50)), 1),
        "p99_us": round(float(np.percentile(us, 99)), 1),
        "mean_us": round(float(us.mean()), 1),
    }


def make_scorer(name: str, model: Path = DEFAULT_MODEL) -> Scorer:
    if name == "baseline":
        return BaselineScorer()
    scorer = load_scorer(model, name)
    warm_up_scorer(scorer, AuctionSettings().history_len)
    return scorer


class FrameSink:
    """Where this bench's trades go, as in the server: encoded and buffered by the auction,
    then written (after the call, as the server writes once per loop turn) to a pipe
    that another process drains, as the server's go to its settlement process's socket
    (bench.settlement measures that pipeline itself)."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        self._fd = self.process.stdin.fileno()
        self._outbox: list[bytes] = []

    def __call__(self, trade: Trade) -> None:
        self._outbox.append(frames.frame(frames.TRADE, encode_trade(trade)))

    def flush(self) -> None:
        if self._outbox:
            os.write(self._fd, b"".join(self._outbox))
            self._outbox.clear()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def build(
    candidates: int,
    scorer: Scorer,
    record_trade: Callable[[Trade], object],
    total: int | None = None,
) -> Auction:
    book = CampaignBook(CampaignState(), campaigns_for(candidates, total))
    auction = Auction(
        book,
        scorer,
        RATES,
        AuctionSettings(),
        record_trade=record_trade,
        sign=NoticeSigner(new_secret()).sign,
    )
    warm = openrtb_pb2.BidRequest.FromString(request_bytes(-1))
    warm.test = 1  # loads the compiled kernels; buys nothing
    auction.run(decode_proto(warm), time.perf_counter_ns())
    return auction


def end_to_end(
    auction: Auction, iterations: int, warmup: int, between: Callable[[], object] = lambda: None
) -> list[int]:
    """Per-call ns; `between` runs after each timed call (the server's next loop turn)."""
    samples = []
    for i in range(iterations + warmup):
        ns = timed_call(auction, request_bytes(i))
        if i >= warmup:
            samples.append(ns)
        between()
    return samples


def timed_call(auction: Auction, body: bytes) -> int:
    """One request through the hot path, protobuf bytes in to bytes out: its ns."""
    t0 = time.perf_counter_ns()
    req = decode_proto(openrtb_pb2.BidRequest.FromString(body))
    result = auction.run(req, t0)
    to_proto(result).SerializeToString()
    t1 = time.perf_counter_ns()
    if not result.bids:
        raise SystemExit("benchmark request got no bid; the workload is wrong")
    return t1 - t0


def stages(auction: Auction, iterations: int) -> dict[str, float]:
    """p50 per stage, each timed on its own (their sum is not the end-to-end p50)."""
    body = request_bytes(0)
    index, state = auction.book.index, auction.book.state
    req = decode_proto(openrtb_pb2.BidRequest.FromString(body))
    imp = req.imp[0]

    def eligibility():
        r = index.request_filter(req.content_categories(), req.country(), 4, req.bcat, [], [])
        return index.candidates(r, auction._imp_filter(index, imp))

    rows = eligibility()
    history, n = history_of(req, None, 50)
    placement = placement_of(req, imp, 12)
    batch = scoring_batch(index, rows, placement, history, n)
    scores = auction.scorer.score(batch)
    result = auction.run(
        decode_proto(openrtb_pb2.BidRequest.FromString(request_bytes(1))), time.perf_counter_ns()
    )

    def rank_price():
        pricing.rank_and_price_rows(
            rows, index.acpm, index.slot, index.tie, state.multiplier, state.limit,
            state.spent, scores.seconds, 500_000, 2, 10_000,
        )  # fmt: skip

    work = {
        "decode": lambda: decode_proto(openrtb_pb2.BidRequest.FromString(body)),
        "validate": lambda: validate(req, RATES, 64),
        "eligibility": eligibility,
        "features": lambda: scoring_batch(index, rows, placement, *history_of(req, None, 50)),
        "score": lambda: auction.scorer.score(batch),
        "rank_price": rank_price,
        "encode": lambda: to_proto(result).SerializeToString(),
    }
    out = {}
    for name, fn in work.items():
        samples = []
        for _ in range(iterations):
            t0 = time.perf_counter_ns()
            fn()
            samples.append(time.perf_counter_ns() - t0)
        out[name] = round(float(np.percentile(samples, 50)) / 1e3, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--cpu", type=int, default=0, help="CPU to pin to (-1: no pinning)")
    parser.add_argument("--scorer", default="onnxruntime-cpu", help="onnxruntime-cpu | baseline")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model directory")
    parser.add_argument("--large", type=int, default=100_000, help="campaigns in the large case")
    args = parser.parse_args()
    if args.cpu >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})

    scorer = make_scorer(args.scorer, args.model)
    results = []
    cases = [(c, 4 * c) for c in SIZES] + [(256, args.large)]
    sink = FrameSink()
    for candidates, total in cases:
        auction = build(candidates, scorer, sink, total)
        figures = percentiles(end_to_end(auction, args.iterations, args.warmup, sink.flush))
        row = {"candidates": candidates, "campaigns": total, **figures}
        if (candidates, total) == (256, 1024):
            row["stage_p50_us"] = stages(auction, args.iterations)
        results.append(row)
        print(
            f"{candidates:>5} candidates of {total:>6} campaigns: p50 {figures['p50_us']:>7.1f} µs"
            f"   p99 {figures['p99_us']:>7.1f} µs",
            flush=True,
        )
    print(
        orjson.dumps(
            {
                "bench": "auction",
                "scorer": describe(scorer),
                "workload": "1 banner imp; C eligible of 4C (or 100k) indexed campaigns; L=50; "
                "protobuf in/out; 1 CPU",
                "results": results,
            }
        ).decode()
    )
    sink.close()


if __name__ == "__main__":
    main()

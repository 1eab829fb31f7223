"""The bid path's own latency, per stage, and its outcomes, for `GET /metrics`.

Load generators report whole milliseconds and include their own queueing; the
server's histograms are the sub-millisecond truth. Each stage of a bid request is
timed with `perf_counter_ns` and counted in fixed buckets (a bisect and an
increment: well under a microsecond per stage, no allocation):

    decode    bytes -> BidRequest (protobuf or OpenRTB JSON), from arrival
    user      the user store's read (frequency caps, history)
    auction   validate, eligibility, features, score, rank and price, reserve
    durable   waiting for the journal's sync of the trades (0 for a no-bid)
    encode    AuctionResult -> response bytes
    total     arrival -> response ready (what the server adds to a round trip)

Rendered in the Prometheus text format (0.0.4). Each process counts its own
requests: with `serve --workers N` a scrape reaches whichever worker the kernel
picks, so the figures are one worker's (labelled with its pid).
"""

from __future__ import annotations

import gc
import os
import re
from bisect import bisect_left
from collections import Counter

STAGES = ("decode", "user", "auction", "durable", "encode", "total")
OUTCOMES = ("bid", "nobid", "invalid", "unavailable", "error")
# Upper bounds in seconds: fine below a few ms, where the hot path lives.
BUCKETS_S = (
    25e-6, 50e-6, 100e-6, 200e-6, 300e-6, 400e-6, 500e-6, 750e-6,
    1e-3, 1.5e-3, 2e-3, 3e-3, 5e-3, 7.5e-3, 10e-3, 20e-3, 50e-3, 100e-3, 250e-3, 1.0,
)  # fmt: skip
_BOUNDS_NS = [int(b * 1e9) for b in BUCKETS_S]


class Histogram:
    """Counts per bucket (the last one: above every bound), and the sum."""

    def __init__(self) -> None:
        self.counts = [0] * (len(_BOUNDS_NS) + 1)
        self.sum_ns = 0

    def observe_ns(self, ns: int) -> None:
        self.counts[bisect_left(_BOUNDS_NS, ns)] += 1
        self.sum_ns += ns

    def since(self, earlier: Histogram) -> Histogram:
        """What was counted between `earlier` and this one."""
        h = Histogram()
        h.counts = [a - b for a, b in zip(self.counts, earlier.counts, strict=True)]
        h.sum_ns = self.sum_ns - earlier.sum_ns
        return h

    @property
    def count(self) -> int:
        return sum(self.counts)

    def quantile(self, q: float) -> float:
        """Seconds at quantile q, interpolated within its bucket (as Prometheus does)."""
        total = self.count
        if total == 0:
            return 0.0
        rank, seen = q * total, 0
        for i, n in enumerate(self.counts):
            if seen + n >= rank and n:
                lower = BUCKETS_S[i - 1] if i else 0.0
                upper = BUCKETS_S[i] if i < len(BUCKETS_S) else BUCKETS_S[-1]
                return lower + (upper - lower) * (rank - seen) / n
            seen += n
        return BUCKETS_S[-1]


class BidMetrics:
    def __init__(self) -> None:
        self.stages = {stage: Histogram() for stage in STAGES}
        self.outcomes: Counter[str] = Counter()

    def answered(
        self, result_has_bids: bool, received_ns: int, encoding_ns: int, done_ns: int
    ) -> None:
        """A response is ready: its encoding, its whole time in the server, its outcome."""
        self.stages["encode"].observe_ns(done_ns - encoding_ns)
        self.stages["total"].observe_ns(done_ns - received_ns)
        self.outcomes["bid" if result_has_bids else "nobid"] += 1

    def since(self, earlier: BidMetrics) -> BidMetrics:
        """What was counted between two scrapes of one process."""
        m = BidMetrics()
        m.stages = {s: h.since(earlier.stages[s]) for s, h in self.stages.items()}
        m.outcomes = Counter({o: self.outcomes[o] - earlier.outcomes[o] for o in OUTCOMES})
        return m

    @classmethod
    def parse(cls, text: str) -> BidMetrics:
        """Read back what `render` wrote (a load test's or a benchmark's scrape)."""
        m = cls()
        for stage, h in m.stages.items():
            bucket = rf'stage_seconds_bucket\{{stage="{stage}",pid="\d+",le="[^"]+"\}} (\d+)'
            cumulative = [int(n) for n in re.findall(bucket, text)]
            if len(cumulative) == len(h.counts):  # else: not in this scrape, left at zero
                h.counts = [b - a for a, b in zip([0, *cumulative], cumulative, strict=False)]
            if total := re.search(rf'seconds_sum\{{stage="{stage}",pid="\d+"\}} (\S+)', text):
                h.sum_ns = round(float(total.group(1)) * 1e9)
        for outcome, n in re.findall(r'requests_total\{outcome="(\w+)",pid="\d+"\} (\d+)', text):
            m.outcomes[outcome] = int(n)
        return m

    def render(self) -> str:
        """The Prometheus text exposition of every histogram and counter."""
        pid = os.getpid()
        lines = [
            "# HELP attnx_bid_stage_seconds Time a bid request spent in each stage.",
            "# TYPE attnx_bid_stage_seconds histogram",
        ]
        for stage, h in self.stages.items():
            labels = f'stage="{stage}",pid="{pid}"'
            cumulative = 0
            for bound, n in zip([*BUCKETS_S, "+Inf"], h.counts, strict=True):
                cumulative += n
                le = bound if bound == "+Inf" else f"{bound:g}"
                lines.append(f'attnx_bid_stage_seconds_bucket{{{labels},le="{le}"}} {cumulative}')
            lines.append(f"attnx_bid_stage_seconds_sum{{{labels}}} {h.sum_ns / 1e9:.9f}")
            lines.append(f"attnx_bid_stage_seconds_count{{{labels}}} {cumulative}")
        lines += [
            "# HELP attnx_bid_requests_total Bid requests answered, by outcome.",
            "# TYPE attnx_bid_requests_total counter",
        ]
        lines += [
            f'attnx_bid_requests_total{{outcome="{o}",pid="{pid}"}} {self.outcomes[o]}'
            for o in OUTCOMES
        ]
        lines += [  # a full collection pauses every request in flight: see [server] gc_freeze
            "# HELP attnx_gc_collections_total Cyclic garbage collections, by generation.",
            "# TYPE attnx_gc_collections_total counter",
        ]
        lines += [
            f'attnx_gc_collections_total{{generation="{g}",pid="{pid}"}} {stats["collections"]}'
            for g, stats in enumerate(gc.get_stats())
        ]
        lines += [
            "# HELP attnx_gc_frozen_objects Objects the collector no longer walks (gc.freeze).",
            "# TYPE attnx_gc_frozen_objects gauge",
            f'attnx_gc_frozen_objects{{pid="{pid}"}} {gc.get_freeze_count()}',
        ]
        return "\n".join(lines) + "\n"

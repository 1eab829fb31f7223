"""The bid path's own latency histograms and outcome counters (`GET /metrics`)."""

from __future__ import annotations

import gc
import re

import grpc
import httpx
import orjson
import pytest

from exchange.example import example_request
from exchange.metrics import BUCKETS_S, BidMetrics, Histogram
from tests.test_server_grpc import TIMEOUT, _banner_w, bid_request, exchange_stub


def test_a_histogram_counts_in_buckets_and_interpolates_quantiles():
    h = Histogram()
    for _ in range(90):
        h.observe_ns(150_000)  # 150 µs: the (100, 200] µs bucket
    for _ in range(10):
        h.observe_ns(4_000_000)  # 4 ms: (3, 5] ms
    h.observe_ns(5_000_000_000)  # above every bound
    assert h.count == 101 and h.sum_ns == 90 * 150_000 + 10 * 4_000_000 + 5_000_000_000
    assert 100e-6 < h.quantile(0.5) <= 200e-6
    assert 3e-3 < h.quantile(0.95) <= 5e-3
    assert h.quantile(1.0) == BUCKETS_S[-1]
    assert Histogram().quantile(0.5) == 0.0


def test_the_exposition_is_cumulative_and_names_every_stage_and_outcome():
    m = BidMetrics()
    m.stages["auction"].observe_ns(300_000)
    m.answered(True, 0, 900_000, 1_000_000)
    text = m.render()
    assert "# TYPE attnx_bid_stage_seconds histogram" in text
    buckets = re.findall(r'stage="total",pid="\d+",le="([^"]+)"\} (\d+)', text)
    assert buckets[-1] == ("+Inf", "1") and [int(n) for _, n in buckets] == sorted(
        int(n) for _, n in buckets
    )
    assert re.search(r'attnx_bid_requests_total\{outcome="bid",pid="\d+"\} 1', text)
    for stage in ("decode", "user", "auction", "durable", "encode", "total"):
        assert f'stage="{stage}"' in text


def test_the_exposition_counts_full_garbage_collections():
    def full_collections() -> int:
        text = BidMetrics().render()
        return int(
            re.search(r'attnx_gc_collections_total\{generation="2",pid="\d+"\} (\d+)', text)[1]
        )

    before = full_collections()
    gc.collect()
    assert full_collections() == before + 1


def scrape(base: str) -> dict[str, float]:
    text = httpx.get(f"{base}/metrics", timeout=TIMEOUT).text
    return {
        re.sub(r',?pid="\d+"', "", name).removesuffix("{}"): float(value)
        for name, value in re.findall(r"^(attnx_\S+) (\S+)$", text, re.M)
    }


def test_a_running_server_counts_its_bids_per_stage_and_outcome(start_server):
    server = start_server()
    with server.channel() as channel:
        bidder = exchange_stub(channel)
        for i in range(5):
            bidder.Bid(bid_request(lambda b, i=i: b.update(id=f"m-{i}")), timeout=TIMEOUT)
        for _ in range(2):
            with pytest.raises(grpc.RpcError):
                bidder.Bid(bid_request(_banner_w), timeout=TIMEOUT)
    body = orjson.dumps(example_request("m-http"))
    assert httpx.post(f"{server.http_base}/openrtb2/auction", content=body).status_code == 200
    got = scrape(server.http_base)
    assert got['attnx_bid_requests_total{outcome="bid"}'] == 6
    assert got['attnx_bid_requests_total{outcome="invalid"}'] == 2
    assert got['attnx_bid_stage_seconds_count{stage="total"}'] == 6
    assert got['attnx_bid_stage_seconds_count{stage="durable"}'] == 6
    assert got['attnx_bid_stage_seconds_count{stage="decode"}'] == 8  # invalid ones too
    total = got['attnx_bid_stage_seconds_sum{stage="total"}']
    parts = sum(got[f'attnx_bid_stage_seconds_sum{{stage="{s}"}}'] for s in ("auction", "durable"))
    assert 0 < parts < total  # the stages fit inside the whole
    assert got["attnx_gc_frozen_objects"] > 10_000  # start-up's objects: [server] gc_freeze
    server.assert_graceful_exit()


def test_gc_freeze_can_be_turned_off(start_server, tmp_path):
    config = tmp_path / "attnx.toml"
    config.write_text("[server]\ngc_freeze = false\n")
    server = start_server("--config", str(config))
    assert scrape(server.http_base)["attnx_gc_frozen_objects"] == 0
    server.assert_graceful_exit()


def test_a_scrape_reads_back_as_rendered_and_two_scrapes_subtract():
    m = BidMetrics()
    m.stages["total"].observe_ns(150_000)
    m.stages["auction"].observe_ns(2_000_000_000)  # above every bound
    m.outcomes["invalid"] += 2
    earlier = BidMetrics.parse(m.render())
    assert earlier.stages["total"].counts == m.stages["total"].counts
    assert earlier.stages["auction"].counts == m.stages["auction"].counts
    assert earlier.stages["total"].sum_ns == 150_000 and earlier.outcomes["invalid"] == 2
    m.stages["total"].observe_ns(4_000_000)
    m.answered(True, 0, 0, 1_000)
    later = BidMetrics.parse(m.render()).since(earlier)
    assert later.stages["total"].count == 2 and later.stages["auction"].count == 0
    assert later.outcomes["bid"] == 1 and later.outcomes["invalid"] == 0

"""The CPU kernels against the pricing rules and against their numpy oracles."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.campaigns import Campaign, Creative, CreativeKind, Targeting
from exchange.index import CampaignIndex, size_key
from exchange.state import CampaignState
from kernels.eligibility import eligible_oracle
from kernels.pricing import (
    FIRST_PRICE,
    SECOND_PRICE,
    rank_and_price,
    rank_and_price_batch,
    rank_and_price_oracle,
    rank_and_price_rows,
    top_k,
    top_k_oracle,
)
from kernels.shortlist import shortlist, shortlist_oracle

INC = 10_000
RICH = 10**12


def price(bids, floor=0, at=SECOND_PRICE, remaining=None, tie=None):
    """The kernel on bids given directly (aCPM = bid, multiplier 1, 1 second)."""
    bids = np.asarray(bids, dtype=np.int64)
    n = len(bids)
    remaining = np.full(n, RICH, np.int64) if remaining is None else np.asarray(remaining)
    tie = np.arange(n, dtype=np.uint32) if tie is None else np.asarray(tie, np.uint32)
    return rank_and_price(bids, np.ones(n), np.ones(n, np.float32), remaining, tie, floor, at, INC)


# -- the rules ---------------------------------------------------------------


def test_first_price_pays_own_bid():
    assert price([1_000_000, 3_000_000, 2_000_000], at=FIRST_PRICE)[:2] == (1, 3_000_000)


def test_second_price_pays_runner_up_plus_increment_never_above_own_bid():
    assert price([1_000_000, 3_000_000, 2_000_000])[:2] == (1, 2_000_000 + INC)
    assert price([3_000_000, 2_995_000])[1] == 3_000_000


def test_floor_sets_the_price_and_below_floor_never_wins():
    assert price([3_000_000, 1_000_000], floor=2_500_000)[1] == 2_500_000 + INC
    assert price([3_000_000], floor=0)[1] == INC
    assert price([999_999, 500_000], floor=1_000_000)[0] == -1
    assert price([999_999, 1_000_000], floor=1_000_000)[:2] == (1, 1_000_000)


def test_ties_go_to_the_lower_tie_key():
    assert price([5_000_000, 5_000_000, 1_000_000], tie=[9, 3, 1])[:2] == (1, 5_000_000)


def test_a_campaign_that_cannot_pay_its_bid_neither_wins_nor_sets_the_price():
    out = price([9_000_000, 3_000_000, 2_000_000], remaining=[8_999, RICH, RICH])
    assert out[:2] == (1, 2_000_000 + INC)


def test_empty_zero_and_broken_predictions_bid_nothing():
    assert price([])[0] == -1
    assert price([0, 0])[0] == -1
    n = 3
    seconds = np.array([np.nan, np.inf, 2.0], np.float32)
    out = rank_and_price(
        np.full(n, 4_000_000),
        np.ones(n),
        seconds,
        np.full(n, RICH),
        np.arange(n, dtype=np.uint32),
        0,
        FIRST_PRICE,
        INC,
    )
    assert out[:2] == (2, 8_000_000)


# -- against the oracle --------------------------------------------------------

candidates = st.integers(0, 40).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 20_000_000), min_size=n, max_size=n),  # aCPM micros
        st.lists(st.sampled_from([0.0, 0.5, 1.0, 1.5]), min_size=n, max_size=n),
        st.lists(
            st.sampled_from([0.0, 0.25, 1.0, 2.0, 7.5, np.nan, np.inf, -1.0]),
            min_size=n,
            max_size=n,
        ),
        st.lists(st.sampled_from([0, 1_000, 50_000, RICH]), min_size=n, max_size=n),
        st.lists(st.integers(0, 5), min_size=n, max_size=n),  # few tie keys: many ties
    )
)


def arrays(c):
    acpm, mult, secs, remaining, tie = c
    return (
        np.array(acpm, np.int64),
        np.array(mult, np.float64),
        np.array(secs, np.float32),
        np.array(remaining, np.int64),
        np.array(tie, np.uint32),
    )


@settings(max_examples=300, deadline=None)
@given(candidates, st.sampled_from([0, 1_000_000, 10_000_000]), st.sampled_from([1, 2]))
def test_rank_and_price_matches_the_oracle(c, floor, at):
    a = arrays(c)
    assert rank_and_price(*a, floor, at, INC) == rank_and_price_oracle(*a, floor, at, INC)


@settings(max_examples=200, deadline=None)
@given(candidates, st.sampled_from([0, 1_000_000]), st.integers(1, 6))
def test_top_k_matches_the_oracle(c, floor, k):
    a = arrays(c)
    out = np.empty(k, np.int64)
    n = top_k(*a, floor, out)
    assert out[:n].tolist() == top_k_oracle(*a, floor, k).tolist()


@settings(max_examples=200, deadline=None)
@given(candidates, st.data())
def test_the_row_form_gathers_exactly_what_the_plain_form_is_given(c, data):
    """Candidates as index rows (several rows per campaign slot, in any order): the
    in-kernel gathers must hand rank_and_price the same arrays numpy would."""
    acpm, mult, secs, remaining, tie = arrays(c)
    n = len(acpm)
    rows = np.array(data.draw(st.permutations(range(n))), np.int32)  # row r is candidate r
    slot = np.arange(n, dtype=np.int32)[::-1].copy()  # row r's campaign slot
    budget = np.full(n, RICH, np.int64)
    spent = budget.copy()
    spent[slot] = RICH - remaining
    multiplier = np.empty(n)
    multiplier[slot] = mult
    got = rank_and_price_rows(rows, acpm, slot, tie, multiplier, budget, spent, secs[rows],
                              1_000_000, SECOND_PRICE, INC)  # fmt: skip
    plain = (acpm[rows], mult[rows], secs[rows], remaining[rows], tie[rows])
    assert got == rank_and_price(*plain, 1_000_000, SECOND_PRICE, INC)


@settings(max_examples=100, deadline=None)
@given(st.lists(candidates, min_size=1, max_size=5))
def test_the_batched_form_equals_one_call_per_imp(imps):
    parts = [arrays(c) for c in imps]
    offsets = np.cumsum([0] + [len(p[0]) for p in parts]).astype(np.int64)
    cat = [np.concatenate([p[j] for p in parts]) for j in range(5)]
    floors = np.full(len(parts), 1_000_000, np.int64)
    winners, prices = np.empty(len(parts), np.int64), np.empty(len(parts), np.int64)
    rank_and_price_batch(offsets, *cat, floors, SECOND_PRICE, INC, winners, prices)
    for j, p in enumerate(parts):
        w, pr, _ = rank_and_price(*p, 1_000_000, SECOND_PRICE, INC)
        assert (winners[j], prices[j] if w >= 0 else 0) == (w, pr)


# -- eligibility -----------------------------------------------------------------

CATS = ["IAB1", "IAB1-2", "IAB3", "IAB7-3", "IAB12", "IAB25"]
COUNTRIES = ["USA", "GBR", "DEU", "JPN"]
SIZES = [(300, 250), (728, 90), (320, 50)]


def random_campaigns(rng: np.random.Generator, n: int) -> list[Campaign]:
    out = []
    for i in range(n):
        creatives = []
        for j in range(int(rng.integers(1, 4))):
            kind = CreativeKind(int(rng.integers(1, 4)))
            w, h = SIZES[rng.integers(len(SIZES))] if kind == CreativeKind.BANNER else (640, 360)
            creatives.append(Creative(
                f"k{j}", kind, w if kind != CreativeKind.NATIVE else 0,
                h if kind != CreativeKind.NATIVE else 0,
                mime=str(rng.choice(["video/mp4", "video/webm"])) if kind == CreativeKind.VIDEO
                else "",
                duration=int(rng.choice([6, 15, 30])) if kind == CreativeKind.VIDEO else 0,
                cat=list(rng.choice(CATS, rng.integers(0, 2), replace=False)),
            ))  # fmt: skip
        targeting = Targeting(
            cat=list(rng.choice(CATS, rng.integers(0, 2), replace=False)),
            country=list(rng.choice(COUNTRIES, rng.integers(0, 2), replace=False)),
            devicetype=[int(d) for d in rng.choice([1, 2, 4, 5], rng.integers(0, 2), False)],
        )  # fmt: skip
        out.append(Campaign(
            f"c{i:03d}", "adv", [f"d{i % 7}.example"], "seat", creatives,
            acpm_micros=1_000_000, daily_budget_micros=int(rng.choice([0, 10**9])) or 1,
            targeting=targeting, bundle=f"app{i % 5}", paused=bool(rng.random() < 0.1),
        ))  # fmt: skip
    return out


def index_args(ix: CampaignIndex):
    return (
        ix.n,
        ix.active,
        ix.campaign,
        ix.slot,
        ix.kind,
        ix.size,
        ix.mime,
        ix.duration,
        ix.devices,
        ix.any_cat,
        ix.target_cat,
        ix.any_country,
        ix.target_country,
        ix.creative_cat,
        ix.state.budget,
        ix.state.spent,
    )


@pytest.mark.parametrize("seed", range(25))
def test_eligibility_kernel_matches_the_oracle(seed):
    rng = np.random.default_rng(seed)
    state = CampaignState()
    ix = CampaignIndex(state, capacity=8)  # small: growth and widening get exercised
    for c in random_campaigns(rng, 60):
        ix.upsert(c)
    state.spent[: len(state.slots)] = rng.choice([0, 10**10], len(state.slots))  # some spent
    for _ in range(10):  # requests
        r = ix.request_filter(
            categories=list(rng.choice(CATS, rng.integers(0, 3), replace=False)),
            country=str(rng.choice([*COUNTRIES, "FRA", ""])),
            devicetype=int(rng.integers(0, 8)),
            bcat=list(rng.choice(CATS, rng.integers(0, 2), replace=False)),
            badv=[f"d{rng.integers(7)}.example"] if rng.random() < 0.3 else [],
            bapp=[f"app{rng.integers(5)}"] if rng.random() < 0.3 else [],
        )
        video = None
        if rng.random() < 0.5:
            from exchange.openrtb import Video

            video = Video(
                mimes=["video/mp4"],
                minduration=int(rng.choice([0, 10])),
                maxduration=int(rng.choice([0, 15, 30])),
            )
        sizes = [(w << 16) | h for w, h in SIZES[: rng.integers(0, 4)]]
        imp = ix.imp_filter(sizes, video, bool(rng.random() < 0.3))
        got = ix.candidates(r, imp)
        want = eligible_oracle(
            *index_args(ix),
            r.categories,
            r.country_word,
            r.country_bit,
            r.devicetype,
            r.bcat,
            r.blocked,
            imp.banner_sizes,
            imp.video_mimes,
            imp.min_duration,
            imp.max_duration,
            imp.native,
        )
        assert got.tolist() == want.tolist()


def test_updates_are_incremental_and_visible_at_once():
    state = CampaignState()
    ix = CampaignIndex(state)
    banner = Creative("b", CreativeKind.BANNER, 300, 250)
    a = Campaign("a", "A", ["a.example"], "s", [banner], 1_000_000, 10**9)
    ix.upsert(a)
    r = ix.request_filter([], "USA", 2, [], [], [])
    imp = ix.imp_filter([(300 << 16) | 250], None, False)
    assert ix.candidates(r, imp).tolist() == [0]
    ix.set_paused("a", True)
    assert ix.candidates(r, imp).tolist() == []
    ix.set_paused("a", False)
    wide = Creative("w", CreativeKind.BANNER, 728, 90)
    ix.upsert(Campaign("a", "A", ["a.example"], "s", [wide, banner], 2_000_000, 10**9))
    assert ix.candidates(r, imp).tolist() == [2]  # the new rows; the old one is inactive
    assert ix.n == 3 and not ix.active[0]
    state.spent[state.slot("a")] = 10**9  # budget gone: no candidate, no rebuild
    assert ix.candidates(r, imp).tolist() == []


def test_an_impossible_banner_size_matches_nothing_not_every_other_kind():
    state = CampaignState()
    ix = CampaignIndex(state)
    video = Creative("v", CreativeKind.VIDEO, 640, 360, mime="video/mp4", duration=15)
    native = Creative("n", CreativeKind.NATIVE)
    ix.upsert(Campaign("a", "A", ["a.example"], "s", [video, native], 1_000_000, 10**9))
    r = ix.request_filter([], "USA", 2, [], [], [])
    for w, h in ((70_000, 250), (0, 0), (300, 65_536)):
        imp = ix.imp_filter([size_key(w, h)], None, False)
        assert ix.candidates(r, imp).tolist() == []


@pytest.mark.parametrize("seed", range(20))
def test_the_shortlist_keeps_the_k_best_prior_bids_as_numpy_does(seed: int):
    rng = np.random.default_rng(seed)
    n_rows, n = 5_000, int(rng.integers(1, 3_000))
    acpm = rng.choice([1_000_000, 2_000_000, 3_500_000], n_rows).astype(np.int64)  # ties
    slot = rng.integers(0, 100, n_rows).astype(np.int32)
    multiplier = rng.choice([0.5, 1.0], 100)
    prior = rng.choice([1.25, 2.5, 12.4], n_rows).astype(np.float32)
    rows = np.sort(rng.choice(n_rows, n, replace=False)).astype(np.int32)
    k = int(rng.integers(1, 400))
    got = shortlist(rows, acpm, slot, multiplier, prior, k)
    want = shortlist_oracle(rows, acpm, slot, multiplier, prior, k)
    assert got.size == min(k, n)
    key = acpm[rows] * multiplier[slot[rows]] * prior[rows]
    cut = np.sort(key)[::-1][min(k, n) - 1]
    assert set(rows[key > cut]) <= set(got)  # everything strictly better is kept
    assert np.all(np.isin(got, rows)) and np.all(np.diff(got) > 0)
    assert sorted(key[np.searchsorted(rows, got)]) == sorted(key[np.searchsorted(rows, want)])

"""The CUDA kernels (kernels/cuda.py) against the CPU oracles.

- Every simulator case runs the real kernels in numba's CUDA simulator in ONE subprocess
  (`NUMBA_ENABLE_CUDASIM=1` must be set before numba.cuda is first imported, and other
  test modules import numba in this process): `python tests/test_kernels_cuda.py simulate`
  prints one JSON object, case name -> "ok" or what differed; each case is a test here.
- With a real GPU (no simulator), one larger batch (64 imps x 100k rows) is compared too.
- In process, without any GPU: hypothesis property tests of the rules the kernels compile
  as device functions (bid, validity, the block reduction's merge, clearing), run the way
  the block runs them (strided per-thread folds, then a tree), against kernels.pricing;
  and the batch packing (RequestBatch.from_filters) against the index's own CPU path.

The oracle for a batch is per imp: kernels.eligibility.eligible_oracle (cross-checked with
the Numba eligible_rows) for the candidate rows, kernels.pricing.rank_and_price_oracle on
those rows' bids, the winner mapped back from a candidate position to its index row.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # when run as a script by the simulator test
    sys.path.insert(0, str(REPO_ROOT))

from kernels import cuda as kc  # noqa: E402 - this import never touches numba.cuda
from kernels.eligibility import eligible_oracle, eligible_rows  # noqa: E402
from kernels.pricing import (  # noqa: E402
    FIRST_PRICE,
    SECOND_PRICE,
    bids_oracle,
    rank_and_price,
    rank_and_price_oracle,
)

SIM_TIMEOUT_S = 240
SIZE_KEYS = [(300 << 16) | 250, (728 << 16) | 90, (320 << 16) | 50]


# -- the CPU oracle for a batch ---------------------------------------------------------


@dataclass
class Case:
    arrays: kc.IndexArrays
    requests: kc.RequestBatch
    seconds: np.ndarray  # [I, N] float32
    floors: np.ndarray  # [I] int64
    auction_type: int = SECOND_PRICE
    increment: int = 1
    remaining: np.ndarray | None = None  # [S] int64, default budget - spent
    expect: Callable[[kc.BatchOutcome], str | None] | None = field(default=None, repr=False)

    def remaining_or_default(self) -> np.ndarray:
        a = self.arrays
        return a.budget - a.spent if self.remaining is None else self.remaining


def _imp_args(q: kc.RequestBatch, j: int) -> tuple:
    """Imp j's request as eligible_rows / eligible_oracle take it (minus blocked)."""
    return (
        q.request_cat[j], int(q.country_word[j]), np.uint64(q.country_bit[j]),
        int(q.devicetype[j]), q.bcat[j],
    )  # fmt: skip


def _slot_args(q: kc.RequestBatch, j: int) -> tuple:
    banner = q.banner_sizes[j][q.banner_sizes[j] >= 0].astype(np.uint32)  # as the index
    mimes = q.video_mimes[j][q.video_mimes[j] >= 0]
    return banner, mimes, float(q.min_duration[j]), float(q.max_duration[j]), bool(q.native[j])


def _rows_of(a: kc.IndexArrays) -> tuple:
    return (
        a.active, a.campaign, a.slot, a.kind, a.size, a.mime, a.duration, a.devices,
        a.any_cat, a.target_cat, a.any_country, a.target_country, a.creative_cat,
        a.budget, a.spent,
    )  # fmt: skip


def oracle_candidates(a: kc.IndexArrays, q: kc.RequestBatch, j: int) -> np.ndarray:
    """Imp j's candidate rows (first eligible creative per campaign), from the numpy oracle.

    Cross-checked with the Numba kernel eligible_rows: a difference there is a CPU bug.
    """
    n = a.n_rows
    blocked = np.flatnonzero(q.blocked[j]).astype(np.int32)
    rows = eligible_oracle(n, *_rows_of(a), *_imp_args(q, j), blocked, *_slot_args(q, j))
    seen = np.zeros(a.n_entries, np.int32)
    out = np.zeros(max(n, 1), np.int32)
    every_row = np.arange(n, dtype=np.int32)  # the kernel also takes a full posting list
    count = eligible_rows(
        every_row, *_rows_of(a), *_imp_args(q, j), blocked, *_slot_args(q, j), seen, 1, out
    )
    if not np.array_equal(out[:count], rows):
        raise AssertionError(
            f"CPU kernel eligible_rows {out[:count].tolist()} != oracle {rows.tolist()}"
        )
    return rows


def oracle_mask(a: kc.IndexArrays, q: kc.RequestBatch, j: int) -> np.ndarray:
    """Imp j's eligibility before the per-campaign dedupe: every row its own campaign."""
    n = a.n_rows
    own_campaign = np.arange(n, dtype=np.int32)
    blocked = q.blocked[j] if q.blocked.shape[1] else np.zeros(a.n_entries, bool)  # [I, 0]: none
    blocked_rows = np.flatnonzero(blocked[a.campaign]).astype(np.int32)
    rows_args = list(_rows_of(a))
    rows_args[1] = own_campaign
    rows = eligible_oracle(n, *rows_args, *_imp_args(q, j), blocked_rows, *_slot_args(q, j))
    mask = np.zeros(n, bool)
    mask[rows] = True
    return mask


def oracle_batch(case: Case) -> kc.BatchOutcome:
    """The batch result the GPU must reproduce, imp by imp on the CPU oracles."""
    a, q = case.arrays, case.requests
    remaining = case.remaining_or_default()
    i, n = q.n_imps, a.n_rows
    winners = np.full(i, -1, np.int64)
    prices = np.zeros(i, np.int64)
    runner_up = np.full(i, -1, np.int64)
    masks = np.zeros((i, n), np.uint8)
    candidates = np.zeros((i, n), bool)
    for j in range(i):
        rows = oracle_candidates(a, q, j)
        masks[j] = oracle_mask(a, q, j)
        candidates[j, rows] = True
        slots = a.slot[rows]
        w, p, r = rank_and_price_oracle(
            a.acpm[rows], a.multiplier[slots], case.seconds[j, rows], remaining[slots],
            a.tie[rows], int(case.floors[j]), case.auction_type, case.increment,
        )  # fmt: skip
        winners[j] = rows[w] if w >= 0 else -1
        prices[j], runner_up[j] = p, r
    return kc.BatchOutcome(winners, prices, runner_up, masks, candidates)


def compare(got: kc.BatchOutcome, want: kc.BatchOutcome) -> str | None:
    """None if equal, else what differed (first imps only)."""
    problems = []
    for name in kc.BatchOutcome._fields:
        g, w = getattr(got, name), getattr(want, name)
        if g is None or w is None:
            continue
        g, w = np.asarray(g).astype(np.int64), np.asarray(w).astype(np.int64)
        if g.shape != w.shape:
            problems.append(f"{name}: shape {g.shape} != {w.shape}")
            continue
        bad = np.flatnonzero((g != w).reshape(len(g), -1).any(axis=1))
        if bad.size:
            j = int(bad[0])
            detail = (
                f"gpu {g[j].tolist()} != oracle {w[j].tolist()}"
                if g.ndim == 1
                else f"rows gpu-only {np.flatnonzero(g[j] > w[j]).tolist()}, "
                f"oracle-only {np.flatnonzero(w[j] > g[j]).tolist()}"
            )
            problems.append(f"{name}: imps {bad.tolist()} differ; imp {j}: {detail}")
    return "; ".join(problems) or None


# -- cases -------------------------------------------------------------------------------


def random_case(
    seed: int, n_imps: int = 4, n_rows: int = 64, words: int = 2, contiguous: bool = True
) -> Case:
    """A small random index and batch where every rule has a fair chance to matter."""
    rng = np.random.default_rng(seed)
    i, n, w = n_imps, n_rows, words
    e = max(1, n // 2)
    campaign = rng.integers(0, e, n)
    campaign = np.sort(campaign) if contiguous else campaign
    s = e + 3
    slot_of = rng.permutation(s)[:e]

    def sparse_bits(shape, p=0.08) -> np.ndarray:
        bits = rng.random((*shape, 64)) < p
        return (bits * (np.uint64(1) << np.arange(64, dtype=np.uint64))).sum(
            axis=-1, dtype=np.uint64
        )

    budget = rng.integers(10**6, 10**9, s)
    spent = np.where(rng.random(s) < 0.1, budget, 0)  # some budgets exhausted
    multiplier = np.where(rng.random(s) < 0.05, 0.0, rng.uniform(0.5, 1.5, s))
    devices = np.where(rng.random(n) < 0.6, 0xFF, rng.integers(0, 256, n))
    kind = rng.integers(1, 4, n)
    size = np.where(kind == 1, rng.choice(SIZE_KEYS, n), 0)  # the index: size 0 unless banner
    arrays = kc.IndexArrays(
        active=rng.random(n) < 0.92, campaign=campaign, slot=slot_of[campaign],
        kind=kind, size=size, mime=rng.integers(0, 3, n),
        duration=rng.choice([6.0, 15.0, 30.0], n), devices=devices,
        any_cat=rng.random(n) < 0.5, target_cat=sparse_bits((n, w), 0.15),
        any_country=rng.random(n) < 0.5, target_country=sparse_bits((n, 1), 0.3),
        creative_cat=sparse_bits((n, w), 0.03), acpm=rng.choice([1, 2, 3, 5], n) * 1_000_000,
        tie=rng.integers(0, 6, n), budget=budget, spent=spent, multiplier=multiplier,
        n_entries=e,
    )  # fmt: skip
    banner = np.full((i, 3), -1, np.int64)
    mimes = np.full((i, 2), -1, np.int32)
    for j in range(i):
        k = rng.integers(0, 4)
        banner[j, :k] = rng.choice(SIZE_KEYS, k, replace=False)
        m = rng.integers(0, 3)
        mimes[j, :m] = rng.choice(3, m, replace=False)
    requests = kc.RequestBatch(
        request_cat=sparse_bits((i, w), 0.3), country_word=rng.choice([-1, 0, 0], i),
        country_bit=np.uint64(1) << rng.integers(0, 64, i).astype(np.uint64),
        devicetype=rng.integers(0, 8, i), bcat=sparse_bits((i, w), 0.05),
        banner_sizes=banner, video_mimes=mimes, min_duration=rng.choice([0.0, 10.0], i),
        max_duration=rng.choice([0.0, 20.0, 30.0], i), native=rng.random(i) < 0.5,
        blocked=rng.random((i, e)) < 0.05,
    )  # fmt: skip
    seconds = rng.uniform(0.0, 30.0, (i, n)).astype(np.float32)
    seconds[rng.random((i, n)) < 0.05] = np.nan
    return Case(
        arrays,
        requests,
        seconds,
        floors=rng.integers(0, 40_000_000, i),
        auction_type=int(rng.choice([FIRST_PRICE, SECOND_PRICE])),
        increment=int(rng.choice([0, 1, 10_000])),
    )


def _with_arrays(case: Case, **changes) -> Case:
    return replace(case, arrays=replace(case.arrays, **changes))


def _with_requests(case: Case, **changes) -> Case:
    return replace(case, requests=replace(case.requests, **changes))


def _open_case(seed: int, **kw) -> Case:
    """A random case where most rows are eligible for every imp: the edge cases start here."""
    case = random_case(seed, **kw)
    a, q = case.arrays, case.requests
    i, n = q.n_imps, a.n_rows
    case = _with_arrays(
        case, active=np.ones(n, bool), kind=np.full(n, 3), size=np.zeros(n),
        devices=np.full(n, 0xFF),
        any_cat=np.ones(n, bool), any_country=np.ones(n, bool),
        creative_cat=np.zeros_like(a.creative_cat), spent=np.zeros_like(a.spent),
        multiplier=np.ones_like(a.multiplier),
    )  # fmt: skip
    case = _with_requests(
        case, native=np.ones(i, bool), blocked=np.zeros_like(q.blocked),
        bcat=np.zeros_like(q.bcat),
    )  # fmt: skip
    return replace(case, floors=np.zeros(i, np.int64), auction_type=SECOND_PRICE, increment=1)


def _every_imp(pred) -> Callable[[kc.BatchOutcome], str | None]:
    def check(o: kc.BatchOutcome) -> str | None:
        for j in range(len(o.winners)):
            why = pred(o, j)
            if why:
                return f"imp {j}: {why}"
        return None

    return check


def case_ties() -> Case:
    """Equal bids everywhere; tie keys repeat: lower tie key, then lower row, wins."""
    case = _open_case(10)
    n, i = case.arrays.n_rows, case.requests.n_imps
    case = _with_arrays(case, acpm=np.full(n, 2_000_000), tie=np.arange(n) % 3 + 7)
    seconds = np.full((i, n), 10.0, np.float32)
    seconds[1, ::2] = 11.0  # imp 1: a tie among the higher half

    def pred(o, j):
        if o.runner_up[j] != o.prices[j] - 1 and o.runner_up[j] != o.prices[j]:
            return "a tie must leave the runner-up equal to the winner's bid"
        return None

    return replace(case, seconds=seconds, expect=_every_imp(pred))


def case_all_below_floor() -> Case:
    case = _open_case(11)
    i = case.requests.n_imps
    return replace(
        case,
        floors=np.full(i, 10**12),
        expect=_every_imp(lambda o, j: o.winners[j] != -1 and "nobody may clear a huge floor"),
    )


def case_one_candidate() -> Case:
    case = _open_case(12)
    n = case.arrays.n_rows
    active = np.zeros(n, bool)
    active[37] = True
    seconds = case.seconds.copy()
    seconds[:, 37] = 5.0

    def pred(o, j):
        if o.winners[j] != 37 or o.runner_up[j] != -1:
            return "the only row must win with no runner-up"
        return None

    return replace(_with_arrays(case, active=active), seconds=seconds, expect=_every_imp(pred))


def case_empty() -> Case:
    """No slot the creatives fit: no candidates at all."""
    case = _open_case(13)
    i = case.requests.n_imps
    case = _with_requests(
        case, native=np.zeros(i, bool), banner_sizes=np.full((i, 1), -1),
        video_mimes=np.full((i, 1), -1),
    )  # fmt: skip
    return replace(
        case, expect=_every_imp(lambda o, j: o.mask[j].any() and "no row may be eligible")
    )


def case_nan_inf_seconds() -> Case:
    """NaN, inf, -inf, negative and overflowing predictions bid nothing."""
    case = _open_case(14)
    i, n = case.requests.n_imps, case.arrays.n_rows
    bad = np.array([np.nan, np.inf, -np.inf, -3.0, 1e30, 0.0], np.float32)
    seconds = np.resize(bad, (i, n)).astype(np.float32)
    seconds[1, 50] = 5.0  # imp 1: one sane prediction
    seconds[2, :] = np.nan
    seconds[3, 3] = 2.5
    return replace(case, seconds=seconds)


def case_zero_remaining() -> Case:
    """Remaining budget 0 for most slots (only bids under 1000 micros pass), exhausted ones."""
    case = _open_case(15)
    a = case.arrays
    s = a.budget.shape[0]
    remaining = np.zeros(s, np.int64)
    remaining[a.slot[::9]] = 10**9
    spent = a.spent.copy()
    spent[a.slot[::7]] = a.budget[a.slot[::7]]  # exhausted: not even eligible
    return replace(_with_arrays(case, spent=spent), remaining=remaining)


def case_paused_row() -> Case:
    """The row that would win is paused: the next one wins."""
    case = _open_case(16)
    o = oracle_batch(case)
    active = case.arrays.active.copy()
    active[o.winners[o.winners >= 0]] = False
    return _with_arrays(case, active=active)


def case_two_creatives() -> Case:
    """Campaign 0 has two fitting creatives: only the first competes, even with a low bid."""
    case = _open_case(17)
    a = case.arrays
    n, i = a.n_rows, case.requests.n_imps
    campaign = np.concatenate([[0, 0], np.arange(1, n - 1) // 2 + 1]).astype(np.int32)
    campaign = np.minimum(campaign, a.n_entries - 1)
    seconds = np.full((i, n), 1.0, np.float32)
    seconds[:, 1] = 30.0  # the second creative would win by far
    case = _with_arrays(
        case, campaign=campaign, slot=np.arange(n) % a.budget.shape[0], acpm=np.full(n, 10**6)
    )

    def pred(o, j):
        if o.winners[j] == 1 or o.candidates[j, 1]:
            return "the second creative of a campaign must not compete"
        return None

    return replace(case, seconds=seconds, expect=_every_imp(pred))


def case_targeting() -> Case:
    """Unknown country, targeted devices, category words, video max 0 (no maximum)."""
    case = random_case(18, words=2)
    a = case.arrays
    n = a.n_rows
    case = _with_arrays(
        case, active=np.ones(n, bool), kind=np.where(np.arange(n) % 2, 2, 1),
        size=np.where(np.arange(n) % 2, 0, np.array(SIZE_KEYS)[np.arange(n) % 3]),
        devices=(np.uint8(1) << (np.arange(n) % 8).astype(np.uint8)),
        spent=np.zeros_like(a.spent),
    )  # fmt: skip
    return _with_requests(
        case, country_word=np.array([-1, 0, -1, 0]), devicetype=np.array([0, 3, 7, 4]),
        max_duration=np.array([0.0, 0.0, 15.0, 30.0]), min_duration=np.array([0, 6, 0, 16.0]),
        video_mimes=np.array([[0, 1], [1, 2], [0, 2], [0, 1]]),
        banner_sizes=np.array([SIZE_KEYS[:2], SIZE_KEYS[1:], [SIZE_KEYS[0], -1], [-1, -1]]),
    )  # fmt: skip


def case_blocked() -> Case:
    """badv/bapp: the winning campaigns are blocked for some imps."""
    case = _open_case(19)
    o = oracle_batch(case)
    blocked = case.requests.blocked.copy()
    for j in (0, 2):
        if o.winners[j] >= 0:
            blocked[j, case.arrays.campaign[o.winners[j]]] = True
    bcat = case.requests.bcat.copy()
    creative_cat = case.arrays.creative_cat.copy()
    creative_cat[::5, 0] = np.uint64(1) << np.uint64(9)
    bcat[3, 0] = np.uint64(1) << np.uint64(9)
    case = _with_arrays(case, creative_cat=creative_cat)
    return _with_requests(case, blocked=blocked, bcat=bcat)


def case_demo_index() -> Case:
    """A real CampaignIndex from the demo campaigns, requests packed from its own filters."""
    from exchange.demo import demo_campaigns
    from exchange.index import CampaignIndex
    from exchange.state import CampaignState

    index = CampaignIndex(CampaignState())
    for c in demo_campaigns(40, seed=3):
        index.upsert(c)
    index.set_paused(index.campaigns()[0].id, True)
    filters = [
        (
            index.request_filter(["IAB1"], "USA", 4, ["IAB25"], [], []),
            index.imp_filter([(300 << 16) | 250], None, False),
        ),
        (
            index.request_filter(["IAB2-3", "IAB9"], "GBR", 2, ["IAB2"], [], []),
            index.imp_filter([(728 << 16) | 90, (320 << 16) | 50], None, True),
        ),
        (
            index.request_filter([], "XYZ", 1, [], [index.campaigns()[1].adomain[0]], []),
            index.imp_filter([(300 << 16) | 250], _Video(["video/mp4"], 5, 0), False),
        ),
    ]
    arrays = kc.IndexArrays.from_index(index)
    requests = kc.RequestBatch.from_filters(filters, arrays.n_entries)
    rng = np.random.default_rng(20)
    seconds = rng.uniform(0.5, 20.0, (len(filters), arrays.n_rows)).astype(np.float32)
    return Case(arrays, requests, seconds, floors=np.array([0, 5_000_000, 2_000_000]))


@dataclass
class _Video:
    mimes: list[str]
    minduration: int
    maxduration: int


SIM_CASES: dict[str, Callable[[], Case]] = {
    **{f"random_{seed}": (lambda seed=seed: random_case(seed)) for seed in range(8)},
    "random_scattered_campaigns": lambda: random_case(5, contiguous=False, words=1),
    "random_one_word_first_price": lambda: replace(
        random_case(6, words=1), auction_type=FIRST_PRICE
    ),
    "random_no_block_lists": lambda: _with_requests(random_case(7), blocked=np.zeros((4, 0))),
    "ties": case_ties,
    "all_below_floor": case_all_below_floor,
    "one_candidate": case_one_candidate,
    "empty": case_empty,
    "nan_inf_seconds": case_nan_inf_seconds,
    "zero_remaining": case_zero_remaining,
    "paused_row": case_paused_row,
    "two_creatives": case_two_creatives,
    "targeting": case_targeting,
    "blocked": case_blocked,
    "demo_index": case_demo_index,
}


def run_case(case: Case) -> str | None:
    """Run one case on the CUDA kernels (simulator or GPU); None if it matches the oracle."""
    got = kc.auction_batch(
        case.arrays, case.requests, case.seconds, case.floors, case.auction_type,
        case.increment, case.remaining, keep_masks=True,
    )  # fmt: skip
    return compare(got, oracle_batch(case))


def _lock_simulator_shared_arrays() -> None:
    """Make the simulator's shared-array allocation atomic.

    numba's simulator (0.68) gives each call site of cuda.shared.array one array per
    launch, created on first use by an unlocked get-then-set while the first block's
    Python threads start: two threads racing there get different arrays, one of them uninitialised
    memory, and the block reduction reads garbage (seen once in CI: a runner-up of
    4723585285223350272, float bits; 12 of 1500 one-block launches in a probe). Real
    shared memory has no such race.
    """
    from numba.core import types
    from numba.cuda.simulator.kernelapi import FakeCUDAShared
    from numba.np import numpy_support

    static = threading.Lock()
    dynamic = FakeCUDAShared.array

    def array(self, shape, dtype):
        if shape == 0:
            return dynamic(self, shape, dtype)
        caller = sys._getframe(1)
        key = (caller.f_code.co_filename, caller.f_lineno)
        with static:
            res = self._allocations.get(key)
            if res is None:
                if isinstance(dtype, types.Type):
                    dtype = numpy_support.as_dtype(dtype)
                res = self._allocations[key] = np.empty(shape, dtype)
        return res

    FakeCUDAShared.array = array


def simulate_main() -> int:
    """The subprocess: every SIM_CASES case under NUMBA_ENABLE_CUDASIM=1, one JSON line."""
    if not kc.simulator_enabled():
        print("set NUMBA_ENABLE_CUDASIM=1 to run the simulator cases", file=sys.stderr)
        return 2
    _lock_simulator_shared_arrays()
    # The simulator runs each CUDA thread as a Python thread and polls them while holding
    # the GIL: at the default 5 ms switch interval every syncthreads() costs milliseconds.
    sys.setswitchinterval(1e-4)
    results: dict[str, str] = {}
    for name, make in SIM_CASES.items():
        t0 = time.perf_counter()
        try:
            problem = run_case(make())
        except Exception as e:  # report every case, not only the first failure
            problem = f"{type(e).__name__}: {e}"
        results[name] = problem or "ok"
        print(f"{name}: {results[name]} ({time.perf_counter() - t0:.2f} s)", file=sys.stderr)
    print(json.dumps(results))
    return 0 if all(v == "ok" for v in results.values()) else 1


# -- the simulator cases, as tests --------------------------------------------------------


@pytest.fixture(scope="module")
def simulated() -> dict[str, str]:
    env = {
        **os.environ,
        "NUMBA_ENABLE_CUDASIM": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "simulate"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=SIM_TIMEOUT_S,
    )
    lines = proc.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError):
        pytest.fail(
            f"the simulator run exited with {proc.returncode} and no result line.\n"
            f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-6000:]}"
        )


@pytest.mark.parametrize("name", list(SIM_CASES))
def test_simulator_matches_oracle(simulated: dict[str, str], name: str) -> None:
    assert simulated.get(name) == "ok", f"CUDA simulator vs CPU oracle, case {name}: " + str(
        simulated.get(name, "missing from the simulator's output")
    )


# -- a real GPU ---------------------------------------------------------------------------

needs_gpu = pytest.mark.skipif(
    not kc.gpu_available(),
    reason="no CUDA GPU here (or only the simulator): the real kernels are not run",
)


@needs_gpu
@pytest.mark.parametrize("name", list(SIM_CASES))
def test_gpu_matches_oracle_small(name: str) -> None:
    assert run_case(SIM_CASES[name]()) is None


@needs_gpu
def test_gpu_matches_oracle_large() -> None:
    """64 imps x 100k rows, scattered campaign rows, 2-word category bitsets."""
    for seed, contiguous in ((99, True), (100, False)):
        case = random_case(seed, n_imps=64, n_rows=100_000, contiguous=contiguous)
        problem = run_case(case)
        assert problem is None, f"seed {seed}: {problem}"


# -- without a GPU ------------------------------------------------------------------------


def test_import_never_touches_numba_cuda() -> None:
    code = (
        "import sys, kernels.cuda as k; "
        "assert 'numba.cuda' not in sys.modules, 'kernels.cuda imported numba.cuda'; "
        "print(k.cuda_available())"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() in ("True", "False")


@pytest.mark.skipif(kc.cuda_available(), reason="a GPU (or the simulator) is available here")
def test_no_gpu_raises_cuda_unavailable() -> None:
    case = case_one_candidate()
    with pytest.raises(kc.CudaUnavailable, match="no CUDA GPU"):
        kc.auction_batch(case.arrays, case.requests, case.seconds, case.floors)
    with pytest.raises(kc.CudaUnavailable):
        kc.warm_up()


def test_pick_backend(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(kc, "_choices_logged", set())
    monkeypatch.setattr(kc, "gpu_available", lambda: True)
    with caplog.at_level(logging.INFO, logger="attnx.kernels"):
        assert kc.pick_backend(256, 100_000) == "cuda"
        assert kc.pick_backend(1, 100_000) == "cpu"
        assert kc.pick_backend(64, 2**14) == "cuda"  # exactly the threshold
        assert kc.pick_backend(512, 200_000) == "cuda"
        monkeypatch.setattr(kc, "gpu_available", lambda: False)
        assert kc.pick_backend(10_000, 10**6) == "cpu"
    logged = [r.getMessage() for r in caplog.records if r.name == "attnx.kernels"]
    assert len(logged) == 2, logged  # each choice once
    assert logged[0].startswith("kernels backend: cuda")


def test_edge_cases_exercise_their_edge() -> None:
    """Each simulator case's own claim holds on the CPU oracle (so a case cannot go stale)."""
    for name, make in SIM_CASES.items():
        case = make()
        o = oracle_batch(case)  # also checks eligible_rows == eligible_oracle
        if case.expect is not None:
            assert case.expect(o) is None, f"{name}: {case.expect(o)}"
    o = oracle_batch(random_case(0))
    assert (o.winners >= 0).any() and (o.candidates.sum(axis=1) > 1).any()


def test_request_batch_validates_shapes() -> None:
    case = random_case(1)
    with pytest.raises(ValueError, match="imps"):
        _with_requests(case, native=np.ones(3, bool))
    with pytest.raises(ValueError, match="campaign entries"):
        _with_arrays(case, n_entries=2)
    empty = _with_requests(case, banner_sizes=np.zeros((4, 0)), video_mimes=np.zeros((4, 0)))
    assert empty.requests.banner_sizes.shape == (4, 1)
    assert (empty.requests.banner_sizes == -1).all()


# -- hypothesis: the device rules, run the way a block runs them -------------------------


def _block(parts: list[tuple], threads: int) -> tuple:
    """block_reduce: each thread folds its strided share of `parts`, then a tree."""
    acc = []
    for t in range(threads):
        p = (-1, -1, -1, -1)
        for q in parts[t::threads]:
            p = kc._merge(*p, *q)
        acc.append(p)
    half = threads // 2
    while half:
        for tid in range(half):
            acc[tid] = kc._merge(*acc[tid], *acc[tid + half])
        half //= 2
    return acc[0]


def emulate_gpu(acpm, multiplier, seconds, remaining, tie, floor, auction_type, increment,
                threads, chunk_rows):  # fmt: skip
    """rank_chunks + rank_and_price_batch for one imp whose candidates are positions
    0..C-1, in Python, with the kernels' own rule functions."""
    singles = []
    with np.errstate(all="ignore"):
        for row in range(len(acpm)):
            bid = kc._bid_value(acpm[row], multiplier[row], seconds[row])
            valid = kc._valid(bid, floor, remaining[row])
            singles.append((bid, int(tie[row]), row, -1) if valid else (-1, -1, -1, -1))
    chunks = [
        _block(singles[lo : lo + chunk_rows], threads)
        for lo in range(0, max(len(singles), 1), chunk_rows)
    ]
    b, _, r, s = _block(chunks, threads)
    if b < 0:
        return -1, 0, -1
    return r, kc._clearing(b, s, floor, auction_type, increment), s


_seconds = st.one_of(
    st.sampled_from([1.0, 2.0, 10.0, 0.0, -1.0]),
    st.floats(width=32, allow_nan=True, allow_infinity=True),
)


@st.composite
def auctions(draw):
    c = draw(st.integers(0, 40))
    acpm = draw(st.lists(st.sampled_from([0, 1, 999, 10**6, 2 * 10**6, 3_500_000]), min_size=c,
                         max_size=c))  # fmt: skip
    mult = draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, 1.25, -1.0]), min_size=c, max_size=c))
    secs = draw(st.lists(_seconds, min_size=c, max_size=c))
    rem = draw(st.lists(st.sampled_from([0, 5, 10_000, 10**9]), min_size=c, max_size=c))
    tie = draw(st.lists(st.integers(0, 3), min_size=c, max_size=c))
    return (
        np.array(acpm, np.int64), np.array(mult, np.float64), np.array(secs, np.float32),
        np.array(rem, np.int64), np.array(tie, np.uint32),
        draw(st.one_of(st.sampled_from([0, 1, 10**6, 5 * 10**6, 10**12]), st.integers(0, 10**8))),
        draw(st.sampled_from([FIRST_PRICE, SECOND_PRICE])),
        draw(st.sampled_from([0, 1, 10_000])),
    )  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    auction=auctions(),
    threads=st.sampled_from([1, 2, 4, 32]),
    chunk_rows=st.sampled_from([1, 3, 8, 64]),
)
def test_block_reduction_matches_pricing(auction, threads, chunk_rows) -> None:
    """The GPU's two-stage reduction, any block and chunk size, equals kernels.pricing."""
    want = rank_and_price_oracle(*auction)
    assert emulate_gpu(*auction, threads, chunk_rows) == want
    assert tuple(int(x) for x in rank_and_price(*auction)) == want  # the CPU kernel agrees


@settings(max_examples=300, deadline=None)
@given(acpm=st.integers(0, 10**9), mult=st.floats(allow_nan=True), secs=_seconds)
def test_bid_value_matches_oracle(acpm, mult, secs) -> None:
    a, m, s = np.array([acpm]), np.array([mult]), np.array([secs], np.float32)
    with np.errstate(all="ignore"):
        assert kc._bid_value(a[0], m[0], s[0]) == bids_oracle(a, m, s)[0]


@settings(max_examples=200, deadline=None)
@given(
    partials=st.lists(st.tuples(st.integers(1, 5), st.integers(0, 2)), min_size=1, max_size=12),
    seed=st.integers(0, 2**32 - 1),
)
def test_merge_any_tree_same_answer(partials, seed) -> None:
    """Merging single candidates in any order and tree shape gives the sorted answer."""
    items = [(bid, tie, row, -1) for row, (bid, tie) in enumerate(partials)]
    rng = np.random.default_rng(seed)
    pool = [items[i] for i in rng.permutation(len(items))]
    while len(pool) > 1:
        i, j = sorted(rng.choice(len(pool), 2, replace=False))
        merged = kc._merge(*pool[i], *pool[j])
        pool = [p for k, p in enumerate(pool) if k not in (i, j)] + [merged]
    ranked = sorted(items, key=lambda x: (-x[0], x[1], x[2]))
    second = ranked[1][0] if len(ranked) > 1 else -1
    assert pool[0] == (*ranked[0][:3], second)


# -- hypothesis: packing real index filters into a batch ----------------------------------


@pytest.fixture(scope="module")
def demo_index():
    from exchange.demo import demo_campaigns
    from exchange.index import CampaignIndex
    from exchange.state import CampaignState

    index = CampaignIndex(CampaignState())
    for c in demo_campaigns(60, seed=5):
        index.upsert(c)
    return index


_SIZES = [(300 << 16) | 250, (728 << 16) | 90, (320 << 16) | 50, (970 << 16) | 250]
_IMPS = st.tuples(
    st.lists(st.sampled_from(["IAB1", "IAB1-6", "IAB2-3", "IAB9", "IAB12", "IAB25"]), max_size=3),
    st.sampled_from(["USA", "GBR", "JPN", "XYZ"]),
    st.integers(0, 9),
    st.lists(st.sampled_from(["IAB1", "IAB2", "IAB9-30", "IAB25"]), max_size=2),
    st.lists(st.integers(0, 59), max_size=3),
    st.lists(st.sampled_from(_SIZES), max_size=3, unique=True),
    st.one_of(st.none(), st.tuples(st.sampled_from([0, 6, 16]), st.sampled_from([0, 15, 30]))),
    st.booleans(),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(imps=st.lists(_IMPS, min_size=1, max_size=3))
def test_batch_packing_matches_index_candidates(demo_index, imps) -> None:
    index = demo_index
    campaigns = index.campaigns()
    filters = []
    for cats, country, device, bcat, adv, sizes, video, native in imps:
        badv = [campaigns[k % len(campaigns)].adomain[0] for k in adv]
        v = None if video is None else _Video(["video/mp4"], *video)
        filters.append(
            (
                index.request_filter(cats, country, device, bcat, badv, []),
                index.imp_filter(sizes, v, native),
            )
        )
    arrays = kc.IndexArrays.from_index(index)
    batch = kc.RequestBatch.from_filters(filters, arrays.n_entries)
    for j, (r, f) in enumerate(filters):
        want = index.candidates(r, f)
        assert oracle_candidates(arrays, batch, j).tolist() == want.tolist()


if __name__ == "__main__":
    if sys.argv[1:] == ["simulate"]:
        sys.exit(simulate_main())
    sys.exit(f"usage: {sys.argv[0]} simulate   (with NUMBA_ENABLE_CUDASIM=1)")

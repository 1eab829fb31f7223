"""Eligibility and rank/price for a batch of imps × the whole campaign index, on a GPU.

The same rules as `kernels.eligibility.eligible_rows` and `kernels.pricing.rank_and_price`,
for I imps at once over all N index rows, with `numba.cuda`:

0. `fill_i32` sets first_row [I, E] int32 (E campaign entries) to "no row".
1. `eligible_batch`, a 2-D grid over (row, imp): a thread reads its row once and decides
   it for every gridDim.y-th imp, writing the [I, N] uint8 mask (no per-campaign dedupe
   in it) and, for an eligible pair, an atomic min of the row into first_row[imp,
   campaign[row]]. A row is a *candidate* only if it is the first eligible row of its
   campaign: exactly the candidate set the CPU path builds (first fitting creative).
2. `rank_chunks`, a grid over (chunk of rows, imp): each block folds its candidates into
   (best bid, tie key, row, runner-up bid) per thread, then a shared-memory tree
   reduction; one partial per (imp, chunk). Chunks keep the GPU busy when I is small.
3. `rank_and_price_batch`: one block of `THREADS_PER_BLOCK` threads per imp merges the
   imp's chunk partials the same way (block-level reduction); thread 0 prices.
   The order is (bid desc, tie key asc, row asc), which is the CPU's order (candidates
   arrive in row order there), and the runner-up is the highest *other* valid bid.

Host side: `IndexArrays` (a snapshot of the index's columns) -> `DeviceIndex` (on the GPU
once; slot arrays and `active` refreshed in place), `RequestBatch` (per-imp request
arrays, or packed from the index's RequestFilter/ImpFilter), `auction_batch` ->
`BatchOutcome` (winner ROWS, prices, runner-up bids). Per batch, the request is packed
into three arrays and copied into buffers kept per batch shape: device allocations cost
~100 µs each and each copy or launch has a fixed cost, which dominates small batches.

The bid, validity and clearing rules are kernels.pricing's own plain functions, compiled
here as device functions (with `_merge` below), so the GPU cannot drift from the CPU
and the CPU tests can check them without a GPU.

Importing this module never touches `numba.cuda`: the kernels are built on first use.
Without a GPU (and outside the CUDA simulator, `NUMBA_ENABLE_CUDASIM=1`) the host
wrappers raise `CudaUnavailable`. `pick_backend` says which path a batch should take and
logs the choice once; the simulator never counts as a GPU there (it is for tests only).

Kernels compile on their first launch; call `warm_up()` at start-up so no request does.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, fields
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from kernels.eligibility import BANNER, NATIVE, VIDEO
from kernels.pricing import SECOND_PRICE
from kernels.pricing import bid_value as _bid_value
from kernels.pricing import clearing as _clearing
from kernels.pricing import is_valid as _valid

if TYPE_CHECKING:
    from exchange.index import CampaignIndex, ImpFilter, RequestFilter

log = logging.getLogger("attnx.kernels")

THREADS_PER_BLOCK = 256  # a power of two: the block reduction halves it
# The simulator runs each thread as a Python thread: smaller blocks keep tests fast, and
# with a few dozen rows they make every thread fold several rows before the tree merge.
SIMULATOR_THREADS_PER_BLOCK = 16
ROWS_PER_THREAD = 8  # rank_chunks: a block ranks THREADS_PER_BLOCK × this many rows
IMPS_PER_THREAD = 8  # eligible_batch: a thread reads its row once for up to this many imps
# imps × rows from which a real GPU beats the CPU kernels. Measured on an H100 over the
# 100k-campaign demo index (~200k rows): 1 imp 1.1 ms GPU vs 0.84 ms CPU; 8 imps 0.96 ms
# vs 9.9 ms. A batch costs ~0.7 ms fixed (launches, copies), so 2**20 leaves a margin.
GPU_MIN_PAIRS = 2**20
_NO_ROW = np.iinfo(np.int32).max  # first_row's "no eligible row yet"


class CudaUnavailable(RuntimeError):
    """The CUDA path was asked for on a machine with no usable GPU (and no simulator)."""


class BatchOutcome(NamedTuple):
    winners: np.ndarray  # [I] int64 index ROW of the winner, -1 when nobody may win
    prices: np.ndarray  # [I] int64 clearing CPM micros (0 without a winner)
    runner_up: np.ndarray  # [I] int64 runner-up CPM micros, -1 when none
    mask: np.ndarray | None = None  # [I, N] uint8 eligibility (keep_masks=True only)
    candidates: np.ndarray | None = None  # [I, N] bool first eligible row per campaign


# -- availability --------------------------------------------------------------


def simulator_enabled() -> bool:
    """True when numba runs CUDA kernels in its Python simulator (NUMBA_ENABLE_CUDASIM=1)."""
    try:
        from numba import config

        return bool(config.ENABLE_CUDASIM)
    except Exception:
        return False


def cuda_available() -> bool:
    """numba.cuda.is_available(): a driver and a GPU (or the simulator); False on any error."""
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:
        return False


def gpu_available() -> bool:
    """A real GPU, not the simulator."""
    return cuda_available() and not simulator_enabled()


_choices_logged: set[str] = set()
_lock = threading.Lock()


def pick_backend(imps: int, rows: int) -> str:
    """Which path a batch takes: "cuda" when a real GPU is there and the batch has at least
    GPU_MIN_PAIRS imps × rows pairs, else "cpu".

    Logs each choice the first time it is made (logger "attnx.kernels").
    """
    gpu = gpu_available()
    backend = "cuda" if gpu and imps * rows >= GPU_MIN_PAIRS else "cpu"
    with _lock:
        if backend not in _choices_logged:
            _choices_logged.add(backend)
            why = (
                "no GPU"
                if not gpu
                else f"{imps} imps x {rows} rows {'>=' if backend == 'cuda' else '<'} "
                f"{GPU_MIN_PAIRS} pairs"
            )
            log.info("kernels backend: %s (%s)", backend, why)
    return backend


def _require_cuda():
    """numba.cuda, or CudaUnavailable with the reason."""
    try:
        from numba import cuda
    except Exception as e:  # a broken install must not take the CPU path down with it
        raise CudaUnavailable(f"numba.cuda cannot be imported: {e}") from e
    try:
        ok = cuda.is_available()
    except Exception as e:
        raise CudaUnavailable(f"numba.cuda.is_available() failed: {e}") from e
    if not ok:
        raise CudaUnavailable(
            "no CUDA GPU or driver is available (set NUMBA_ENABLE_CUDASIM=1 to use the "
            "simulator in tests)"
        )
    return cuda


# -- the rules, as plain Python (compiled as device functions; tested on the CPU) --------


def _merge(b1, t1, r1, s1, b2, t2, r2, s2):
    """Merge two partial results (best bid, its tie key, its row, runner-up bid).

    b = -1: no candidate; s = -1: no runner-up. The better best is the higher bid, then
    the lower tie key, then the lower row; the runner-up is the best of what is left.
    Associative and commutative, so any reduction tree gives the same answer.
    """
    if b2 > b1 or (b2 == b1 and b2 >= 0 and (t2 < t1 or (t2 == t1 and r2 < r1))):
        return b2, t2, r2, max(max(s2, s1), b1)
    return b1, t1, r1, max(max(s1, s2), b2)


def _listed(table, row, value) -> bool:
    """value in table[row], a list padded with -1 after its last entry."""
    for j in range(table.shape[1]):
        if table[row, j] < 0:
            return False
        if table[row, j] == value:
            return True
    return False


# -- kernels (built on first use) -------------------------------------------------------


_built: SimpleNamespace | None = None
# numba.cuda once the kernels are built. A module global on purpose: the kernels read it
# as a global, which is what the CUDA simulator swaps for its fake module while it runs one.
cuda: Any = None


def get_kernels() -> SimpleNamespace:
    """The kernels (compiled on first launch): eligible_batch, fill_i32, rank_chunks,
    rank_and_price_batch; and `cuda`, `threads` (per block), `chunk_rows`."""
    global _built
    with _lock:
        if _built is None:
            if simulator_enabled():
                _built = _build(_require_cuda(), SIMULATOR_THREADS_PER_BLOCK, 2)
            else:
                _built = _build(_require_cuda(), THREADS_PER_BLOCK, ROWS_PER_THREAD)
        return _built


def _build(cuda_module, threads: int, rows_per_thread: int) -> SimpleNamespace:
    global cuda
    cuda = cuda_module
    # Device functions. The simulator runs them as plain Python either way (it only swaps
    # this module's global `cuda` for its fake while a kernel runs, which covers them):
    # calling them directly skips its per-call wrapper, several times faster in tests.
    device = (lambda f: f) if simulator_enabled() else cuda.jit(device=True)
    bid_value, valid, merge, clearing, listed = map(
        device, (_bid_value, _valid, _merge, _clearing, _listed)
    )

    @device
    def block_reduce(b, t, r, s, sh_bid, sh_tie, sh_row, sh_second):
        """Merge every thread's (b, t, r, s) into slot 0 of the shared arrays (a tree)."""
        tid = cuda.threadIdx.x
        sh_bid[tid], sh_tie[tid], sh_row[tid], sh_second[tid] = b, t, r, s
        cuda.syncthreads()
        half = threads // 2
        while half > 0:
            if tid < half:
                o = tid + half
                b, t, r, s = merge(
                    sh_bid[tid], sh_tie[tid], sh_row[tid], sh_second[tid],
                    sh_bid[o], sh_tie[o], sh_row[o], sh_second[o],
                )  # fmt: skip
                sh_bid[tid], sh_tie[tid], sh_row[tid], sh_second[tid] = b, t, r, s
            cuda.syncthreads()
            half //= 2

    @cuda.jit
    def eligible_batch(
        n_rows, active, campaign, slot, kind, size, mime, duration, devices, any_cat,
        target_cat, any_country, target_country, creative_cat, budget, spent,
        request_cat, country_word, country_bit, devicetype, bcat, banner_sizes, video_mimes,
        min_duration, max_duration, native, blocked, has_blocked, mask, first_row,
    ):  # fmt: skip
        """mask[imp, row] = 1 if the row may bid on the imp (before the per-campaign dedupe);
        first_row[imp, campaign] = the lowest such row (atomic min; pre-filled with _NO_ROW)."""
        row = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        if row >= n_rows:
            return
        # the row's own fields, read once for all the imps this thread decides
        c = campaign[row]
        live = active[row] and spent[slot[row]] < budget[slot[row]]
        dev, k, sz, mi, d = devices[row], kind[row], size[row], mime[row], duration[row]
        untargeted_cat, untargeted_country = any_cat[row], any_country[row]
        for imp in range(cuda.blockIdx.y, mask.shape[0], cuda.gridDim.y):
            ok = live
            if ok:
                dt = devicetype[imp]
                if dt < 0 or dt > 7 or not ((dev >> dt) & 1):
                    ok = False
            if ok:
                fits = False
                if k == BANNER:
                    fits = listed(banner_sizes, imp, sz)
                elif k == VIDEO:
                    hi = max_duration[imp]
                    if d >= min_duration[imp] and (hi <= 0 or d <= hi):
                        fits = listed(video_mimes, imp, mi)
                elif k == NATIVE:
                    fits = native[imp] != 0
                ok = fits
            if ok and not untargeted_cat:
                hit = False
                for w in range(target_cat.shape[1]):
                    if target_cat[row, w] & request_cat[imp, w]:
                        hit = True
                        break
                ok = hit
            if ok and not untargeted_country:
                cw = country_word[imp]
                if cw < 0 or not (target_country[row, cw] & country_bit[imp]):
                    ok = False  # an unknown country admits only untargeted rows
            if ok:
                for w in range(creative_cat.shape[1]):
                    if creative_cat[row, w] & bcat[imp, w]:
                        ok = False
                        break
            if ok and has_blocked and blocked[imp, c]:
                ok = False
            mask[imp, row] = 1 if ok else 0
            if ok:
                cuda.atomic.min(first_row, (imp, c), row)

    @cuda.jit
    def fill_i32(a, value):
        """a[:, :] = value."""
        j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        if j >= a.shape[1]:
            return
        for i in range(cuda.blockIdx.y, a.shape[0], cuda.gridDim.y):
            a[i, j] = value

    @cuda.jit
    def rank_chunks(
        n_rows, chunk_rows, campaign, slot, mask, first_row, acpm, multiplier, seconds,
        remaining, tie, floors, partials,
    ):  # fmt: skip
        """Block (chunk, imp): the top two valid candidates of rows [chunk × chunk_rows, +
        chunk_rows) -> partials[imp, chunk] = (best bid, tie key, row, runner-up bid)."""
        sh_bid = cuda.shared.array(threads, np.int64)
        sh_tie = cuda.shared.array(threads, np.int64)
        sh_row = cuda.shared.array(threads, np.int64)
        sh_second = cuda.shared.array(threads, np.int64)
        tid = cuda.threadIdx.x
        chunk = cuda.blockIdx.x
        lo = chunk * chunk_rows
        hi = min(lo + chunk_rows, n_rows)
        for imp in range(cuda.blockIdx.y, partials.shape[0], cuda.gridDim.y):
            floor = floors[imp]
            b, t, r, s = np.int64(-1), np.int64(-1), np.int64(-1), np.int64(-1)
            for row in range(lo + tid, hi, threads):
                if not mask[imp, row] or first_row[imp, campaign[row]] != row:
                    continue  # not eligible, or not its campaign's first eligible creative
                sl = slot[row]
                bid = np.int64(bid_value(acpm[row], multiplier[sl], seconds[imp, row]))
                if valid(bid, floor, remaining[sl]):
                    b, t, r, s = merge(b, t, r, s, bid, np.int64(tie[row]), np.int64(row), -1)
            block_reduce(b, t, r, s, sh_bid, sh_tie, sh_row, sh_second)
            if tid == 0:
                partials[imp, chunk, 0] = sh_bid[0]
                partials[imp, chunk, 1] = sh_tie[0]
                partials[imp, chunk, 2] = sh_row[0]
                partials[imp, chunk, 3] = sh_second[0]
            cuda.syncthreads()  # the shared arrays are reused by the block's next imp

    @cuda.jit
    def rank_and_price_batch(partials, floors, auction_type, increment, out):
        """One block per imp: merge its chunks' partials, price the winner.
        out[0, imp] = winner row (-1: none), out[1, imp] = price, out[2, imp] = runner-up."""
        sh_bid = cuda.shared.array(threads, np.int64)
        sh_tie = cuda.shared.array(threads, np.int64)
        sh_row = cuda.shared.array(threads, np.int64)
        sh_second = cuda.shared.array(threads, np.int64)
        tid = cuda.threadIdx.x
        for imp in range(cuda.blockIdx.x, partials.shape[0], cuda.gridDim.x):
            b, t, r, s = np.int64(-1), np.int64(-1), np.int64(-1), np.int64(-1)
            for chunk in range(tid, partials.shape[1], threads):
                b, t, r, s = merge(
                    b, t, r, s, partials[imp, chunk, 0], partials[imp, chunk, 1],
                    partials[imp, chunk, 2], partials[imp, chunk, 3],
                )  # fmt: skip
            block_reduce(b, t, r, s, sh_bid, sh_tie, sh_row, sh_second)
            if tid == 0:
                if sh_bid[0] < 0:
                    out[0, imp], out[1, imp], out[2, imp] = -1, 0, -1
                else:
                    out[0, imp] = sh_row[0]
                    out[1, imp] = clearing(
                        sh_bid[0], sh_second[0], floors[imp], auction_type, increment
                    )
                    out[2, imp] = sh_second[0]
            cuda.syncthreads()

    return SimpleNamespace(
        cuda=cuda,
        threads=threads,
        chunk_rows=threads * rows_per_thread,
        eligible_batch=eligible_batch,
        fill_i32=fill_i32,
        rank_chunks=rank_chunks,
        rank_and_price_batch=rank_and_price_batch,
    )


# -- host side -------------------------------------------------------------------------


_ROW_DTYPES: dict[str, Any] = {
    "active": np.bool_, "campaign": np.int32, "slot": np.int32, "kind": np.int8,
    "size": np.uint32, "mime": np.int32, "duration": np.float32, "devices": np.uint8,
    "any_cat": np.bool_, "target_cat": np.uint64, "any_country": np.bool_,
    "target_country": np.uint64, "creative_cat": np.uint64, "acpm": np.int64,
    "tie": np.uint32,
}  # fmt: skip
_SLOT_DTYPES: dict[str, Any] = {"budget": np.int64, "spent": np.int64, "multiplier": np.float64}
_REQUEST_DTYPES: dict[str, Any] = {
    "request_cat": np.uint64, "country_word": np.int64, "country_bit": np.uint64,
    "devicetype": np.int64, "bcat": np.uint64, "banner_sizes": np.int64,
    "video_mimes": np.int32, "min_duration": np.float64, "max_duration": np.float64,
    "native": np.bool_, "blocked": np.bool_,
}  # fmt: skip


@dataclass(frozen=True)
class IndexArrays:
    """The campaign index columns the kernels read: rows [N] / [N, W], slots [S].

    `n_entries` (E) is the number of campaign entries: `campaign` values are < E.
    """

    active: np.ndarray  # [N] bool
    campaign: np.ndarray  # [N] int32 campaign entry
    slot: np.ndarray  # [N] int32 budget slot
    kind: np.ndarray  # [N] int8
    size: np.ndarray  # [N] uint32 (w << 16) | h of banners
    mime: np.ndarray  # [N] int32
    duration: np.ndarray  # [N] float32
    devices: np.ndarray  # [N] uint8
    any_cat: np.ndarray  # [N] bool
    target_cat: np.ndarray  # [N, W] uint64
    any_country: np.ndarray  # [N] bool
    target_country: np.ndarray  # [N, G] uint64
    creative_cat: np.ndarray  # [N, W] uint64
    acpm: np.ndarray  # [N] int64
    tie: np.ndarray  # [N] uint32
    budget: np.ndarray  # [S] int64
    spent: np.ndarray  # [S] int64
    multiplier: np.ndarray  # [S] float64
    n_entries: int

    def __post_init__(self) -> None:
        for name, dtype in (_ROW_DTYPES | _SLOT_DTYPES).items():
            object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name), dtype))
        n = self.n_rows
        for name in _ROW_DTYPES:
            if getattr(self, name).shape[0] != n:
                raise ValueError(
                    f"index array {name} has {getattr(self, name).shape[0]} rows, not {n}"
                )
        if self.target_cat.shape[1] != self.creative_cat.shape[1]:
            raise ValueError("target_cat and creative_cat must have the same number of words")
        if n and (self.campaign.min() < 0 or self.campaign.max() >= self.n_entries):
            raise ValueError(f"campaign entries must lie in [0, {self.n_entries})")
        if n and (self.slot.min() < 0 or self.slot.max() >= self.budget.shape[0]):
            raise ValueError(f"slots must lie in [0, {self.budget.shape[0]})")

    @property
    def n_rows(self) -> int:
        return int(self.active.shape[0])

    @classmethod
    def from_index(cls, index: CampaignIndex) -> IndexArrays:
        """A snapshot (copies) of the index's rows in use and its state's slot arrays."""
        n = index.n
        rows = {name: getattr(index, name)[:n].copy() for name in _ROW_DTYPES}
        st = index.state
        return cls(
            **rows,
            budget=st.limit.copy(),  # what may be spent here: the budget, or the leases
            spent=st.spent.copy(),
            multiplier=st.multiplier.copy(),
            n_entries=max(1, len(index.entries)),
        )


@dataclass(frozen=True)
class RequestBatch:
    """Per-imp request arrays stacked on a leading imp axis (I imps)."""

    request_cat: np.ndarray  # [I, W] uint64 page categories and their parents
    country_word: np.ndarray  # [I] int64, -1: country unknown to the index
    country_bit: np.ndarray  # [I] uint64
    devicetype: np.ndarray  # [I] int64 in 0..7
    bcat: np.ndarray  # [I, W] uint64
    banner_sizes: np.ndarray  # [I, K] int64 size keys, padded with -1 (K >= 1)
    video_mimes: np.ndarray  # [I, M] int32 mime ids, padded with -1 (M >= 1)
    min_duration: np.ndarray  # [I] float64 (eligible_rows compares in float64)
    max_duration: np.ndarray  # [I] float64, 0: no maximum
    native: np.ndarray  # [I] bool
    blocked: np.ndarray  # [I, E] bool campaign entries blocked by badv / bapp; [I, 0]: none

    def __post_init__(self) -> None:
        for name, dtype in _REQUEST_DTYPES.items():
            object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name), dtype))
        i = self.n_imps
        for f in fields(self):
            a = getattr(self, f.name)
            if a.shape[0] != i:
                raise ValueError(f"request array {f.name} has {a.shape[0]} imps, not {i}")
        for name in ("banner_sizes", "video_mimes"):  # kernels need a column to index
            a = getattr(self, name)
            if a.ndim != 2:
                raise ValueError(f"request array {name} must be [I, K] padded with -1")
            if a.shape[1] == 0:
                object.__setattr__(self, name, _pad_columns(a, 1))

    @property
    def n_imps(self) -> int:
        return int(self.country_word.shape[0])

    @classmethod
    def from_filters(
        cls, filters: Sequence[tuple[RequestFilter, ImpFilter]], n_entries: int
    ) -> RequestBatch:
        """Stack (RequestFilter, ImpFilter) pairs, one per imp, as the index builds them."""
        i = len(filters)
        if i == 0:
            raise ValueError("a batch needs at least one imp")
        words = max(len(r.categories) for r, _ in filters)
        k = max(1, max(len(f.banner_sizes) for _, f in filters))
        m = max(1, max(len(f.video_mimes) for _, f in filters))
        out = {
            "request_cat": np.zeros((i, words), np.uint64),
            "bcat": np.zeros((i, words), np.uint64),
            "banner_sizes": np.full((i, k), -1, np.int64),
            "video_mimes": np.full((i, m), -1, np.int32),
            "blocked": np.zeros(
                (i, n_entries if any(len(r.blocked) for r, _ in filters) else 0), np.bool_
            ),
        }
        for j, (r, f) in enumerate(filters):
            out["request_cat"][j, : len(r.categories)] = r.categories
            out["bcat"][j, : len(r.bcat)] = r.bcat
            out["banner_sizes"][j, : len(f.banner_sizes)] = f.banner_sizes
            out["video_mimes"][j, : len(f.video_mimes)] = f.video_mimes
            out["blocked"][j, np.asarray(r.blocked, np.int64)] = True
        return cls(
            **out,
            country_word=np.array([r.country_word for r, _ in filters], np.int64),
            country_bit=np.array([r.country_bit for r, _ in filters], np.uint64),
            devicetype=np.array([r.devicetype for r, _ in filters], np.int64),
            min_duration=np.array([f.min_duration for _, f in filters], np.float64),
            max_duration=np.array([f.max_duration for _, f in filters], np.float64),
            native=np.array([f.native for _, f in filters], np.bool_),
        )


def _pad_columns(a: np.ndarray, cols: int) -> np.ndarray:
    out = np.full((a.shape[0], cols), -1, a.dtype)
    out[:, : a.shape[1]] = a[:, :cols]
    return out


class _Batch:
    """Device buffers (and pinned host staging) for one batch shape, reused call after call.

    Allocating device memory costs about 100 µs a buffer and every copy has a fixed cost,
    so a batch packs its per-imp request into three arrays (uint64 bitsets, int64 values,
    float64 durations) copied once each; the kernels read column views of them.
    """

    def __init__(self, ix: DeviceIndex, i: int, w: int, k: int, m: int, blocked: int) -> None:
        cuda = ix.k.cuda
        self.shape = (i, w, k, m, blocked)
        self.u64_h = cuda.pinned_array((i, 2 * w + 1), np.uint64)
        self.i64_h = cuda.pinned_array((i, 4 + k + m), np.int64)
        self.f64_h = cuda.pinned_array((i, 2), np.float64)
        self.out_h = cuda.pinned_array((3, i), np.int64)
        self.u64 = cuda.device_array(self.u64_h.shape, np.uint64)
        self.i64 = cuda.device_array(self.i64_h.shape, np.int64)
        self.f64 = cuda.device_array(self.f64_h.shape, np.float64)
        self.blocked = cuda.device_array((i, max(blocked, 1)), np.bool_)
        self.mask = cuda.device_array((i, ix.n_rows), np.uint8)
        self.first_row = cuda.device_array((i, ix.n_entries), np.int32)
        self.chunks = max(1, -(-ix.n_rows // ix.k.chunk_rows))
        self.partials = cuda.device_array((i, self.chunks, 4), np.int64)
        self.out = cuda.device_array((3, i), np.int64)
        self.seconds = None  # [I, N] float32, allocated on the first host upload
        # the kernels' request arguments: views, made once
        self.request_cat, self.bcat = self.u64[:, :w], self.u64[:, w : 2 * w]
        self.country_bit = self.u64[:, 2 * w]
        self.country_word, self.devicetype = self.i64[:, 0], self.i64[:, 1]
        self.native, self.floors = self.i64[:, 2], self.i64[:, 3]
        self.banner_sizes, self.video_mimes = self.i64[:, 4 : 4 + k], self.i64[:, 4 + k :]
        self.min_duration, self.max_duration = self.f64[:, 0], self.f64[:, 1]

    def upload(self, req: RequestBatch, floors: np.ndarray | None) -> None:
        w, k = self.shape[1], self.shape[2]
        u, i, f = self.u64_h, self.i64_h, self.f64_h
        u[:, :w], u[:, w : 2 * w], u[:, 2 * w] = req.request_cat, req.bcat, req.country_bit
        i[:, 0], i[:, 1], i[:, 2] = req.country_word, req.devicetype, req.native
        i[:, 3] = 0 if floors is None else floors
        i[:, 4 : 4 + k], i[:, 4 + k :] = req.banner_sizes, req.video_mimes
        f[:, 0], f[:, 1] = req.min_duration, req.max_duration
        self.u64.copy_to_device(u)
        self.i64.copy_to_device(i)
        self.f64.copy_to_device(f)
        if self.shape[4]:
            self.blocked.copy_to_device(req.blocked)


class DeviceIndex:
    """The index arrays on the GPU: row arrays uploaded once, slot arrays and `active`
    refreshable in place; batch buffers cached per batch shape. One caller at a time."""

    BATCH_SHAPES_KEPT = 4

    def __init__(self, arrays: IndexArrays) -> None:
        self.k = get_kernels()
        cuda = self.k.cuda
        self.n_rows = arrays.n_rows
        self.n_entries = arrays.n_entries
        self.words = arrays.target_cat.shape[1]
        self.country_words = arrays.target_country.shape[1]
        self.d = SimpleNamespace(
            **{name: cuda.to_device(getattr(arrays, name)) for name in _ROW_DTYPES}
        )
        self.d.campaign_h = arrays.campaign
        self._batches: OrderedDict[tuple, _Batch] = OrderedDict()
        self.update_slots(arrays.budget, arrays.spent, arrays.multiplier)

    def update_slots(self, budget, spent, multiplier, remaining=None) -> None:
        """New budgets / spend / pacing multipliers (and remaining, default budget - spent)."""
        budget = np.ascontiguousarray(budget, np.int64)
        spent = np.ascontiguousarray(spent, np.int64)
        self._put("budget", budget)
        self._put("spent", spent)
        self._put("multiplier", np.ascontiguousarray(multiplier, np.float64))
        self._put("remaining", budget - spent if remaining is None else remaining, np.int64)

    def update_active(self, active) -> None:
        """New `active` flags (pause / resume), same rows."""
        self._put("active", np.ascontiguousarray(active, np.bool_))

    def _put(self, name: str, host, dtype=None) -> None:
        host = np.ascontiguousarray(host, dtype)
        current = getattr(self.d, name, None)
        if current is not None and current.shape == host.shape and current.dtype == host.dtype:
            current.copy_to_device(host)
        else:
            setattr(self.d, name, self.k.cuda.to_device(host))

    def batch(self, req: RequestBatch) -> _Batch:
        key = (
            req.n_imps, req.request_cat.shape[1], req.banner_sizes.shape[1],
            req.video_mimes.shape[1], req.blocked.shape[1],
        )  # fmt: skip
        b = self._batches.pop(key, None)
        if b is None:
            b = _Batch(self, *key)
            while len(self._batches) >= self.BATCH_SHAPES_KEPT:
                self._batches.popitem(last=False)
        self._batches[key] = b
        return b


def _grid_2d(n_rows: int, n_imps: int, threads: int, imps_per_thread: int = 1):
    """(row blocks, imp blocks): each thread takes one row for every gridDim.y-th imp."""
    return max(1, -(-n_rows // threads)), max(1, min(-(-n_imps // imps_per_thread), 65_535))


def _launch_eligibility(ix: DeviceIndex, req: RequestBatch, floors=None) -> _Batch:
    """Upload the batch; mask [I, N] uint8 and first_row [I, E] int32 on the device."""
    if req.request_cat.shape[1] != ix.words or req.bcat.shape[1] != ix.words:
        raise ValueError(f"request bitsets must have {ix.words} words, as the index")
    if req.blocked.shape[1] not in (0, ix.n_entries):
        raise ValueError(f"blocked must have {ix.n_entries} campaign entries (or 0: none)")
    if int(req.country_word.max()) >= ix.country_words:
        raise ValueError(f"country_word must be < {ix.country_words}")
    k, d, b = ix.k, ix.d, ix.batch(req)
    b.upload(req, floors)
    i, n, tpb = req.n_imps, ix.n_rows, k.threads
    k.fill_i32[_grid_2d(ix.n_entries, i, tpb), tpb](b.first_row, _NO_ROW)
    k.eligible_batch[_grid_2d(n, i, tpb, IMPS_PER_THREAD), tpb](
        n, d.active, d.campaign, d.slot, d.kind, d.size, d.mime, d.duration, d.devices,
        d.any_cat, d.target_cat, d.any_country, d.target_country, d.creative_cat, d.budget,
        d.spent, b.request_cat, b.country_word, b.country_bit, b.devicetype, b.bcat,
        b.banner_sizes, b.video_mimes, b.min_duration, b.max_duration, b.native, b.blocked,
        bool(req.blocked.shape[1]), b.mask, b.first_row,
    )  # fmt: skip
    return b


def _as_device_index(index: IndexArrays | DeviceIndex) -> DeviceIndex:
    return index if isinstance(index, DeviceIndex) else DeviceIndex(index)


def eligible_mask(index: IndexArrays | DeviceIndex, requests: RequestBatch) -> np.ndarray:
    """[I, N] uint8: 1 where the row may bid on the imp (no per-campaign dedupe)."""
    return _launch_eligibility(_as_device_index(index), requests).mask.copy_to_host()


def candidate_mask(index: IndexArrays | DeviceIndex, requests: RequestBatch) -> np.ndarray:
    """[I, N] bool: the CPU's candidate rows, the first eligible creative per campaign."""
    ix = _as_device_index(index)
    return _candidates(ix, _launch_eligibility(ix, requests))


def _candidates(ix: DeviceIndex, b: _Batch) -> np.ndarray:
    mask, first_row = b.mask.copy_to_host(), b.first_row.copy_to_host()
    return mask.astype(bool) & (first_row[:, ix.d.campaign_h] == np.arange(ix.n_rows))


def auction_batch(
    index: IndexArrays | DeviceIndex,
    requests: RequestBatch,
    seconds: np.ndarray,
    floors: np.ndarray,
    auction_type: int = SECOND_PRICE,
    increment: int = 1,
    remaining: np.ndarray | None = None,
    keep_masks: bool = False,
) -> BatchOutcome:
    """Eligibility, per-campaign dedupe, rank and price for I imps on the GPU.

    seconds: [I, N] float32 predicted attentive seconds per imp and row (only candidate
    rows are read), on the host or already on the device (a scorer on the GPU).
    floors: [I] int64 CPM micros. remaining: [S] int64 budget left per slot (default: the
    index's budget - spent, as last given to the DeviceIndex). Winners are index rows.
    keep_masks: also copy back the eligibility mask and the candidate rows (for tests).
    Pass a DeviceIndex (not IndexArrays) to keep the index and buffers on the GPU.
    """
    ix = _as_device_index(index)
    k, cuda = ix.k, ix.k.cuda
    i = requests.n_imps
    floors = np.ascontiguousarray(floors, np.int64)
    if tuple(seconds.shape) != (i, ix.n_rows):
        raise ValueError(f"seconds must be [{i}, {ix.n_rows}], not {list(seconds.shape)}")
    if floors.shape != (i,):
        raise ValueError(f"floors must be [{i}], not {list(floors.shape)}")
    if seconds.dtype != np.float32:
        if hasattr(seconds, "copy_to_host"):
            raise ValueError(f"seconds on the device must be float32, not {seconds.dtype}")
        seconds = seconds.astype(np.float32)
    d_remaining = ix.d.remaining
    if remaining is not None:
        d_remaining = cuda.to_device(np.ascontiguousarray(remaining, np.int64))
    b = _launch_eligibility(ix, requests, floors)
    if not hasattr(seconds, "copy_to_host"):  # a host array (device arrays have it)
        if b.seconds is None:
            b.seconds = cuda.device_array((i, ix.n_rows), np.float32)
        b.seconds.copy_to_device(np.ascontiguousarray(seconds))
        seconds = b.seconds
    tpb = k.threads
    k.rank_chunks[(b.chunks, min(i, 65_535)), tpb](
        ix.n_rows, k.chunk_rows, ix.d.campaign, ix.d.slot, b.mask, b.first_row, ix.d.acpm,
        ix.d.multiplier, seconds, d_remaining, ix.d.tie, b.floors, b.partials,
    )  # fmt: skip
    k.rank_and_price_batch[min(i, 2**31 - 1), tpb](
        b.partials, b.floors, np.int64(auction_type), np.int64(increment), b.out
    )
    b.out.copy_to_host(b.out_h)
    out = BatchOutcome(b.out_h[0].copy(), b.out_h[1].copy(), b.out_h[2].copy())
    if keep_masks:
        out = out._replace(mask=b.mask.copy_to_host(), candidates=_candidates(ix, b))
    return out


def warm_up() -> None:
    """Compile every kernel now (start-up), on a tiny batch with the production dtypes."""
    arrays = IndexArrays(
        active=np.ones(2, bool), campaign=np.array([0, 1]), slot=np.array([0, 1]),
        kind=np.array([BANNER, NATIVE]), size=np.array([(300 << 16) | 250, 0]),
        mime=np.zeros(2), duration=np.zeros(2), devices=np.full(2, 0xFF),
        any_cat=np.ones(2, bool), target_cat=np.zeros((2, 1)), any_country=np.ones(2, bool),
        target_country=np.zeros((2, 1)), creative_cat=np.zeros((2, 1)),
        acpm=np.array([1_000_000, 2_000_000]), tie=np.array([1, 2]),
        budget=np.full(2, 10**9), spent=np.zeros(2), multiplier=np.ones(2), n_entries=2,
    )  # fmt: skip
    requests = RequestBatch(
        request_cat=np.zeros((1, 1)), country_word=np.array([-1]), country_bit=np.zeros(1),
        devicetype=np.array([2]), bcat=np.zeros((1, 1)),
        banner_sizes=np.array([[(300 << 16) | 250]]), video_mimes=np.full((1, 1), -1),
        min_duration=np.zeros(1), max_duration=np.zeros(1), native=np.ones(1, bool),
        blocked=np.zeros((1, 2), bool),
    )  # fmt: skip
    ix = DeviceIndex(arrays)
    seconds = np.ones((1, 2), np.float32)
    auction_batch(ix, requests, seconds, np.zeros(1, np.int64), keep_masks=True)
    auction_batch(ix, requests, ix.k.cuda.to_device(seconds), np.zeros(1, np.int64))

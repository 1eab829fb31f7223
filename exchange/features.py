"""Features: what the scorer needs about each candidate, the user and the placement.

Per-candidate features are gathers from the index's arrays (no Python loop per
candidate); the user's history is cut or zero-padded to the model's fixed L.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from exchange.index import CampaignIndex
from exchange.openrtb import BidRequest, Imp
from exchange.users import UserState
from inference.runtime import placement_id
from inference.scorer import Placement, ScoringBatch


def placement_of(req: BidRequest, imp: Imp, hour: int) -> Placement:
    pos = 0
    if imp.banner is not None:
        pos = imp.banner.pos
    elif imp.video is not None:
        pos = imp.video.pos
    devicetype = req.device.devicetype if req.device is not None else 0
    return Placement(
        placement_id=placement_id(publisher_key(req), imp.tagid),
        pos=pos,
        devicetype=devicetype,
        hour=hour,
        instl=bool(imp.instl),
    )


def publisher_key(req: BidRequest) -> str:
    """What identifies the inventory: the site, the app, or the screen."""
    if req.site is not None:
        return "site:" + (req.site.id or req.site.domain)
    if req.app is not None:
        return "app:" + (req.app.bundle or req.app.id)
    return "dooh:" + (req.dooh.id if req.dooh is not None else "")


def history_of(req: BidRequest, user: UserState | None, length: int) -> tuple[np.ndarray, int]:
    """The newest `length` items of the user's history, zero-padded. ([L] int32, count)

    The caller's history (ext.attention.history) when it sends one: it knows the user
    beyond this exchange. Otherwise what the user store holds: the ads shown here."""
    items = req.user.history if req.user is not None else []
    if not items and user is not None:
        items = user.history
    items = items[:length]
    history = np.zeros(length, dtype=np.int32)
    history[: len(items)] = items
    return history, len(items)


def scoring_batch(
    index: CampaignIndex,
    rows: np.ndarray,
    placement: Placement,
    history: np.ndarray,
    history_len: int,
) -> ScoringBatch:
    ads, kind, width, height, duration = gather_candidates(
        rows, index.ad, index.kind, index.width, index.height, index.duration
    )
    return ScoringBatch(
        ads=ads,
        ad_kind=kind,
        ad_w=width,
        ad_h=height,
        ad_duration=duration,
        history=history,
        history_len=history_len,
        placement=placement,
    )


@njit(cache=True, nogil=True)
def gather_candidates(rows, ad, kind, width, height, duration):
    """The candidates' creative columns in one pass (five numpy gathers cost more)."""
    n = rows.shape[0]
    ads = np.empty(n, dtype=np.int32)  # [C]
    kinds = np.empty(n, dtype=np.int32)  # [C]
    widths = np.empty(n, dtype=np.int32)  # [C]
    heights = np.empty(n, dtype=np.int32)  # [C]
    durations = np.empty(n, dtype=np.float32)  # [C]
    for i in range(n):
        r = rows[i]
        ads[i], kinds[i], widths[i], heights[i] = ad[r], kind[r], width[r], height[r]
        durations[i] = duration[r]
    return ads, kinds, widths, heights, durations

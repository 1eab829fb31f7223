"""Features: what the scorer needs about each candidate, the user and the placement.

Per-candidate features are gathers from the index's arrays (no Python loop per
candidate); the user's history is cut or zero-padded to the model's fixed L.
"""

from __future__ import annotations

import numpy as np

from exchange.index import CampaignIndex
from exchange.openrtb import BidRequest, Imp
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


def history_of(req: BidRequest, length: int) -> tuple[np.ndarray, int]:
    """The newest `length` items of the user's history, zero-padded. ([L] int32, count)"""
    items = req.user.history[:length] if req.user is not None else []
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
    return ScoringBatch(
        ads=index.ad[rows],
        ad_kind=index.kind[rows].astype(np.int32),
        ad_w=index.width[rows],
        ad_h=index.height[rows],
        ad_duration=index.duration[rows],
        history=history,
        history_len=history_len,
        placement=placement,
    )

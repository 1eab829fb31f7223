"""A baseline attention predictor from placement and creative priors alone.

It stands behind the `Scorer` seam until the learned model lands and stays as
the no-history baseline the model is measured against. Figures are industry
rules of thumb: above-the-fold and full-screen slots are seen more often,
bigger banners hold the eye longer, video is watched for a share of its length.
"""

from __future__ import annotations

import numpy as np

from exchange.campaigns import CreativeKind
from inference.scorer import MAX_ATTENTIVE_SECONDS, Placement, Scores, ScoringBatch

# P(attentive view) of a banner by OpenRTB ad position.
BANNER_VIEW_BY_POS = {0: 0.5, 1: 0.7, 2: 0.5, 3: 0.35, 4: 0.65, 5: 0.4, 6: 0.45, 7: 0.85}
MOBILE_DEVICES = (1, 4, 5)  # mobile/tablet, phone, tablet
SCREEN_DEVICES = (3, 7)  # connected TV, set-top box

REFERENCE_AREA = 300 * 250
BANNER_SECONDS = 2.5  # attentive seconds of a viewed 300x250
NATIVE_SECONDS = 3.5
VIDEO_SHARE_WATCHED = 0.55
# P(click | attentive view), indexed by CreativeKind (0 unused).
VIDEO, NATIVE = int(CreativeKind.VIDEO), int(CreativeKind.NATIVE)  # plain ints: fast compares
CLICK_PER_VIEW = np.array([0.0, 0.003, 0.006, 0.01], dtype=np.float32)


def prior_seconds(kind: int, w: int, h: int, duration: float) -> float:
    """A creative's expected attentive seconds before anything is known of the placement
    or the user: what the auction ranks candidates by when there are too many to score."""
    view = {VIDEO: 0.75, NATIVE: 0.6}.get(kind, 0.5)
    if kind == VIDEO:
        seconds = VIDEO_SHARE_WATCHED * duration
    elif kind == NATIVE:
        seconds = NATIVE_SECONDS
    else:
        seconds = BANNER_SECONDS * min(max(((w * h) / REFERENCE_AREA) ** 0.5, 0.5), 2.0)
    return min(view * seconds, MAX_ATTENTIVE_SECONDS)


class BaselineScorer:
    name = "baseline"

    def history_item(self, ad: int) -> int:
        return ad + 1  # the baseline reads no history; 0 is padding

    def score(self, batch: ScoringBatch) -> Scores:
        kind = batch.ad_kind  # [C]
        view = self._view_by_kind(batch.placement)  # [4] indexed by kind
        p_view = view[kind]  # [C]

        area = (batch.ad_w * batch.ad_h).astype(np.float32)  # [C]
        banner_s = BANNER_SECONDS * np.clip(np.sqrt(area / REFERENCE_AREA), 0.5, 2.0)
        video_s = VIDEO_SHARE_WATCHED * batch.ad_duration
        seconds_if_viewed = np.where(
            kind == VIDEO, video_s, np.where(kind == NATIVE, NATIVE_SECONDS, banner_s)
        )
        seconds = np.minimum(p_view * seconds_if_viewed, MAX_ATTENTIVE_SECONDS)

        return Scores(
            p_view=p_view.astype(np.float32),
            seconds=seconds.astype(np.float32),
            p_click=(p_view * CLICK_PER_VIEW[kind]).astype(np.float32),
        )

    @staticmethod
    def _view_by_kind(placement: Placement) -> np.ndarray:
        """P(view) for each creative kind in this placement. [4] float32"""
        banner = 0.85 if placement.instl else BANNER_VIEW_BY_POS.get(placement.pos, 0.5)
        video, native = 0.75, 0.6
        if placement.devicetype in MOBILE_DEVICES:
            banner, native = banner * 1.05, native * 1.1
        if placement.devicetype in SCREEN_DEVICES:
            video = 0.9
        return np.array([0.0, banner, video, native], dtype=np.float32)

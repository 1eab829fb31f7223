"""The `Scorer` seam: what the auction asks of any attention predictor.

One call scores every candidate ad of one impression. Inputs are flat arrays
built by the features stage; outputs are three arrays aligned with the
candidates. The baseline predictor and the learned model both implement it,
so the auction never knows which one runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

MAX_ATTENTIVE_SECONDS = 180.0  # view time is capped, as aCPM conventions do


@dataclass(slots=True)
class Placement:
    """Where the ad would show: one per impression."""

    placement_id: int  # stable hash of the site/app and tag (runtime.placement_id)
    pos: int  # OpenRTB ad position (0 unknown, 1 above the fold, 3 below, 7 full screen, ...)
    devicetype: int  # OpenRTB device type (0 unknown)
    hour: int  # hour of day, UTC, 0..23
    instl: bool  # interstitial / full screen


@dataclass(slots=True)
class ScoringBatch:
    ads: np.ndarray  # [C] int32 ad (creative) ids
    ad_kind: np.ndarray  # [C] int32 CreativeKind
    ad_w: np.ndarray  # [C] int32 creative width (0 for native)
    ad_h: np.ndarray  # [C] int32 creative height
    ad_duration: np.ndarray  # [C] float32 video seconds (0 otherwise)
    history: np.ndarray  # [L] int32 user's recent item ids, newest first, 0-padded
    history_len: int  # valid entries at the front of `history`
    placement: Placement


@dataclass(slots=True)
class Scores:
    p_view: np.ndarray  # [C] float32 P(attentive view)
    seconds: np.ndarray  # [C] float32 E[attentive seconds], zeros included
    p_click: np.ndarray  # [C] float32 P(click)


class Scorer(Protocol):
    name: str

    def score(self, batch: ScoringBatch) -> Scores:
        """Predict attention for every candidate; never does I/O or compiles."""
        ...

    def history_item(self, ad: int) -> int:
        """The id an exchange ad, once shown, takes in the user's behaviour history: the
        model's item id for it, so that the model sees the exposure (fatigue)."""
        ...

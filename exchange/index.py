"""The campaign index: every active creative as one row of flat arrays.

An index is an immutable snapshot. Admin changes build a new one and swap the
reference, so a request in flight never sees a half-updated index. Rows are
ordered by campaign id, then creative order: the first eligible row of each
campaign is its candidate, and lower campaign ids win exact ties.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from exchange.campaigns import Campaign, Creative, CreativeKind
from exchange.state import CampaignState
from kernels import eligibility

ANY_DEVICE = 0xFF  # bit d set = device type d admitted; all bits = untargeted


def size_key(w: int, h: int) -> int:
    return (w << 16) | h


def category_and_parents(cat: str) -> list[str]:
    """IAB categories nest as `IAB1-5` under `IAB1`: a rule on the parent covers both."""
    parent, dash, _ = cat.partition("-")
    return [cat, parent] if dash else [cat]


def _rows_by_key(pairs: list[tuple[str, int]]) -> dict[str, np.ndarray]:
    grouped: dict[str, list[int]] = defaultdict(list)
    for key, row in pairs:
        grouped[key].append(row)
    return {k: np.unique(np.asarray(v, dtype=np.int32)) for k, v in grouped.items()}


class CampaignIndex:
    def __init__(self, campaigns: list[Campaign], state: CampaignState, ad_ids: dict) -> None:
        active = sorted((c for c in campaigns if not c.paused), key=lambda c: c.id)
        self.campaigns = active
        self.creatives: list[Creative] = []
        campaign_of, slot, ad, kind, size, duration, mime, acpm, devices = ([] for _ in range(9))
        any_cat, any_country = [], []
        cat_targets, country_targets, blocked_cats, domains, bundles = [], [], [], [], []
        self.mime_ids: dict[str, int] = {}
        for ci, campaign in enumerate(active):
            t = campaign.targeting
            device_mask = ANY_DEVICE
            if t.devicetype:
                device_mask = 0
                for d in t.devicetype:
                    device_mask |= 1 << d
            for creative in campaign.creatives:
                row = len(self.creatives)
                self.creatives.append(creative)
                campaign_of.append(ci)
                slot.append(state.slot(campaign.id))
                ad.append(ad_ids.setdefault((campaign.id, creative.id), len(ad_ids)))
                kind.append(int(creative.kind))
                size.append(size_key(creative.w, creative.h))
                duration.append(creative.duration)
                mime.append(self.mime_ids.setdefault(creative.mime, len(self.mime_ids)))
                acpm.append(campaign.acpm_micros)
                devices.append(device_mask)
                any_cat.append(not t.cat)
                any_country.append(not t.country)
                cat_targets += [(c, row) for c in t.cat]
                country_targets += [(c, row) for c in t.country]
                blocked_cats += [(p, row) for c in creative.cat for p in category_and_parents(c)]
                domains += [(d, row) for d in campaign.adomain]
                if campaign.bundle:
                    bundles.append((campaign.bundle, row))
        self.row_campaign = np.asarray(campaign_of, dtype=np.int32)  # [N]
        self.row_slot = np.asarray(slot, dtype=np.int32)  # [N]
        self.row_ad = np.asarray(ad, dtype=np.int32)  # [N]
        self.row_kind = np.asarray(kind, dtype=np.int32)  # [N] (int32, as the model takes it)
        self.row_size = np.asarray(size, dtype=np.int64)  # [N]
        self.row_duration = np.asarray(duration, dtype=np.float32)  # [N] video seconds
        self.row_mime = np.asarray(mime, dtype=np.int32)  # [N]
        self.row_acpm = np.asarray(acpm, dtype=np.int64)  # [N] micros per 1000 attentive s
        self.row_devices = np.asarray(devices, dtype=np.uint8)  # [N] device-type bitset
        self.row_any_cat = np.asarray(any_cat, dtype=bool)  # [N]
        self.row_any_country = np.asarray(any_country, dtype=bool)  # [N]
        self.cat_rows = _rows_by_key(cat_targets)
        self.country_rows = _rows_by_key(country_targets)
        self.blocked_cat_rows = _rows_by_key(blocked_cats)
        self.domain_rows = _rows_by_key(domains)
        self.bundle_rows = _rows_by_key(bundles)
        self.is_banner = self.row_kind == int(CreativeKind.BANNER)
        self.is_video = self.row_kind == int(CreativeKind.VIDEO)
        self.is_native = self.row_kind == int(CreativeKind.NATIVE)

    def __len__(self) -> int:
        return len(self.creatives)

    def request_mask(
        self,
        categories: list[str],
        country: str,
        devicetype: int,
        bcat: list[str],
        badv: list[str],
        bapp: list[str],
        budget_left: np.ndarray,
    ) -> np.ndarray:
        """Rows any imp of this request may use: targeting, blocking, budget. [N] bool"""
        cat_ok = eligibility.admit(
            self.row_any_cat,
            self.cat_rows,
            [p for c in categories for p in category_and_parents(c)],
        )
        country_ok = eligibility.admit(self.row_any_country, self.country_rows, [country])
        mask = cat_ok & country_ok & eligibility.device_ok(self.row_devices, devicetype)
        mask &= budget_left[self.row_slot]
        for rows_by, blocked in (
            (self.blocked_cat_rows, bcat),
            (self.domain_rows, badv),
            (self.bundle_rows, bapp),
        ):
            eligibility.block(mask, rows_by, blocked)
        return mask

    def fit_mask(self, banner_sizes: list[int], video, native: bool) -> np.ndarray:
        """Rows whose creative fits the imp's banner sizes, video or native slot. [N] bool"""
        fit = eligibility.banner_fit(self.is_banner, self.row_size, banner_sizes)
        if video is not None:
            mimes = [self.mime_ids[m] for m in video.mimes if m in self.mime_ids]
            fit |= eligibility.video_fit(
                self.is_video,
                self.row_mime,
                self.row_duration,
                mimes,
                video.minduration,
                video.maxduration,
            )
        if native:
            fit |= self.is_native
        return fit

    def candidates(self, mask: np.ndarray) -> np.ndarray:
        """One row per campaign (its first eligible creative). [C] int64 row ids"""
        return eligibility.first_per_group(np.flatnonzero(mask), self.row_campaign)

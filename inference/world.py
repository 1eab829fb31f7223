"""The simulated world: users, ads, placements, histories and impressions with known truth.

There is no public ad data offline, so the model is trained and judged on this world.
Because the world writes down the true P(attentive view), the true expected attentive
seconds and the true P(click) of every impression, the Bayes-optimal figures (ranking by
the truth) are computable: they are the ceiling every model is measured against.

The truth is a function of OBSERVABLE inputs only (the behaviour history, the ad, the
placement, the context), never of the latent user interest, so a model that sees what
the exchange sees can in principle reach the Bayes-optimal AUC.

Everything is vectorised numpy (no per-impression Python): a million impressions take
seconds, so the same world feeds training, pacing simulations and load tests.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from inference.scorer import MAX_ATTENTIVE_SECONDS

# --- latent world -------------------------------------------------------------------
ITEM_TOPIC_ALPHA = 0.2  # Dirichlet spread of an item's secondary topics
ITEM_PRIMARY_WEIGHT = 0.8  # share of an item's topic mass on its primary topic
USER_INTEREST_ALPHA = 0.3  # sparse user interests: a few topics each
COLD_USER_SHARE = 0.1  # users without any history (cold start)
ACTIVITY_MEDIAN = 20.0  # median expected history length of a warm user
ACTIVITY_SIGMA = 0.7  # log-normal spread of user activity

KIND_BANNER, KIND_VIDEO, KIND_NATIVE = 1, 2, 3  # exchange.campaigns.CreativeKind
KIND_SHARES = {KIND_BANNER: 0.60, KIND_VIDEO: 0.25, KIND_NATIVE: 0.15}
VIDEO_DURATIONS = np.array([6, 15, 30], dtype=np.int16)  # seconds
VIDEO_DURATION_SHARES = np.array([0.3, 0.5, 0.2])
AD_QUALITY_SD = 0.3  # creative quality, on the view logit

# OpenRTB ad position -> (traffic share, mean viewability, dwell multiplier)
POSITIONS = {
    0: (0.25, 0.50, 1.0),  # unknown
    1: (0.30, 0.70, 1.0),  # above the fold
    3: (0.20, 0.35, 0.8),  # below the fold
    4: (0.06, 0.60, 0.9),  # header
    5: (0.05, 0.40, 0.8),  # footer
    6: (0.04, 0.45, 0.9),  # sidebar
    7: (0.10, 0.85, 1.6),  # full screen
}
VIEWABILITY_CONCENTRATION = 8.0  # Beta(a, b) with a + b = this: placements vary widely
DWELL_MEDIAN_S = 3.0  # typical attentive seconds of a viewed placement
DWELL_SIGMA = 0.4  # log-normal spread of placement dwell
PLACEMENT_TRAFFIC_SIGMA = 1.0  # log-normal traffic weights: some placements are busy

# OpenRTB device type -> (traffic share, view-logit effect, log-seconds effect)
DEVICES = {
    1: (0.03, 0.0, 0.0),  # mobile/tablet (generic)
    2: (0.30, 0.0, 0.1),  # personal computer
    3: (0.08, 0.5, 0.5),  # connected TV: lean-back, full screen
    4: (0.45, 0.1, -0.2),  # phone: scrolled past quickly
    5: (0.10, 0.1, 0.1),  # tablet
    6: (0.02, -0.1, 0.0),  # connected device
    7: (0.02, 0.3, 0.4),  # set-top box
}

# Relative traffic per UTC hour: a night trough, a morning rise, an evening peak.
HOUR_TRAFFIC = np.array(
    [3, 2, 1.5, 1, 1, 1.5, 2.5, 4, 5, 5.5, 5.5, 6, 6.5, 6, 5.5, 5.5, 6, 7, 8, 9, 9.5, 9, 7, 5]
)
DIURNAL_VIEW_AMPLITUDE = 0.3  # evening attention is higher than early-morning attention
DIURNAL_VIEW_PEAK_HOUR = 21

# --- impressions --------------------------------------------------------------------
TARGETED_SHARE = 0.3  # candidate ads drawn from the user's interests (else uniform)
RECENT_EXPOSURE_SHARE = 0.25  # impressions whose candidate ad was shown recently
FATIGUE_WINDOW = 10  # fatigue counts the candidate among the newest 10 history items
MAX_RECENT_EXPOSURES = 3

# --- ground truth -------------------------------------------------------------------
MATCH_BETA = 4.0  # sharpness of the target attention over the history
VIEW_BIAS = -1.7  # b0
VIEW_VIEWABILITY = 1.0  # a1, on logit(viewability)
VIEW_MATCH = 2.0  # a2
VIEW_FATIGUE = 0.5  # a3, per recent exposure
KIND_VIEW = {KIND_BANNER: -0.2, KIND_VIDEO: 0.3, KIND_NATIVE: 0.1}

SECONDS_SIGMA = 0.8  # log-normal spread of attentive seconds given a view
VIDEO_WATCH_SHARE = 0.15  # video adds log(1 + share * duration) to the log-seconds
SECONDS_MATCH = 0.8  # b
SECONDS_FATIGUE = 0.25  # c

CLICK_BIAS = -5.5  # c0
CLICK_MATCH = 2.0  # c1
KIND_CLICK = {KIND_BANNER: 0.0, KIND_VIDEO: -0.4, KIND_NATIVE: 0.4}

TRUTH_CHUNK = 1 << 15  # rows per block of the [n, L] truth arithmetic (cache-sized)


@dataclass(frozen=True)
class WorldConfig:
    seed: int = 0  # the latent world (users, items, placements)
    n_topics: int = 16
    n_items: int = 4096  # item ids 1..n_items-1; 0 is padding and never an item
    n_ads: int = 1024  # ads are items 1..n_ads (ad id a IS item id a)
    n_users: int = 50_000
    n_placements: int = 512
    history_len: int = 50  # L, fixed

    def __post_init__(self) -> None:
        if not self.n_topics <= self.n_ads < self.n_items:
            raise ValueError(
                f"need n_topics <= n_ads < n_items (every topic has an ad, item 0 is "
                f"padding); got {self.n_topics}, {self.n_ads}, {self.n_items}"
            )
        if self.history_len < FATIGUE_WINDOW:
            raise ValueError(f"history_len must be >= {FATIGUE_WINDOW}")
        if self.n_users < 1 or self.n_placements < 1:
            raise ValueError("need at least one user and one placement")


@dataclass(frozen=True)
class Impressions:
    """A columnar batch of impressions: inputs, ground truth and sampled labels."""

    # inputs (what the exchange sees)
    user: np.ndarray  # [n] int32
    placement: np.ndarray  # [n] int32
    pos: np.ndarray  # [n] int8 OpenRTB ad position of the placement
    devicetype: np.ndarray  # [n] int8 OpenRTB device type
    hour: np.ndarray  # [n] int8 UTC hour
    ad: np.ndarray  # [n] int32 candidate ad = item id 1..n_ads
    ad_kind: np.ndarray  # [n] int8 1 banner, 2 video, 3 native
    ad_duration: np.ndarray  # [n] int16 video seconds, 0 otherwise
    history: np.ndarray  # [n, L] int32 item ids, newest first, 0-padded
    history_len: np.ndarray  # [n] int32
    # ground truth
    match: np.ndarray  # [n] float32 target attention of the ad over the history
    fatigue: np.ndarray  # [n] float32 candidate's count among the newest 10 items
    p_view: np.ndarray  # [n] float32 P(attentive view)
    p_click: np.ndarray  # [n] float32 P(click), includes the view
    expected_seconds: np.ndarray  # [n] float32 E[attentive seconds], zeros included
    # labels sampled from the truth
    viewed: np.ndarray  # [n] bool
    seconds: np.ndarray  # [n] float32 0 when not viewed, capped at 180
    clicked: np.ndarray  # [n] bool, only where viewed

    def __len__(self) -> int:
        return len(self.user)

    def take(self, idx: np.ndarray | slice) -> Impressions:
        """A row subset (batches, splits), every column indexed alike."""
        return Impressions(**{f.name: getattr(self, f.name)[idx] for f in dataclasses.fields(self)})


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def _norm_cdf(x: np.ndarray) -> np.ndarray:
    """Standard normal CDF via Abramowitz-Stegun 7.1.26 erf (|error| < 1.5e-7), no scipy."""
    z = np.abs(x) / np.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    erf = 1.0 - poly * np.exp(-z * z)
    return 0.5 * (1.0 + np.sign(x) * erf)


def capped_lognormal_mean(mu: np.ndarray, sigma: float, cap: float) -> np.ndarray:
    """E[min(S, cap)] for S ~ LogNormal(mu, sigma): the exact mean of the capped seconds."""
    log_cap = np.log(cap)
    below = np.exp(mu + 0.5 * sigma**2) * _norm_cdf((log_cap - mu - sigma**2) / sigma)
    return below + cap * (1.0 - _norm_cdf((log_cap - mu) / sigma))


def _table(mapping: dict[int, float], size: int) -> np.ndarray:
    """A lookup array indexed by the mapping's integer codes (0 where absent)."""
    out = np.zeros(size, dtype=np.float32)  # [size]
    out[list(mapping)] = list(mapping.values())
    return out


class World:
    """One seeded latent world; `impressions(n, seed)` samples traffic from it."""

    def __init__(self, config: WorldConfig | None = None) -> None:
        self.config = cfg = config or WorldConfig()
        rng = np.random.default_rng(cfg.seed)
        k = cfg.n_topics

        # Items: a primary topic each, every topic holding ads and items alike.
        primary = np.empty(cfg.n_items, dtype=np.int64)  # [n_items]
        primary[0] = -1
        primary[1 : cfg.n_ads + 1] = rng.permutation(np.arange(cfg.n_ads) % k)
        primary[cfg.n_ads + 1 :] = rng.permutation(np.arange(cfg.n_items - 1 - cfg.n_ads) % k)
        spread = rng.dirichlet(np.full(k, ITEM_TOPIC_ALPHA), size=cfg.n_items)  # [n_items, K]
        topic = ITEM_PRIMARY_WEIGHT * np.eye(k)[primary] + (1 - ITEM_PRIMARY_WEIGHT) * spread
        topic /= np.linalg.norm(topic, axis=1, keepdims=True)
        topic[0] = 0.0
        self.item_primary = primary  # [n_items], -1 for padding
        self.item_topic = topic.astype(np.float32)  # [n_items, K] unit rows, row 0 zeros
        # Items (and ads) grouped by primary topic, for vectorised topic -> item sampling.
        self._topic_items, self._topic_item_start = self._group(primary, 1, cfg.n_items, k)
        self._topic_ads, self._topic_ad_start = self._group(primary, 1, cfg.n_ads + 1, k)
        # Ad x item topic similarity, so history attention is a gather, not [n, L, K] math.
        self._similarity = (
            self.item_topic[: cfg.n_ads + 1] @ self.item_topic.T
        )  # [n_ads+1, n_items]

        # Ads, indexed by item id (index 0 unused).
        kinds = np.array(list(KIND_SHARES), dtype=np.int8)
        self.ad_kind = np.zeros(cfg.n_ads + 1, dtype=np.int8)  # [n_ads+1]
        self.ad_kind[1:] = rng.choice(kinds, size=cfg.n_ads, p=list(KIND_SHARES.values()))
        durations = rng.choice(VIDEO_DURATIONS, size=cfg.n_ads + 1, p=VIDEO_DURATION_SHARES)
        self.ad_duration = np.where(self.ad_kind == KIND_VIDEO, durations, 0).astype(np.int16)
        self.ad_quality = rng.normal(0.0, AD_QUALITY_SD, cfg.n_ads + 1).astype(np.float32)
        self.ad_quality[0] = 0.0

        # Placements: position sets the viewability prior and scales the dwell.
        positions = np.array(list(POSITIONS), dtype=np.int8)
        pos_share, pos_view, pos_dwell = (
            np.array(c) for c in zip(*POSITIONS.values(), strict=True)
        )
        which = rng.choice(len(positions), size=cfg.n_placements, p=pos_share)
        self.placement_pos = positions[which]  # [P] int8
        mean = pos_view[which]
        self.placement_viewability = (
            rng.beta(mean * VIEWABILITY_CONCENTRATION, (1 - mean) * VIEWABILITY_CONCENTRATION)
            .clip(0.01, 0.99)
            .astype(np.float32)
        )  # [P]
        self.placement_dwell = (
            DWELL_MEDIAN_S * pos_dwell[which] * rng.lognormal(0.0, DWELL_SIGMA, cfg.n_placements)
        ).astype(np.float32)  # [P] seconds
        traffic = rng.lognormal(0.0, PLACEMENT_TRAFFIC_SIGMA, cfg.n_placements)
        self._placement_cdf = np.cumsum(traffic) / traffic.sum()  # [P]

        # Users: sparse interests; activity = expected history length (0 for cold users).
        self.user_interest = rng.dirichlet(
            np.full(k, USER_INTEREST_ALPHA), size=cfg.n_users
        ).astype(np.float32)  # [U, K]
        activity = ACTIVITY_MEDIAN * rng.lognormal(0.0, ACTIVITY_SIGMA, cfg.n_users)
        cold = rng.random(cfg.n_users) < COLD_USER_SHARE
        self.user_activity = np.where(cold, 0.0, activity).astype(np.float32)  # [U]
        # Each user's interest CDF shifted by the user index, flattened: one searchsorted
        # then samples a topic for many (user, draw) pairs at once.
        cdf = np.cumsum(self.user_interest.astype(np.float64), axis=1)  # [U, K]
        cdf[:, -1] = 1.0
        lo = np.concatenate([np.zeros((cfg.n_users, 1)), cdf[:, :-1]], axis=1)  # [U, K]
        self._interest_lo = lo.ravel()  # [U*K]
        self._interest_width = (cdf - lo).ravel()  # [U*K]
        self._interest_cdf = (cdf + np.arange(cfg.n_users)[:, None]).ravel()  # [U*K]

        # Context: devices and hours.
        self._device_ids = np.array(list(DEVICES), dtype=np.int8)
        self._device_share = np.array([v[0] for v in DEVICES.values()])
        self.device_view = _table({d: v[1] for d, v in DEVICES.items()}, 8)  # [8] by devicetype
        self.device_seconds = _table({d: v[2] for d, v in DEVICES.items()}, 8)  # [8]
        self.hour_share = HOUR_TRAFFIC / HOUR_TRAFFIC.sum()  # [24]
        hours = np.arange(24)
        self.hour_view = (
            DIURNAL_VIEW_AMPLITUDE * np.cos(2 * np.pi * (hours - DIURNAL_VIEW_PEAK_HOUR) / 24)
        ).astype(np.float32)  # [24]
        self.kind_view = _table(KIND_VIEW, 4)  # [4] by ad kind
        self.kind_click = _table(KIND_CLICK, 4)  # [4]

    @staticmethod
    def _group(primary: np.ndarray, lo: int, hi: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Ids lo..hi-1 sorted by primary topic, and each topic's start offset ([K+1])."""
        ids = np.arange(lo, hi)
        order = np.argsort(primary[lo:hi], kind="stable")
        counts = np.bincount(primary[lo:hi], minlength=k)
        return ids[order].astype(np.int32), np.concatenate([[0], np.cumsum(counts)])

    def _sample_from_interest(
        self, users: np.ndarray, u: np.ndarray, grouped: np.ndarray, start: np.ndarray
    ) -> np.ndarray:
        """One id per draw: a topic from the user's interest, then a uniform id of that topic.

        A single uniform does both: it picks the topic through the user's shifted CDF, and
        its position inside that topic's CDF interval is again uniform and picks the id.
        """
        k = self.config.n_topics
        flat = np.searchsorted(self._interest_cdf, users + u, side="right")
        flat = np.minimum(flat, users * k + k - 1)  # guard float rounding at the top
        topics = flat - users * k
        width = np.maximum(self._interest_width[flat], 1e-300)
        within = np.clip((u - self._interest_lo[flat]) / width, 0.0, 1.0 - 1e-12)
        count = start[topics + 1] - start[topics]
        return grouped[start[topics] + (within * count).astype(np.int64)]

    def impressions(self, n: int, seed: int) -> Impressions:
        """Sample n impressions with their truth and labels; `seed` is the traffic, not the world.

        Train, validation and evaluation use different sample seeds of the same world.
        """
        cfg = self.config
        big_l = cfg.history_len
        rng = np.random.default_rng([cfg.seed, seed])

        user = rng.integers(0, cfg.n_users, n).astype(np.int32)  # [n]
        placement = np.searchsorted(self._placement_cdf, rng.random(n), side="right")
        placement = np.minimum(placement, cfg.n_placements - 1).astype(np.int32)  # [n]
        devicetype = rng.choice(self._device_ids, size=n, p=self._device_share)  # [n] int8
        hour = rng.choice(24, size=n, p=self.hour_share).astype(np.int8)  # [n]

        # Candidate ads: some targeted at the user's interests, the rest run of network.
        targeted = self._sample_from_interest(
            user.astype(np.int64), rng.random(n), self._topic_ads, self._topic_ad_start
        )
        ad = np.where(
            rng.random(n) < TARGETED_SHARE, targeted, rng.integers(1, cfg.n_ads + 1, n)
        ).astype(np.int32)  # [n]

        # Histories: drawn from interests, newest first, only the valid slots are sampled.
        history_len = np.minimum(rng.poisson(self.user_activity[user]), big_l).astype(np.int32)
        valid = np.arange(big_l) < history_len[:, None]  # [n, L]
        slot_user = np.repeat(user.astype(np.int64), history_len)  # [sum(len)]
        history = np.zeros((n, big_l), dtype=np.int32)  # [n, L]
        history[valid] = self._sample_from_interest(
            slot_user, rng.random(len(slot_user)), self._topic_items, self._topic_item_start
        )
        # Recent exposures: the candidate itself in 1-3 random slots of the newest 10.
        window = np.minimum(history_len, FATIGUE_WINDOW)  # [n]
        copies = np.minimum(rng.integers(1, MAX_RECENT_EXPOSURES + 1, n), window)
        copies = np.where(rng.random(n) < RECENT_EXPOSURE_SHARE, copies, 0)  # [n]
        keys = rng.random((n, FATIGUE_WINDOW))  # [n, 10]
        keys[np.arange(FATIGUE_WINDOW) >= window[:, None]] = np.inf
        rank = np.argsort(np.argsort(keys, axis=1), axis=1)  # [n, 10]
        exposed = rank < copies[:, None]  # [n, 10]
        history[:, :FATIGUE_WINDOW][exposed] = np.broadcast_to(ad[:, None], exposed.shape)[exposed]

        kind = self.ad_kind[ad]
        imps = self._truth(placement, devicetype, hour, ad, kind, history, history_len)
        # Labels: a view, then capped log-normal seconds and a click given the view.
        viewed = rng.random(n) < imps["p_view"]
        raw = np.exp(imps["mu"] + SECONDS_SIGMA * rng.standard_normal(n))
        seconds = np.where(viewed, np.minimum(raw, MAX_ATTENTIVE_SECONDS), 0.0)
        clicked = viewed & (rng.random(n) < imps["p_click_given_view"])
        return Impressions(
            user=user,
            placement=placement,
            pos=self.placement_pos[placement],
            devicetype=devicetype,
            hour=hour,
            ad=ad,
            ad_kind=kind,
            ad_duration=self.ad_duration[ad],
            history=history,
            history_len=history_len,
            match=imps["match"],
            fatigue=imps["fatigue"],
            p_view=imps["p_view"],
            p_click=imps["p_click"],
            expected_seconds=imps["expected_seconds"],
            viewed=viewed,
            seconds=seconds.astype(np.float32),
            clicked=clicked,
        )

    def _history_terms(
        self, ad: np.ndarray, history: np.ndarray, history_len: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """match (softmax(beta r)-weighted r over valid slots) and fatigue, in cache blocks."""
        n = len(ad)
        match = np.empty(n, dtype=np.float32)  # [n]
        fatigue = np.empty(n, dtype=np.float32)  # [n]
        n_items = self.config.n_items
        sim = self._similarity.ravel()
        big_l = history.shape[1]
        for lo in range(0, n, TRUTH_CHUNK):
            hi = min(lo + TRUTH_CHUNK, n)
            a = ad[lo:hi, None].astype(np.int64)  # [b, 1]
            h = history[lo:hi]  # [b, L]
            r = sim[a * n_items + h]  # [b, L]; padding rows of item_topic are 0
            w = np.exp(MATCH_BETA * r)  # r in [0, 1]: no overflow
            w *= np.arange(big_l) < history_len[lo:hi, None]
            total = w.sum(axis=1)
            match[lo:hi] = np.where(total > 0, (w * r).sum(axis=1) / np.maximum(total, 1e-30), 0)
            fatigue[lo:hi] = (h[:, :FATIGUE_WINDOW] == a).sum(axis=1)
        return match, fatigue

    def view_logit(self, imps: Impressions, *, use_history: bool = True) -> np.ndarray:
        """The true P(view) logit; without history it is the ceiling of a history-blind model."""
        logit = self._context_logit(
            imps.placement, imps.devicetype, imps.ad_kind, imps.hour, imps.ad
        )
        if use_history:
            logit = logit + VIEW_MATCH * imps.match - VIEW_FATIGUE * imps.fatigue
        return logit.astype(np.float32)

    def expected_seconds(self, imps: Impressions, ad: int) -> np.ndarray:
        """True E[attentive seconds] of ad `ad` shown on each of `imps` instead of their own
        candidate: what one campaign's creative would get there (the market's values)."""
        ads = np.full(len(imps), ad, dtype=np.int32)  # [n]
        kind = np.full(len(imps), self.ad_kind[ad], dtype=np.int8)
        truth = self._truth(
            imps.placement, imps.devicetype, imps.hour, ads, kind, imps.history, imps.history_len
        )
        return truth["expected_seconds"]  # [n] float32

    def _context_logit(
        self,
        placement: np.ndarray,
        devicetype: np.ndarray,
        kind: np.ndarray,
        hour: np.ndarray,
        ad: np.ndarray,
    ) -> np.ndarray:
        """The P(view) logit terms that do not depend on the history."""
        return (
            VIEW_BIAS
            + VIEW_VIEWABILITY * _logit(self.placement_viewability[placement])
            + self.device_view[devicetype]
            + self.kind_view[kind]
            + self.hour_view[hour]
            + self.ad_quality[ad]
        )  # [n]

    def _truth(
        self,
        placement: np.ndarray,
        devicetype: np.ndarray,
        hour: np.ndarray,
        ad: np.ndarray,
        kind: np.ndarray,
        history: np.ndarray,
        history_len: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """Ground truth from the observable inputs, plus the seconds' log-mean for sampling."""
        match, fatigue = self._history_terms(ad, history, history_len)
        context = self._context_logit(placement, devicetype, kind, hour, ad)
        p_view = _sigmoid(context + VIEW_MATCH * match - VIEW_FATIGUE * fatigue)  # [n]
        video = np.log1p(VIDEO_WATCH_SHARE * self.ad_duration[ad].astype(np.float32))
        mu = (
            np.log(self.placement_dwell[placement])
            + video
            + SECONDS_MATCH * match
            - SECONDS_FATIGUE * fatigue
            + self.device_seconds[devicetype]
        )  # [n] log-seconds given a view
        click_given_view = _sigmoid(CLICK_BIAS + CLICK_MATCH * match + self.kind_click[kind])
        return {
            "match": match,
            "fatigue": fatigue,
            "p_view": p_view.astype(np.float32),
            "p_click": (p_view * click_given_view).astype(np.float32),
            "p_click_given_view": click_given_view,
            "mu": mu,
            "expected_seconds": (
                p_view * capped_lognormal_mean(mu, SECONDS_SIGMA, MAX_ATTENTIVE_SECONDS)
            ).astype(np.float32),
        }

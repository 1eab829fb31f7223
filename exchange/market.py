"""The market simulator: whole days of auctions for a set of campaigns, to pace against.

A day is the simulated world's traffic in time order, cut into the pacer's control
intervals. Every campaign has one creative, an aCPM and targeting; for each
impression it is eligible for, the day records

    value   its bid at multiplier 1: aCPM × the true E[attentive seconds] (CPM micros)
    price   the highest other bid: the market's aCPM (by day and hour) × what the
            impression's own candidate ad would get there × log-normal noise (CPM micros)

so competing demand follows the hour and the placement. Campaigns face the market's
logged prices and do not move each other's (the replay assumption of DRLB and the
iPinYou studies): one campaign's result then depends only on its own pacing, and
the hindsight optimum R* is well defined.

`simulate` plays a day for E environments at once (campaigns × budgets × policies):
each interval the pacer sees counters and sets multipliers, then a compiled loop
runs the interval's auctions in time order with the exchange's own rules (bid =
floor(value × multiplier), a bid only enters while bid / 1000 fits the remaining
budget, second price) — so a simulated campaign can never overspend, exactly like
`CampaignState.reserve` in the server.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit

from exchange.pacers import SECONDS_PER_DAY, Observation, Pacer, traffic_profile
from inference.world import World, WorldConfig

BUDGET_FRACTIONS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2)  # of the unpaced spend: tight .. loose
EVAL_SEED_BASE = 1_000_000  # held-out days use seeds from here; training never does

MARKET_ACPM_MICROS = 4_000_000  # the competing demand's typical aCPM: $4 per 1000 attentive s
PRICE_SIGMA = 0.6  # log-normal spread of the highest other bid around its expectation
DAY_LEVEL_SIGMA = 0.15  # day-to-day market price level
DAY_TRAFFIC_SIGMA = 0.10  # day-to-day traffic volume
HOUR_DEMAND_AMPLITUDE = 0.25  # demand (prices) peaks in the evening, like traffic
HOUR_DEMAND_PEAK = 20
FLOOR_CPM_MICROS = 50_000  # the publishers' floor: $0.05 CPM
HOUR_TRAFFIC_SIGMA = 0.15  # each day's hourly traffic strays from the forecast shape
SURGES_PER_DAY = 2.0  # mean number of demand surges a day (a rival's flight starts, a sale)
SURGE_HOURS = (1, 6)  # a surge lasts 1-6 hours
SURGE_LEVEL = (0.2, 0.8)  # and raises prices by 20-80%


@dataclass(frozen=True)
class MarketConfig:
    # The day's traffic before each hour keeps its own share (about 3/4 is kept) and
    # before each campaign's targeting.
    impressions_per_day: int = 100_000
    campaigns: int = 16
    intervals: int = 96  # control intervals per day (15 minutes)
    world: WorldConfig = field(default_factory=lambda: WorldConfig(seed=11, n_users=20_000))

    def __post_init__(self) -> None:
        if self.impressions_per_day < 100 or self.campaigns < 1 or self.intervals < 2:
            raise ValueError(
                "a market needs >= 100 impressions a day, >= 1 campaign and >= 2 intervals"
            )


@dataclass(frozen=True)
class Day:
    """One simulated day: every (impression, eligible campaign) pair, in time order."""

    seed: int
    acpm_micros: np.ndarray  # [K] int64
    start: np.ndarray  # [T+1] int64 offsets of each interval's opportunities
    campaign: np.ndarray  # [N] int32 the eligible campaign
    value: np.ndarray  # [N] float64 its bid at multiplier 1, CPM micros
    seconds: np.ndarray  # [N] float64 true E[attentive seconds]: the value bought
    price: np.ndarray  # [N] int64 highest other bid (floor included), CPM micros
    uniform: np.ndarray  # [N] float64 common random numbers (throttling)
    forecast: np.ndarray  # [T] expected traffic share per interval (the average day)

    @property
    def campaigns(self) -> int:
        return len(self.acpm_micros)

    @property
    def intervals(self) -> int:
        return len(self.start) - 1

    @property
    def charge(self) -> np.ndarray:
        """What a win costs, micros: the clearing CPM / 1000, as the auction charges."""
        return self.price // 1000  # [N] int64

    @property
    def winnable(self) -> np.ndarray:
        """[N] bool: won at a multiplier of 1 (pacing never bids above the aCPM)."""
        return np.floor(self.value) > self.price

    def unpaced_spend(self) -> np.ndarray:
        """Each campaign's spend over the day at multiplier 1 with no budget ([K] micros):
        budgets are set as fractions of it."""
        won = self.winnable
        return np.bincount(
            self.campaign[won], weights=self.charge[won], minlength=self.campaigns
        ).astype(np.int64)

    def budgets(self, fractions) -> np.ndarray:
        """Budgets as fractions of the unpaced spend: [B] levels (the same for every
        campaign) or [B, K] -> [B*K] micros, replica-major as `simulate` takes them."""
        f = np.asarray(fractions, dtype=np.float64)
        f = f[:, None] if f.ndim == 1 else f  # [B, 1] or [B, K]
        return (f * self.unpaced_spend()[None, :]).astype(np.int64).ravel()


class Market:
    """Days of one seeded world; `day(seed)` is deterministic in (world, seed)."""

    def __init__(self, config: MarketConfig | None = None) -> None:
        self.config = config or MarketConfig()
        self.world = World(self.config.world)
        hours = np.arange(24)
        self.hour_demand = 1.0 + HOUR_DEMAND_AMPLITUDE * np.cos(
            2 * np.pi * (hours - HOUR_DEMAND_PEAK) / 24
        )  # [24]
        self.forecast = traffic_profile(self.config.intervals)  # [T]

    def _demand(self, rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
        """The competing demand's level at each time [n]: the evening peak, and surges
        that no forecast knows about."""
        hour = t / 3600.0
        demand = self.hour_demand[(hour.astype(np.int64)) % 24]
        for _ in range(rng.poisson(SURGES_PER_DAY)):
            begin = rng.uniform(0, 24)
            end = begin + rng.uniform(*SURGE_HOURS)
            demand = demand * np.where(
                (hour >= begin) & (hour < end), 1 + rng.uniform(*SURGE_LEVEL), 1
            )
        return demand

    def day(self, seed: int) -> Day:
        cfg, world = self.config, self.world
        rng = np.random.default_rng([cfg.world.seed, 7919, seed])
        n = max(1, round(cfg.impressions_per_day * rng.lognormal(0.0, DAY_TRAFFIC_SIGMA)))
        imps = world.impressions(n, seed=seed)
        # This day's own hourly shape: thin each hour's traffic by its own factor.
        hour_level = rng.lognormal(0.0, HOUR_TRAFFIC_SIGMA, 24)  # [24]
        imps = imps.take(np.flatnonzero(rng.random(n) * hour_level.max() < hour_level[imps.hour]))
        n = len(imps)
        # Time of day: uniform inside the impression's hour, then time order.
        t = (imps.hour + rng.random(n)) * 3600.0  # [n] seconds
        order = np.argsort(t, kind="stable")
        imps, t = imps.take(order), t[order]
        interval = (t * cfg.intervals // SECONDS_PER_DAY).astype(np.int64)  # [n]

        level = MARKET_ACPM_MICROS * rng.lognormal(0.0, DAY_LEVEL_SIGMA)
        other = level * self._demand(rng, t) * imps.expected_seconds  # [n] CPM micros
        price = np.maximum(other * rng.lognormal(0.0, PRICE_SIGMA, n), FLOOR_CPM_MICROS)
        price = price.astype(np.int64)

        k = cfg.campaigns
        acpm = (MARKET_ACPM_MICROS * rng.lognormal(0.0, 0.5, k)).astype(np.int64)  # [K]
        ads = rng.integers(1, cfg.world.n_ads + 1, k)
        devices = rng.random((k, 8)) < 0.7  # [K, devicetype]
        devices[np.arange(k), rng.integers(1, 8, k)] = True  # at least one device type
        reach = rng.uniform(0.3, 1.0, k)  # share of the placements each campaign targets
        placement_draw = rng.random((k, cfg.world.n_placements))  # [K, P]

        parts = []
        for c in range(k):
            eligible = np.flatnonzero(
                devices[c, imps.devicetype] & (placement_draw[c, imps.placement] < reach[c])
            )
            sub = imps.take(eligible)
            seconds = world.expected_seconds(sub, int(ads[c])).astype(np.float64)
            parts.append((eligible, np.full(len(eligible), c, np.int32), seconds))
        idx = np.concatenate([p[0] for p in parts])
        camp = np.concatenate([p[1] for p in parts])
        seconds = np.concatenate([p[2] for p in parts])
        order = np.lexsort((camp, idx))  # time order; campaigns by id at one impression
        idx, camp, seconds = idx[order], camp[order], seconds[order]
        start = np.searchsorted(interval[idx], np.arange(cfg.intervals + 1), side="left")
        return Day(
            seed=seed,
            acpm_micros=acpm,
            start=start.astype(np.int64),
            campaign=camp,
            value=acpm[camp] * seconds,
            seconds=seconds,
            price=price[idx],
            uniform=rng.random(len(idx)),
            forecast=self.forecast,
        )


@njit(cache=True)
def _play_interval(
    lo, hi, campaign, value, seconds, charge, price, uniform,
    n_campaigns, multiplier, pass_rate, budget, spent,
    seen, wins, bought, spend,
):  # fmt: skip
    """Run one interval's auctions in time order for every replica of every campaign.

    Environment e = r * K + k is replica r of campaign k; all replicas share the
    day's opportunities (and its random numbers), so they differ only by pacing.
    `seen` is per campaign [K]; the other counters are per environment [E].
    """
    replicas = len(multiplier) // n_campaigns
    for i in range(lo, hi):
        k = campaign[i]
        v, p, c, u, s = value[i], price[i], charge[i], uniform[i], seconds[i]
        seen[k] += 1
        for r in range(replicas):
            e = r * n_campaigns + k
            if u >= pass_rate[e]:
                continue  # throttled out of this auction
            bid = np.int64(v * multiplier[e])  # floor: both are positive
            if bid <= 0 or bid // 1000 > budget[e] - spent[e]:
                continue  # the exchange only bids what the budget can still pay
            if bid > p:  # second price: the winner pays the highest other bid
                wins[e] += 1
                spent[e] += c
                spend[e] += c
                bought[e] += s


@dataclass(frozen=True)
class Episode:
    """What happened to E environments over a day: per-interval curves and totals."""

    budget: np.ndarray  # [E] int64 micros
    multiplier: np.ndarray  # [T, E] multiplier in force during each interval
    pass_rate: np.ndarray  # [T, E]
    spend: np.ndarray  # [T, E] int64 micros spent in each interval
    bought: np.ndarray  # [E] true attentive seconds bought over the day
    spent: np.ndarray  # [E] int64 micros spent over the day
    wins: np.ndarray  # [E] int64

    @property
    def overspend(self) -> np.ndarray:
        return np.maximum(self.spent - self.budget, 0)  # [E] int64 micros


def _counters(k: int, e: int) -> tuple[np.ndarray, ...]:
    """An interval's fresh counters: seen [K], then wins, seconds, spend [E]."""
    z = np.zeros
    return z(k, np.int64), z(e, np.int64), z(e), z(e, np.int64)


def simulate(day: Day, budget: np.ndarray, pacer: Pacer, replicas: int = 1) -> Episode:
    """Play `day` with the pacer setting E = replicas × K multipliers every interval.

    `budget` is [E] micros (replica-major: env r * K + k is campaign k). Replicas let
    one call play several budgets, or a population of policies, over the same day.
    """
    k, big_t = day.campaigns, day.intervals
    e = k * replicas
    budget = np.asarray(budget, dtype=np.int64)
    if budget.shape != (e,):
        raise ValueError(f"budget must have shape ({e},), got {budget.shape}")
    if (budget < 0).any():
        raise ValueError("budget must be >= 0 micros")
    charge = day.charge
    acpm = np.tile(day.acpm_micros.astype(np.float64), replicas)  # [E]
    spent = np.zeros(e, np.int64)
    bought = np.zeros(e)
    wins = np.zeros(e, np.int64)
    multiplier_t, pass_rate_t = np.zeros((big_t, e)), np.zeros((big_t, e))
    spend_t = np.zeros((big_t, e), np.int64)
    cum = np.concatenate([[0.0], np.cumsum(day.forecast)])  # [T+1]
    pacer.reset(e)
    seen, won, seconds, spend = _counters(k, e)
    for t in range(big_t):
        obs = Observation(
            time_left=1.0 - t / big_t,
            traffic_next=float(day.forecast[t]),
            traffic_left=float(cum[-1] - cum[t]),
            budget=budget,
            spent=spent.copy(),
            last_spend=spend,
            last_seen=np.tile(seen, replicas),
            last_wins=won,
            last_seconds=seconds,
            acpm_micros=acpm,
        )
        multiplier_t[t], pass_rate_t[t] = pacer.act(obs)
        if not ((multiplier_t[t] > 0) & (multiplier_t[t] <= 1)).all():
            raise ValueError(f"pacer {pacer.name!r} set a multiplier outside (0, 1]")
        if not ((pass_rate_t[t] >= 0) & (pass_rate_t[t] <= 1)).all():
            raise ValueError(f"pacer {pacer.name!r} set a pass rate outside [0, 1]")
        seen, won, seconds, spend = _counters(k, e)
        _play_interval(
            day.start[t], day.start[t + 1], day.campaign, day.value, day.seconds, charge,
            day.price, day.uniform, k, multiplier_t[t], pass_rate_t[t], budget, spent,
            seen, won, seconds, spend,
        )  # fmt: skip
        wins += won
        bought += seconds
        spend_t[t] = spend
    return Episode(
        budget=budget,
        multiplier=multiplier_t,
        pass_rate=pass_rate_t,
        spend=spend_t,
        bought=bought,
        spent=spent,
        wins=wins,
    )

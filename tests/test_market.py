"""The market simulator: deterministic, well-formed days, and a replay that never
overspends, keeps its replicas independent and never beats the hindsight optimum."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import exchange.market
from exchange.hindsight import hindsight_optimum
from exchange.market import (
    FLOOR_CPM_MICROS,
    MARKET_ACPM_MICROS,
    Day,
    Episode,
    Market,
    MarketConfig,
    simulate,
    traffic_profile,
)
from exchange.pacers import (
    FEATURES,
    PID,
    DualGradient,
    NoPacing,
    Observation,
    Pacer,
    PolicyPacer,
    Throttle,
)
from inference.world import HOUR_TRAFFIC, WorldConfig

CONFIG = MarketConfig(
    impressions_per_day=3000,
    campaigns=4,
    intervals=12,  # two hours each
    world=WorldConfig(seed=3, n_users=2000, n_items=512, n_ads=128, n_placements=64),
)
K, T = CONFIG.campaigns, CONFIG.intervals
SEEDS = (0, 1, 2)
UNLIMITED = 10**15  # micros: no day of this market comes near it
REPLICAS = 3


@pytest.fixture(scope="module")
def market() -> Market:
    return Market(CONFIG)


@pytest.fixture(scope="module")
def days(market: Market) -> dict[int, Day]:
    return {seed: market.day(seed) for seed in SEEDS}


def _columns(day: Day) -> dict[str, np.ndarray]:
    return {f.name: np.asarray(getattr(day, f.name)) for f in dataclasses.fields(day)}


def _winnable(day: Day) -> np.ndarray:
    return day.winnable  # [N] won at a multiplier of 1


# --- pacers for the replay: the shipped ones, and adversarial ones ---------------------


class ConstantPacer:
    """The same multipliers all day, full pass rate: the hindsight-optimal constant is the
    baseline a perfect forecast of the day would pick."""

    name = "constant"

    def __init__(self, multiplier: np.ndarray) -> None:
        self.multiplier = np.asarray(multiplier, np.float64)

    def reset(self, n: int) -> None:
        assert n == len(self.multiplier)

    def act(self, obs: Observation) -> tuple[np.ndarray, np.ndarray]:
        return self.multiplier.copy(), np.ones(len(self.multiplier))


class RandomPacer:
    """Arbitrary multipliers in (0, 1] and pass rates in [0, 1] every interval, often
    exactly 1: whatever a pacer does, the exchange's own budget check must hold."""

    name = "random"

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def reset(self, n: int) -> None:
        self.n = n

    def act(self, obs: Observation) -> tuple[np.ndarray, np.ndarray]:
        n, rng = self.n, self.rng
        multiplier = np.where(rng.random(n) < 0.3, 1.0, 1.0 - rng.random(n))  # (0, 1]
        draw = rng.random(n)
        pass_rate = np.select([draw < 0.3, draw < 0.4], [1.0, 0.0], rng.random(n))  # [0, 1]
        return multiplier, pass_rate


def random_policy(seed: int, hidden: int = 8) -> PolicyPacer:
    """An untrained learned policy (one MLP, random weights): deterministic per env."""
    rng = np.random.default_rng(seed)
    w = [
        rng.normal(0, 1, (1, FEATURES, hidden)),
        rng.normal(0, 1, (1, hidden)),
        rng.normal(0, 1, (1, hidden, 1)),
        rng.normal(0, 1, (1, 1)),
    ]
    return PolicyPacer(w, "random")


def make_pacer(name: str, seed: int) -> Pacer:
    return {
        "none": NoPacing,
        "throttle": Throttle,
        "pid": PID,
        "dual": DualGradient,
        "random": lambda: RandomPacer(seed),
        "policy": lambda: random_policy(seed),
    }[name]()


PACER_NAMES = ("none", "throttle", "pid", "dual", "random", "policy")
DETERMINISTIC_PACERS = ("none", "throttle", "pid", "dual", "policy")  # per env, no shared rng

# Budgets in micros: zero, tiny (a win costs >= 50 micros, the floor's charge), and
# anything up to above the largest campaign's unpaced spend (about 12e6 micros here).
budget_values = st.one_of(
    st.sampled_from([0, 1, 49, 50, 51, 999, 1000, 1001]),
    st.integers(0, 5_000),
    st.integers(0, 30_000_000),
)
replica_budgets = st.lists(budget_values, min_size=K * REPLICAS, max_size=K * REPLICAS)


def _play(day: Day, budget: list[int], pacer_name: str, pacer_seed: int) -> Episode:
    pacer = make_pacer(pacer_name, pacer_seed)
    return simulate(day, np.array(budget, np.int64), pacer, replicas=len(budget) // K)


# --- days: determinism and shape ------------------------------------------------------


def test_a_day_is_deterministic_in_its_seed(days: dict[int, Day]) -> None:
    """Evaluation days are replayed by seed: a fresh market must rebuild them bit for bit."""
    again = _columns(Market(CONFIG).day(1))
    for name, column in _columns(days[1]).items():
        np.testing.assert_array_equal(column, again[name], err_msg=name)


def test_other_seeds_give_other_days(days: dict[int, Day]) -> None:
    a, b = days[0], days[1]
    assert len(a.price) != len(b.price) or not np.array_equal(a.price, b.price)
    assert not np.array_equal(a.acpm_micros, b.acpm_micros)
    assert not np.array_equal(np.diff(a.start), np.diff(b.start))


def test_day_shapes_dtypes_and_ranges(days: dict[int, Day]) -> None:
    for day in days.values():
        n = len(day.campaign)
        assert n > 1000  # 3000 impressions a day, each eligible for some campaigns
        assert (day.campaigns, day.intervals) == (K, T)
        assert day.acpm_micros.shape == (K,) and day.acpm_micros.dtype == np.int64
        assert day.start.shape == (T + 1,) and day.start.dtype == np.int64
        assert day.campaign.dtype == np.int32
        for name in ("value", "seconds", "uniform"):
            column = getattr(day, name)
            assert column.shape == (n,) and column.dtype == np.float64, name
        assert day.price.shape == (n,) and day.price.dtype == np.int64
        assert day.campaign.min() >= 0 and day.campaign.max() < K
        assert (day.seconds >= 0).all() and np.isfinite(day.seconds).all()
        assert (day.uniform >= 0).all() and (day.uniform < 1).all()
        assert (day.acpm_micros > 0).all()
        np.testing.assert_array_equal(day.forecast, traffic_profile(T))


def test_opportunities_are_in_time_order(days: dict[int, Day]) -> None:
    """`start` cuts the opportunities into the intervals: it covers all of them once."""
    for day in days.values():
        n = len(day.campaign)
        assert day.start[0] == 0 and day.start[-1] == n
        assert (np.diff(day.start) >= 0).all()
        interval = np.repeat(np.arange(T), np.diff(day.start))  # [N] each one's interval
        assert len(interval) == n and (np.diff(interval) >= 0).all()


def test_each_interval_holds_its_share_of_the_traffic(days: dict[int, Day]) -> None:
    """Days store no timestamps; an opportunity put in the wrong interval shows as an
    interval whose count strays from the diurnal forecast (night 2-4h has ~7x less
    traffic than 18-20h). Each day strays by its own hourly noise, the average less."""
    forecast = traffic_profile(T)
    total = np.zeros(T)
    for day in days.values():
        counts = np.diff(day.start).astype(np.float64)
        total += counts
        ratio = counts / counts.sum() / forecast
        assert ((ratio > 0.5) & (ratio < 1.6)).all(), ratio.round(2)
        assert counts[1] < counts[9]  # 02-04h (night) vs 18-20h (evening)
    ratio = total / total.sum() / forecast
    assert ((ratio > 0.8) & (ratio < 1.25)).all(), ratio.round(2)


def test_value_price_and_charge(days: dict[int, Day]) -> None:
    for day in days.values():
        np.testing.assert_allclose(
            day.value, day.acpm_micros[day.campaign] * day.seconds, rtol=1e-12, atol=0
        )
        assert (day.price >= FLOOR_CPM_MICROS).all()
        np.testing.assert_array_equal(day.charge, day.price // 1000)
        assert day.charge.dtype == np.int64
        # A contested market: some opportunities are won at full value, some are not.
        assert 0.1 < _winnable(day).mean() < 0.9


def test_the_floor_holds_where_it_binds(monkeypatch: pytest.MonkeyPatch) -> None:
    """In the market above the floor hardly ever binds; with competing demand at 1% of
    its usual aCPM it binds for most impressions, and no price may fall below it."""
    monkeypatch.setattr(exchange.market, "MARKET_ACPM_MICROS", MARKET_ACPM_MICROS // 100)
    day = Market(CONFIG).day(0)
    assert (day.price >= FLOOR_CPM_MICROS).all()
    assert (day.price == FLOOR_CPM_MICROS).mean() > 0.3


# --- the traffic forecast -----------------------------------------------------------


@pytest.mark.parametrize("intervals", [2, 5, 12, 24, 48, 96])
def test_traffic_profile_is_a_positive_distribution(intervals: int) -> None:
    profile = traffic_profile(intervals)
    assert profile.shape == (intervals,)
    assert (profile > 0).all()
    assert profile.sum() == pytest.approx(1.0, abs=1e-12)


def test_traffic_profile_follows_the_diurnal_shape() -> None:
    """Hourly intervals are the hourly traffic shape itself; finer ones split each hour
    evenly; the night is quieter than the evening."""
    np.testing.assert_allclose(traffic_profile(24), HOUR_TRAFFIC / HOUR_TRAFFIC.sum(), rtol=1e-12)
    half_hours = traffic_profile(48)
    np.testing.assert_allclose(half_hours[0::2], half_hours[1::2], rtol=1e-12)
    quarter = traffic_profile(96)
    assert quarter[3 * 4] < quarter[20 * 4]  # 03:00 vs 20:00
    two_hours = traffic_profile(12)
    assert two_hours[1] < two_hours[9]  # 02-04h vs 18-20h
    assert two_hours.argmax() == 10  # 20-22h, the evening peak


# --- the replay --------------------------------------------------------------------


def test_unpaced_spend_is_no_pacing_without_a_budget(days: dict[int, Day]) -> None:
    """Budgets are fractions of `unpaced_spend`: it must be what bidding full value with
    no budget really spends, and then every winnable opportunity is won."""
    for day in days.values():
        episode = simulate(day, np.full(K, UNLIMITED), NoPacing())
        np.testing.assert_array_equal(episode.spent, day.unpaced_spend())
        winnable = _winnable(day)
        np.testing.assert_array_equal(
            episode.wins, np.bincount(day.campaign[winnable], minlength=K)
        )
        # With no budget to ration, the hindsight optimum is everything winnable.
        np.testing.assert_allclose(
            episode.bought, hindsight_optimum(day, np.full(K, UNLIMITED)), rtol=1e-9
        )


@settings(max_examples=200, deadline=None, database=None)
@given(
    seed=st.sampled_from(SEEDS),
    pacer_name=st.sampled_from(PACER_NAMES),
    budget=replica_budgets,
    pacer_seed=st.integers(0, 2**32 - 1),
)
def test_no_pacer_ever_overspends(
    days: dict[int, Day], seed: int, pacer_name: str, budget: list[int], pacer_seed: int
) -> None:
    """The exchange bids only what the remaining budget can pay, so no pacing, however
    bad, and no budget, however small, can spend a micro more than the budget."""
    episode = _play(days[seed], budget, pacer_name, pacer_seed)
    e = K * REPLICAS
    np.testing.assert_array_equal(episode.budget, budget)
    np.testing.assert_array_equal(episode.overspend, np.zeros(e, np.int64))
    assert (episode.spent <= episode.budget).all()
    assert episode.spend.shape == (T, e) and (episode.spend >= 0).all()
    np.testing.assert_array_equal(episode.spent, episode.spend.sum(axis=0))
    assert (episode.multiplier > 0).all() and (episode.multiplier <= 1).all()
    assert (episode.pass_rate >= 0).all() and (episode.pass_rate <= 1).all()
    assert (episode.bought >= 0).all() and (episode.wins >= 0).all()
    zero = np.array(budget) == 0
    assert (episode.spent[zero] == 0).all() and (episode.wins[zero] == 0).all()


@settings(max_examples=200, deadline=None, database=None)
@given(
    seed=st.sampled_from(SEEDS),
    pacer_name=st.sampled_from(PACER_NAMES),
    budget=replica_budgets,
    pacer_seed=st.integers(0, 2**32 - 1),
)
def test_no_pacer_beats_the_hindsight_optimum(
    days: dict[int, Day], seed: int, pacer_name: str, budget: list[int], pacer_seed: int
) -> None:
    """R* is an upper bound on what any pacing with multipliers <= 1 can buy: R / R* <= 1."""
    day = days[seed]
    episode = _play(day, budget, pacer_name, pacer_seed)
    best = hindsight_optimum(day, np.array(budget), replicas=REPLICAS)
    assert (episode.bought <= best * (1 + 1e-9) + 1e-9).all(), (episode.bought, best)


@settings(max_examples=40, deadline=None, database=None)
@given(
    seed=st.sampled_from(SEEDS),
    pacer_name=st.sampled_from(DETERMINISTIC_PACERS),
    budget=replica_budgets,
    pacer_seed=st.integers(0, 2**32 - 1),
)
def test_replicas_are_independent(
    days: dict[int, Day], seed: int, pacer_name: str, budget: list[int], pacer_seed: int
) -> None:
    """Env r * K + k of a replicated run is exactly replica r's budgets played alone."""
    day = days[seed]
    together = _play(day, budget, pacer_name, pacer_seed)
    for r in range(REPLICAS):
        envs = slice(r * K, (r + 1) * K)
        alone = _play(day, budget[envs], pacer_name, pacer_seed)
        for f in dataclasses.fields(Episode):
            joint = getattr(together, f.name)
            part = joint[:, envs] if joint.ndim == 2 else joint[envs]
            np.testing.assert_array_equal(part, getattr(alone, f.name), err_msg=f.name)


def test_campaigns_do_not_move_each_other(days: dict[int, Day]) -> None:
    """The replay assumption: one campaign's budget changes nothing for the others."""
    day = days[0]
    unpaced = day.unpaced_spend()
    for pacer_name in DETERMINISTIC_PACERS:
        base = unpaced // 4
        changed = base.copy()
        changed[2] = unpaced[2] * 3  # only campaign 2 gets a different budget
        a = _play(day, base.tolist(), pacer_name, 5)
        b = _play(day, changed.tolist(), pacer_name, 5)
        others = [0, 1, 3]
        np.testing.assert_array_equal(a.spend[:, others], b.spend[:, others])
        np.testing.assert_array_equal(a.bought[others], b.bought[others])
        assert a.spent[2] != b.spent[2]  # and the budget did change campaign 2


def _one_campaign_day(value: list[float], price: list[int]) -> Day:
    """A hand-built day: one campaign ($1 aCPM), every opportunity in the first interval."""
    n = len(value)
    return Day(
        seed=0,
        acpm_micros=np.array([1_000_000], np.int64),
        start=np.array([0, n, n], np.int64),
        campaign=np.zeros(n, np.int32),
        value=np.array(value, np.float64),
        seconds=np.array(value, np.float64) / 1_000_000,
        price=np.array(price, np.int64),
        uniform=np.zeros(n),
        forecast=traffic_profile(2),
    )


@pytest.mark.parametrize(
    ("value", "price", "budget", "spent"),
    [
        (1_000_999.9, 1_000_500, 1000, 1000),  # bid 1_000_999: 1000 micros, fits exactly
        (1_000_999.9, 1_000_500, 999, 0),  # one micro short: no bid
        (1_001_500.0, 1_000_800, 1000, 0),  # charge 1000 would fit, but the bid (1001) not
        (1_001_500.0, 1_000_800, 1001, 1000),  # the bid fits; the win costs the price
        (1_000_500.0, 1_000_500, 10**9, 0),  # a tie is not a win
        (1_000_500.9, 1_000_500, 10**9, 0),  # nor after the bid's floor
    ],
)
def test_a_bid_enters_only_while_the_budget_covers_it(
    value: float, price: int, budget: int, spent: int
) -> None:
    """The exchange's rule to the micro: a bid enters while bid // 1000 <= remaining
    budget, wins above the price, and is charged price // 1000."""
    day = _one_campaign_day([value], [price])
    episode = simulate(day, np.array([budget]), NoPacing())
    assert episode.spent.tolist() == [spent]
    assert episode.overspend.tolist() == [0]


def test_the_budget_check_counts_what_was_already_spent() -> None:
    """Identical opportunities: bids of 2000 micros that win at a charge of 1000. Each
    enters only while 2000 fits what the earlier wins left."""
    day = _one_campaign_day([2_000_000.0] * 3, [1_000_000] * 3)
    for budget, spent in [(1999, 0), (2500, 1000), (3999, 2000), (4000, 3000), (10**6, 3000)]:
        episode = simulate(day, np.array([budget]), NoPacing())
        assert episode.spent.tolist() == [spent], budget
        assert episode.wins.tolist() == [spent // 1000], budget


def _best_constant_multiplier(day: Day, budget: np.ndarray) -> np.ndarray:
    """Per campaign, the largest constant multiplier whose unbudgeted spend fits the budget
    (bisection on log multiplier; spend is non-decreasing in the multiplier)."""
    lo, hi = np.full(K, 1e-4), np.ones(K)
    unlimited = np.full(K, UNLIMITED)
    for _ in range(40):
        mid = np.sqrt(lo * hi)
        fits = simulate(day, unlimited, ConstantPacer(mid)).spent <= budget
        lo, hi = np.where(fits, mid, lo), np.where(fits, hi, mid)
    return lo


@pytest.mark.parametrize("fraction", [1 / 2, 1 / 4])
def test_the_best_constant_multiplier_nearly_reaches_the_hindsight_optimum(
    days: dict[int, Day], fraction: float
) -> None:
    """R* is tight, not just an upper bound: a constant multiplier that knows the day
    buys the best seconds per micro first, which is R*'s greedy order, up to one item
    and the charge's rounding. Campaigns with few wins are dominated by one item, so the
    per-campaign check is on those with hundreds of winnable opportunities."""
    got, best = [], []
    for day in days.values():
        budget = (day.unpaced_spend() * fraction).astype(np.int64)
        episode = simulate(day, budget, ConstantPacer(_best_constant_multiplier(day, budget)))
        optimum = hindsight_optimum(day, budget)
        assert (episode.bought <= optimum * (1 + 1e-9)).all()
        many = np.bincount(day.campaign[_winnable(day)], minlength=K) >= 300
        assert many.any()
        ratio = episode.bought / optimum
        assert (ratio[many] >= 0.97).all(), ratio.round(4)
        got.append(episode.bought.sum())
        best.append(optimum.sum())
    assert sum(got) / sum(best) >= 0.97


# --- bad input ---------------------------------------------------------------------


def test_a_budget_of_the_wrong_shape_is_refused(days: dict[int, Day]) -> None:
    day = days[0]
    for budget in (np.ones(K + 1), np.ones(K - 1), np.ones((1, K)), np.ones(K * 2)):
        with pytest.raises(ValueError, match="budget must have shape"):
            simulate(day, budget, NoPacing())
    with pytest.raises(ValueError, match="budget must have shape"):
        simulate(day, np.ones(K), NoPacing(), replicas=2)


@pytest.mark.parametrize(
    "change", [{"intervals": 1}, {"intervals": 0}, {"campaigns": 0}, {"impressions_per_day": 99}]
)
def test_an_impossible_market_is_refused(change: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="a market needs"):
        dataclasses.replace(CONFIG, **change)


def test_a_negative_budget_is_refused(days: dict[int, Day]) -> None:
    budget = np.full(K, 1_000_000)
    budget[1] = -1
    with pytest.raises(ValueError, match="budget must be >= 0"):
        simulate(days[0], budget, NoPacing())


@pytest.mark.parametrize(
    ("multiplier", "pass_rate", "what"),
    [(3.0, 1.0, "multiplier"), (0.0, 1.0, "multiplier"), (0.5, 1.5, "pass rate")],
)
def test_a_pacer_outside_its_range_is_refused(
    days: dict[int, Day], multiplier: float, pass_rate: float, what: str
) -> None:
    """Bidding above the aCPM would beat R*: the simulator refuses rather than report it."""

    class Broken(RandomPacer):
        def act(self, obs: Observation) -> tuple[np.ndarray, np.ndarray]:
            return np.full(self.n, multiplier), np.full(self.n, pass_rate)

    with pytest.raises(ValueError, match=f"set a {what} outside"):
        simulate(days[0], np.full(K, 1_000_000), Broken(0))

"""The pacers' own control logic: each moves its lever the right way on the plan's error."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from exchange.pacers import (
    FEATURES,
    MIN_MULTIPLIER,
    PID,
    DualGradient,
    NoPacing,
    Observation,
    PolicyPacer,
    Throttle,
)

BUDGET = 1_000_000


def observation(
    last_spend: list[float] | np.ndarray,
    *,
    spent: list[float] | np.ndarray | None = None,
    budget: float = BUDGET,
    traffic_next: float = 0.1,
    traffic_left: float = 0.5,
) -> Observation:
    """An interval's view for len(last_spend) campaigns; the other `last_*` counters are 0."""
    last = np.asarray(last_spend, np.int64)
    n = len(last)
    given = {
        "time_left": traffic_left,
        "traffic_next": traffic_next,
        "traffic_left": traffic_left,
        "budget": np.full(n, budget, np.int64),
        "spent": np.zeros(n, np.int64) if spent is None else np.asarray(spent, np.int64),
        "last_spend": last,
        "last_seconds": np.zeros(n),
        "acpm_micros": np.full(n, 2_000_000.0),
    }
    return Observation(
        **{
            f.name: given.get(f.name, np.zeros(n, np.int64))  # last_seen, last_wins, ...
            for f in dataclasses.fields(Observation)
        }
    )


# --- the plan ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spent", "traffic_next", "traffic_left", "expected"),
    [
        (0, 0.1, 0.5, BUDGET * 0.2),
        (400_000, 0.05, 0.25, 600_000 * 0.2),
        (999_999, 0.3, 0.3, 1.0),  # the last interval: all that is left
        (BUDGET, 0.1, 0.5, 0.0),  # nothing left
        (BUDGET + 5, 0.1, 0.5, 0.0),  # overspent (reserved) counts as nothing left
        (0, 0.2, 0.1, BUDGET),  # a forecast that rounds past the end is capped at all
    ],
)
def test_plan_is_the_next_intervals_share_of_what_is_left(
    spent: int, traffic_next: float, traffic_left: float, expected: float
) -> None:
    obs = observation([0], spent=[spent], traffic_next=traffic_next, traffic_left=traffic_left)
    np.testing.assert_allclose(obs.plan(), [expected], rtol=1e-12)


def test_plan_with_no_traffic_left_does_not_divide_by_zero() -> None:
    obs = observation([0, 0], spent=[0, BUDGET], traffic_next=0.0, traffic_left=0.0)
    plan = obs.plan()
    assert np.isfinite(plan).all() and (plan >= 0).all() and plan[1] == 0


# --- feedback pacers ---------------------------------------------------------------

# Three campaigns: one spends twice its plan, one exactly its plan, one half of it.
OVER, ON, UNDER = 0, 1, 2


def _second_act(pacer) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Act once (setting the plan), then again after spending 2x, 1x and 0.5x of it.
    Returns the first and second (multipliers, pass rates)."""
    pacer.reset(3)
    first = observation([0, 0, 0])
    m0, p0 = pacer.act(first)
    target = first.plan()
    spend = target * np.array([2.0, 1.0, 0.5])
    m1, p1 = pacer.act(observation(np.round(spend), spent=np.round(spend)))
    return m0, p0, m1, p1


def test_dual_gradient_raises_its_shadow_price_after_overspending() -> None:
    """mu (the budget's shadow price) goes up after spending over plan, so the multiplier
    1 / (1 + mu) goes down; under plan the other way; on plan it stays."""
    pacer = DualGradient(step=0.5, initial_mu=1.0)
    m0, p0, m1, p1 = _second_act(pacer)
    np.testing.assert_allclose(m0, 0.5)  # before any interval, 1 / (1 + initial mu)
    np.testing.assert_array_equal(p0, 1.0)
    assert m1[OVER] < m0[OVER] and pacer.mu[OVER] > 1.0
    assert m1[ON] == pytest.approx(m0[ON])
    assert m1[UNDER] > m0[UNDER] and pacer.mu[UNDER] < 1.0
    np.testing.assert_array_equal(p1, 1.0)


def test_dual_gradient_stays_in_range() -> None:
    """Long underspending takes mu to 0 (multiplier 1, never above); long overspending
    keeps the multiplier above 0."""
    pacer = DualGradient(step=0.1, initial_mu=3.0)
    pacer.reset(2)
    obs = observation([0, 0])
    for _ in range(50):
        multiplier, _ = pacer.act(obs)
        plan = pacer.target
        obs = observation(np.round(np.array([0.0, 8.0]) * plan))
    multiplier, _ = pacer.act(obs)
    assert multiplier[0] == 1.0 and pacer.mu[0] == 0.0
    assert 0 < multiplier[1] <= 0.01


def test_pid_moves_the_multiplier_against_the_error() -> None:
    pacer = PID(kp=0.4, ki=0.1, initial=0.5)
    m0, p0, m1, p1 = _second_act(pacer)
    np.testing.assert_allclose(m0, 0.5)
    np.testing.assert_array_equal(p0, 1.0)
    assert m1[OVER] < m0[OVER]
    assert m1[ON] == pytest.approx(m0[ON])
    assert m1[UNDER] > m0[UNDER]
    np.testing.assert_array_equal(p1, 1.0)


def test_pid_multiplier_stays_in_range() -> None:
    pacer = PID(kp=0.4, ki=0.1, initial=0.5)
    pacer.reset(2)
    obs = observation([0, 0])
    seen = []
    for _ in range(50):
        multiplier, _ = pacer.act(obs)
        seen.append(multiplier)
        obs = observation(np.round(np.array([0.0, 8.0]) * pacer.target))
    seen = np.array(seen)
    assert (seen >= MIN_MULTIPLIER).all() and (seen <= 1.0).all()
    assert seen[-1, 0] == 1.0 and seen[-1, 1] < 0.01


def test_throttle_closes_after_overspending_and_opens_after_underspending() -> None:
    pacer = Throttle(gain=0.7, initial=0.2)
    m0, p0, m1, p1 = _second_act(pacer)
    np.testing.assert_allclose(p0, 0.2)
    assert p1[OVER] < p0[OVER]
    assert p1[ON] == pytest.approx(p0[ON])
    assert p1[UNDER] > p0[UNDER]
    np.testing.assert_array_equal(m0, 1.0)  # throttling never shades the bid
    np.testing.assert_array_equal(m1, 1.0)


def test_no_feedback_before_a_plan_exists() -> None:
    """The first interval of a day has no target to compare with: whatever the counters
    say (the server's were not reset yet), the pacer starts from its initial state."""
    for make in (DualGradient, PID, Throttle):
        quiet, busy = make(), make()
        quiet.reset(2)
        busy.reset(2)
        m0, p0 = quiet.act(observation([0, 0]))
        m1, p1 = busy.act(observation([0, 500_000]))
        np.testing.assert_array_equal(m1, m0, err_msg=quiet.name)
        np.testing.assert_array_equal(p1, p0, err_msg=quiet.name)


def test_no_pacing_bids_full_value_everywhere() -> None:
    pacer = NoPacing()
    pacer.reset(4)
    multiplier, pass_rate = pacer.act(observation([0, 10**6, 0, 5]))
    np.testing.assert_array_equal(multiplier, np.ones(4))
    np.testing.assert_array_equal(pass_rate, np.ones(4))


def _random_policy() -> PolicyPacer:
    """An untrained learned policy: one MLP with random weights."""
    rng = np.random.default_rng(0)
    shapes = [(1, FEATURES, 8), (1, 8), (1, 8, 1), (1, 1)]
    return PolicyPacer([rng.normal(0, 1, shape) for shape in shapes], "random")


PACERS = {
    "none": NoPacing,
    "throttle": Throttle,
    "pid": PID,
    "dual": DualGradient,
    "policy": _random_policy,
}


@pytest.mark.parametrize("name", sorted(PACERS))
def test_grow_keeps_the_old_campaigns_and_starts_the_new_ones_fresh(name: str) -> None:
    """A campaign added mid-day must not disturb the others' pacing, and must start as
    it would on a new day."""
    grown, kept, fresh = PACERS[name](), PACERS[name](), PACERS[name]()
    grown.reset(2)
    kept.reset(2)
    for last in ([0, 0], [400_000, 50_000], [300_000, 10_000]):
        m, p = grown.act(observation(last))
        mk, pk = kept.act(observation(last))
        np.testing.assert_array_equal(m, mk)
        np.testing.assert_array_equal(p, pk)
    grown.grow(3)
    fresh.reset(1)
    m, p = grown.act(observation([250_000, 60_000, 0]))
    mk, pk = kept.act(observation([250_000, 60_000]))
    mf, pf = fresh.act(observation([0]))
    assert m.shape == p.shape == (3,)
    np.testing.assert_array_equal(m[:2], mk)
    np.testing.assert_array_equal(p[:2], pk)
    np.testing.assert_array_equal(m[2:], mf)
    np.testing.assert_array_equal(p[2:], pf)

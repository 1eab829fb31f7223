"""The simulated world: deterministic, well-formed, labels drawn from its truth, real effects."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from inference.metrics import auc, bayes_report, mae
from inference.scorer import MAX_ATTENTIVE_SECONDS
from inference.world import (
    DEVICES,
    FATIGUE_WINDOW,
    KIND_VIDEO,
    Impressions,
    World,
    WorldConfig,
    _norm_cdf,
    capped_lognormal_mean,
)

N_LARGE = 200_000  # enough for label means to sit within a few standard errors
CONFIG = WorldConfig()


@pytest.fixture(scope="module")
def world() -> World:
    return World(CONFIG)


@pytest.fixture(scope="module")
def imps(world: World) -> Impressions:
    return world.impressions(N_LARGE, seed=1)


def _columns(imps: Impressions) -> dict[str, np.ndarray]:
    return {f.name: getattr(imps, f.name) for f in dataclasses.fields(imps)}


# --- determinism ------------------------------------------------------------------


def test_same_seeds_give_identical_impressions(world: World) -> None:
    a = _columns(world.impressions(5_000, seed=7))
    b = _columns(World(CONFIG).impressions(5_000, seed=7))
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_other_sample_seed_same_world_other_impressions(world: World) -> None:
    other = World(CONFIG)
    for name in ("item_topic", "ad_kind", "ad_quality", "placement_viewability", "user_interest"):
        np.testing.assert_array_equal(getattr(world, name), getattr(other, name))
    a, b = world.impressions(5_000, seed=1), world.impressions(5_000, seed=2)
    assert not np.array_equal(a.user, b.user)
    assert not np.array_equal(a.history, b.history)
    assert not np.array_equal(a.viewed, b.viewed)


def test_other_world_seed_other_world() -> None:
    a = World(dataclasses.replace(CONFIG, seed=1))
    b = World(dataclasses.replace(CONFIG, seed=2))
    assert not np.array_equal(a.item_topic, b.item_topic)


def test_config_rejects_an_impossible_world() -> None:
    with pytest.raises(ValueError, match="n_ads"):
        WorldConfig(n_items=100, n_ads=100)


# --- shapes, dtypes, ranges --------------------------------------------------------


def test_dtypes_and_shapes(imps: Impressions) -> None:
    n, big_l = len(imps), CONFIG.history_len
    expected = {
        "user": np.int32,
        "placement": np.int32,
        "pos": np.int8,
        "devicetype": np.int8,
        "hour": np.int8,
        "ad": np.int32,
        "ad_kind": np.int8,
        "ad_duration": np.int16,
        "history": np.int32,
        "history_len": np.int32,
        "match": np.float32,
        "fatigue": np.float32,
        "p_view": np.float32,
        "p_click": np.float32,
        "expected_seconds": np.float32,
        "viewed": np.bool_,
        "seconds": np.float32,
        "clicked": np.bool_,
    }
    for name, column in _columns(imps).items():
        assert column.dtype == expected[name], name
        assert column.shape == ((n, big_l) if name == "history" else (n,)), name


def test_ids_and_context_in_range(world: World, imps: Impressions) -> None:
    assert imps.user.min() >= 0 and imps.user.max() < CONFIG.n_users
    assert imps.placement.min() >= 0 and imps.placement.max() < CONFIG.n_placements
    assert imps.ad.min() >= 1 and imps.ad.max() <= CONFIG.n_ads
    assert imps.history.min() >= 0 and imps.history.max() < CONFIG.n_items
    assert set(np.unique(imps.devicetype)) <= set(DEVICES)
    assert imps.hour.min() >= 0 and imps.hour.max() <= 23
    np.testing.assert_array_equal(imps.pos, world.placement_pos[imps.placement])
    np.testing.assert_array_equal(imps.ad_kind, world.ad_kind[imps.ad])
    np.testing.assert_array_equal(imps.ad_duration > 0, imps.ad_kind == KIND_VIDEO)


def test_history_newest_first_zero_padded(imps: Impressions) -> None:
    valid = np.arange(CONFIG.history_len) < imps.history_len[:, None]
    np.testing.assert_array_equal(imps.history != 0, valid)
    assert 0.07 < np.mean(imps.history_len == 0) < 0.13  # cold start
    assert imps.history_len.max() == CONFIG.history_len


def test_fatigue_counts_recent_candidate_exposures(imps: Impressions) -> None:
    recent = imps.history[:, :FATIGUE_WINDOW] == imps.ad[:, None]
    np.testing.assert_array_equal(imps.fatigue, recent.sum(axis=1))
    shares = np.bincount(imps.fatigue.astype(np.int64)) / len(imps)
    assert 0.6 < shares[0] < 0.9 and min(shares[1:4]) > 0.03  # fatigue varies


def test_truth_and_labels_in_range(imps: Impressions) -> None:
    for p in (imps.p_view, imps.p_click):
        assert p.min() > 0.0 and p.max() < 1.0
    assert np.all(imps.p_click <= imps.p_view)
    assert np.all((imps.match >= 0) & (imps.match <= 1 + 1e-6))
    assert np.all(imps.match[imps.history_len == 0] == 0)
    assert imps.seconds.min() >= 0 and imps.seconds.max() <= MAX_ATTENTIVE_SECONDS
    assert np.all(imps.seconds[~imps.viewed] == 0)
    assert np.all(imps.seconds[imps.viewed] > 0)
    assert not np.any(imps.clicked & ~imps.viewed)
    assert imps.expected_seconds.max() <= MAX_ATTENTIVE_SECONDS


def test_take_selects_rows(imps: Impressions) -> None:
    idx = np.array([5, 0, 17])
    part = imps.take(idx)
    assert len(part) == 3
    for name, column in _columns(part).items():
        np.testing.assert_array_equal(column, getattr(imps, name)[idx], err_msg=name)


# --- labels follow the truth -------------------------------------------------------


def test_label_rates_match_truth(imps: Impressions) -> None:
    assert abs(imps.viewed.mean() - imps.p_view.mean()) < 0.01
    p = imps.p_click.astype(np.float64)
    standard_error = math.sqrt(np.sum(p * (1 - p))) / len(p)
    assert abs(imps.clicked.mean() - p.mean()) < 4 * standard_error
    assert 0.005 <= p.mean() <= 0.01
    assert 0.35 <= imps.p_view.mean() <= 0.5
    mean_seconds = imps.seconds.astype(np.float64).mean()
    assert abs(mean_seconds / imps.expected_seconds.astype(np.float64).mean() - 1) < 0.05


def test_capped_lognormal_mean_matches_monte_carlo() -> None:
    rng = np.random.default_rng(0)
    z = rng.standard_normal(1_000_000)
    for mu in (1.0, 4.0, 5.5):  # far below, near and above the cap
        sample = np.minimum(np.exp(mu + 0.8 * z), MAX_ATTENTIVE_SECONDS).mean()
        exact = capped_lognormal_mean(np.array([mu]), 0.8, MAX_ATTENTIVE_SECONDS)[0]
        assert abs(exact / sample - 1) < 0.01


def test_norm_cdf_matches_erf() -> None:
    x = np.linspace(-6, 6, 241)
    exact = np.array([0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x])
    assert np.max(np.abs(_norm_cdf(x) - exact)) < 2e-7


# --- the effects are real ----------------------------------------------------------


def test_match_fatigue_and_viewability_move_p_view(world: World, imps: Impressions) -> None:
    assert np.corrcoef(imps.match, imps.p_view)[0, 1] > 0
    viewability = world.placement_viewability[imps.placement]
    assert np.corrcoef(viewability, imps.p_view)[0, 1] > 0
    # Fatigue comes with a higher match (the ad itself is in the history), so hold the
    # other inputs fixed: a linear fit of the logit isolates each effect's sign.
    logit = np.log(imps.p_view) - np.log1p(-imps.p_view)
    v = viewability.astype(np.float64)
    design = np.column_stack([np.ones(len(imps)), imps.match, imps.fatigue, np.log(v / (1 - v))])
    _, b_match, b_fatigue, b_viewability = np.linalg.lstsq(design, logit, rcond=None)[0]
    assert b_match > 0 and b_fatigue < 0 and b_viewability > 0
    # And on the labels: the best placements are viewed more than the worst.
    low, high = np.quantile(v, [0.25, 0.75])
    assert imps.viewed[v >= high].mean() > imps.viewed[v <= low].mean() + 0.1


def test_history_buys_auc(world: World, imps: Impressions) -> None:
    report = bayes_report(imps)
    no_history = auc(imps.viewed, world.view_logit(imps, use_history=False))
    assert 0.75 <= report["auc_view_bayes"] <= 0.85
    assert report["auc_view_bayes"] - no_history >= 0.03
    assert report["auc_click_bayes"] > 0.6
    np.testing.assert_allclose(
        world.view_logit(imps), np.log(imps.p_view) - np.log1p(-imps.p_view), atol=1e-4
    )


# --- metrics -----------------------------------------------------------------------


def _pairwise_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    pos, neg = scores[labels], scores[~labels]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_pairwise_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.random(300) < 0.3
    scores = rng.integers(0, 6, 300).astype(np.float32)  # many ties
    assert auc(labels, scores) == pytest.approx(_pairwise_auc(labels, scores), abs=1e-12)
    continuous = rng.random(300)
    assert auc(labels, continuous) == pytest.approx(_pairwise_auc(labels, continuous))


def test_auc_extremes_and_one_class() -> None:
    labels = np.array([0, 0, 1, 1])
    assert auc(labels, np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert auc(labels, np.array([0.4, 0.3, 0.2, 0.1])) == 0.0
    assert auc(labels, np.zeros(4)) == 0.5
    with pytest.raises(ValueError, match="both classes"):
        auc(np.ones(4), np.arange(4))


def test_mae() -> None:
    assert mae(np.array([1.0, 2.0]), np.array([2.0, 0.0])) == 1.5

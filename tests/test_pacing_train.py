"""Training and evaluating the pacing policy: the file it writes, and the eval CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from exchange import cli
from exchange.market import BUDGET_FRACTIONS, Market, MarketConfig, simulate
from exchange.pacers import DEFAULT_POLICY, DualGradient, PolicyPacer
from exchange.pacing_eval import evaluate, methods
from exchange.pacing_train import PacingTrainConfig, Policy, train, unflatten
from inference.world import WorldConfig

SMALL = MarketConfig(
    impressions_per_day=4000,
    campaigns=4,
    intervals=24,
    world=WorldConfig(seed=5, n_users=2000, n_items=512, n_ads=128, n_placements=64),
)


@pytest.fixture(scope="module")
def market() -> Market:
    return Market(SMALL)


def tiny_run(out: Path) -> Path:
    config = PacingTrainConfig(
        generations=3,
        pairs=2,
        days=2,
        days_per_generation=1,
        budgets_per_day=1,
        validation_days=1,
        validate_every=1,
        market=SMALL,
    )
    return train(config, out, progress=False)


def test_a_zero_residual_policy_is_exactly_the_dual_controller(market: Market):
    """Training starts from the best baseline: an untrained policy must be it."""
    day = market.day(1)
    budget = day.budgets(BUDGET_FRACTIONS)
    policy = Policy(hidden=8)
    weights = unflatten(policy.flat().double().numpy()[None], policy.shapes())
    dual = simulate(day, budget, DualGradient(), replicas=len(BUDGET_FRACTIONS))
    rl = simulate(day, budget, PolicyPacer(weights), replicas=len(BUDGET_FRACTIONS))
    np.testing.assert_allclose(rl.multiplier, dual.multiplier, rtol=1e-12)
    np.testing.assert_array_equal(rl.spent, dual.spent)


def test_training_writes_a_versioned_policy_that_loads_and_is_deterministic(tmp_path: Path):
    first = tiny_run(tmp_path / "a")
    second = tiny_run(tmp_path / "b")
    spec = json.loads((first / "spec.json").read_text())
    assert first.name == f"policy-{spec['version']}"
    assert spec["config"]["generations"] == 3 and 0 < spec["validation_r_over_rstar"] <= 1
    a, b = PolicyPacer.load(first), PolicyPacer.load(second)
    for wa, wb in zip(a.weights, b.weights, strict=True):
        np.testing.assert_array_equal(wa, wb)  # same seed, same policy
    assert (a.base_step, a.base_initial_mu) == (DualGradient().step, DualGradient().initial_mu)


def test_the_shipped_policy_beats_the_dual_baseline_on_a_held_out_day(market: Market):
    """A smoke check on a small market the policy never saw (the real figure is
    bench.pacing's): the learned residual must not be worse than its own base."""
    evaluation = evaluate(market, methods(DEFAULT_POLICY), days=2, progress=False)
    by = {(r.method, r.budget_fraction): r for r in evaluation.results}
    rl = np.mean([by["rl", f].r_over_rstar for f in BUDGET_FRACTIONS])
    dual = np.mean([by["dual", f].r_over_rstar for f in BUDGET_FRACTIONS])
    none = np.mean([by["none", f].r_over_rstar for f in BUDGET_FRACTIONS])
    assert rl >= dual - 0.01 and rl > none + 0.2
    assert all(r.overspend == 0 for r in evaluation.results)


def test_pacing_eval_cli_prints_the_table_and_writes_the_plot(tmp_path: Path, capsys):
    png = tmp_path / "pacing.png"
    small = ["--days", "1", "--impressions", "3000", "--campaigns", "3"]
    cli.main(["pacing", "eval", *small, "--plot", str(png)])
    out = capsys.readouterr().out
    for method in ("none", "throttle", "pid", "dual", "rl"):
        assert f"\n{method} " in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pacing_train_cli_writes_and_ships_a_policy(tmp_path: Path, capsys, monkeypatch):
    shipped = tmp_path / "shipped"
    monkeypatch.setattr("exchange.pacers.DEFAULT_POLICY", shipped)
    small = ["--impressions", "1000", "--campaigns", "2", "--generations", "1"]
    cli.main(["pacing", "train", *small, "--out", str(tmp_path / "models"), "--ship"])
    out = capsys.readouterr().out
    (written,) = (tmp_path / "models").iterdir()
    assert f"wrote {written}" in out and f"shipped as {shipped}" in out
    assert PolicyPacer.load(shipped).version == PolicyPacer.load(written).version


def test_pacing_cli_refuses_bad_arguments(tmp_path: Path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["pacing", "eval", "--days", "0"])
    assert "--days, --generations and --campaigns must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["pacing", "eval", "--impressions", "10"])
    with pytest.raises(SystemExit, match="cannot load the pacing policy"):
        cli.main(["pacing", "eval", "--policy", str(tmp_path / "missing")])

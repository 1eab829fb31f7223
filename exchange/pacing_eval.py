"""Every pacing method on held-out simulated days: the table and the picture.

Each day's campaigns play every budget level (a fraction of what the campaign would
spend unpaced that day) with every method; R / R* is the attention bought over the
hindsight optimum of that campaign, budget and day. Days come from seeds that
training never used (`market.EVAL_SEED_BASE` onwards).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from exchange.hindsight import hindsight_optimum
from exchange.market import BUDGET_FRACTIONS, EVAL_SEED_BASE, Episode, Market, simulate
from exchange.pacers import (
    BASELINES,
    DEFAULT_POLICY,
    Pacer,
    PolicyPacer,
)


def methods(policy: Path = DEFAULT_POLICY) -> dict[str, Callable[[], Pacer]]:
    """Every method by name; the baselines' gains are their tuned defaults."""
    PolicyPacer.load(policy)  # fail here, before any day is played
    return {**BASELINES, "rl": lambda: PolicyPacer.load(policy)}


@dataclass(frozen=True)
class Result:
    method: str
    budget_fraction: float
    r_over_rstar: float  # mean over campaigns and days
    r_over_rstar_min: float
    spent_fraction: float  # mean share of the budget spent
    overspend: int  # the most any campaign spent over its budget, micros

    def as_dict(self) -> dict:
        return {
            "method": self.method,
            "budget_fraction": round(self.budget_fraction, 6),
            "r_over_rstar": round(self.r_over_rstar, 4),
            "r_over_rstar_min": round(self.r_over_rstar_min, 4),
            "spent_fraction": round(self.spent_fraction, 4),
            "overspend": self.overspend,
        }


@dataclass(frozen=True)
class Curves:
    """One campaign's day under each method, for the plot."""

    budget: int
    forecast: np.ndarray  # [T]
    spend: dict[str, np.ndarray]  # method -> [T] micros
    multiplier: dict[str, np.ndarray]  # method -> [T]
    pass_rate: dict[str, np.ndarray]
    r_over_rstar: dict[str, float]


@dataclass(frozen=True)
class Evaluation:
    results: list[Result]
    curves: Curves
    ratios: dict[str, np.ndarray]  # method -> [B, K × days] R / R* per campaign-day

    def margin(self, method: str, other: str) -> tuple[np.ndarray, np.ndarray]:
        """Paired difference of R / R* between two methods per budget level: mean and
        standard error over the same campaign-days ([B] each)."""
        diff = self.ratios[method] - self.ratios[other]  # [B, n]
        return diff.mean(axis=1), diff.std(axis=1, ddof=1) / np.sqrt(diff.shape[1])


def evaluate(
    market: Market,
    pacers: dict[str, Callable[[], Pacer]],
    days: int,
    fractions: tuple[float, ...] = BUDGET_FRACTIONS,
    progress: bool = True,
) -> Evaluation:
    """Play every method on `days` held-out days at every budget fraction."""
    b, ratio, spent, over = len(fractions), {}, {}, {}
    curves = None
    for i in tqdm(range(days), "held-out days", disable=not progress):
        day = market.day(EVAL_SEED_BASE + i)
        k = day.campaigns
        budget = day.budgets(fractions)  # [B*K]
        rstar = np.maximum(hindsight_optimum(day, budget, b), 1e-9)
        episodes: dict[str, Episode] = {}
        for name, make in pacers.items():
            ep = episodes[name] = simulate(day, budget, make(), replicas=b)
            ratio.setdefault(name, []).append((ep.bought / rstar).reshape(b, k))
            spent.setdefault(name, []).append((ep.spent / np.maximum(budget, 1)).reshape(b, k))
            over.setdefault(name, []).append(ep.overspend.reshape(b, k))
        if curves is None:
            curves = _curves(day.forecast, budget, rstar, episodes, env=(b // 2) * k)
    results, ratios = [], {}
    for name in pacers:
        r, s, o = (np.concatenate(x[name], axis=1) for x in (ratio, spent, over))  # [B, K*days]
        ratios[name] = r
        for j, f in enumerate(fractions):
            row = (float(r[j].mean()), float(r[j].min()), float(s[j].mean()), int(o[j].max()))
            results.append(Result(name, f, *row))
    return Evaluation(results, curves, ratios)


def _curves(forecast, budget, rstar, episodes: dict[str, Episode], env: int) -> Curves:
    return Curves(
        budget=int(budget[env]),
        forecast=forecast,
        spend={m: ep.spend[:, env] for m, ep in episodes.items()},
        multiplier={m: ep.multiplier[:, env] for m, ep in episodes.items()},
        pass_rate={m: ep.pass_rate[:, env] for m, ep in episodes.items()},
        r_over_rstar={m: float(ep.bought[env] / rstar[env]) for m, ep in episodes.items()},
    )


def table(results: list[Result]) -> str:
    """Methods down, budget fractions across: mean R / R* (spent share)."""
    fractions = sorted({r.budget_fraction for r in results})
    names = list(dict.fromkeys(r.method for r in results))
    cell = {(r.method, r.budget_fraction): r for r in results}
    head = f"{'method':<10}" + "".join(f"{'1/' + str(round(1 / f)):>16}" for f in fractions)
    head += f"{'mean':>9}{'overspend':>11}"
    lines = [head, "-" * len(head)]
    for name in names:
        row = [cell[name, f] for f in fractions]
        line = f"{name:<10}" + "".join(
            f"{r.r_over_rstar:>9.4f} ({r.spent_fraction:.3f})" for r in row
        )
        line += f"{np.mean([r.r_over_rstar for r in row]):>9.4f}{max(r.overspend for r in row):>11}"
        lines.append(line)
    lines.append("cells: mean R/R* over campaigns and days (mean share of the budget spent)")
    return "\n".join(lines)


def plot(curves: Curves, path: Path) -> Path:
    """Cumulative spend against the budget, and the multiplier, over the day per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = np.arange(len(curves.forecast) + 1) * 24 / len(curves.forecast)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    plan = np.concatenate([[0], np.cumsum(curves.forecast)])
    top.plot(hours, plan, "k:", label="traffic forecast")
    for m, spend in curves.spend.items():
        share = np.concatenate([[0], np.cumsum(spend)]) / max(curves.budget, 1)
        top.plot(hours, share, label=f"{m} (R/R* {curves.r_over_rstar[m]:.3f})")
        bottom.step(hours[:-1], curves.multiplier[m] * curves.pass_rate[m], where="post", label=m)
    top.set_ylabel("share of the budget spent")
    top.set_title(f"one campaign, budget ${curves.budget / 1e6:,.2f}, one held-out day")
    top.legend(fontsize=8)
    bottom.set_ylabel("multiplier × pass rate")
    bottom.set_yscale("log")
    bottom.set_xlabel("hour of day (UTC)")
    bottom.set_xticks(range(0, 25, 3))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

"""Training the pacing policy offline in the market simulator (torch; not for the server).

The policy is a small MLP (`pacers.PolicyPacer`) trained by evolution strategies
(Salimans et al. 2017): each generation perturbs the weights in 2P antithetic
directions, plays every perturbed policy over the same simulated days and budgets,
and steps along the rank-weighted directions with Adam. The return is exactly the
quantity we report — R / R*, the attention bought over the hindsight optimum —
averaged over campaigns and budgets, so there is no reward to shape: the whole day
is one episode and the budget constraint is enforced by the simulator, as the
exchange enforces it. The population plays as replicas of one `simulate` call.

Output: a policy directory (policy.npz, spec.json) named and versioned by its
hash, like the attention model; the server loads it with numpy alone.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from exchange.hindsight import hindsight_optimum
from exchange.market import Day, Market, MarketConfig, simulate
from exchange.pacers import FEATURES, MAX_RESIDUAL, DualGradient, PolicyPacer

VALIDATION_SEED_BASE = 500_000  # validation days; training days are 0..days-1


@dataclass(frozen=True)
class PacingTrainConfig:
    seed: int = 0
    generations: int = 600
    pairs: int = 24  # antithetic pairs per generation: 2 × pairs policies
    sigma: float = 0.03  # perturbation scale
    lr: float = 0.01
    hidden: int = 32
    days: int = 24  # training days (seeds 0..days-1)
    days_per_generation: int = 2
    budgets_per_day: int = 3  # budget fractions drawn per campaign per day
    budget_low: float = 1 / 48  # fractions of the unpaced spend, log-uniform
    budget_high: float = 3 / 4
    validation_days: int = 4
    validate_every: int = 10
    market: MarketConfig = field(default_factory=MarketConfig)


class Policy(torch.nn.Module):
    """The MLP `PolicyPacer` runs; here only to hold and initialise the weights."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(FEATURES, hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden, hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden, 1),
        )
        with torch.no_grad():  # a zero residual: training starts from the dual controller
            self.net[-1].weight.zero_()
            self.net[-1].bias.zero_()

    def shapes(self) -> list[tuple[int, ...]]:
        """numpy layout per layer: W [in, out], b [out]."""
        out = []
        for layer in self.net:
            if isinstance(layer, torch.nn.Linear):
                out += [(layer.in_features, layer.out_features), (layer.out_features,)]
        return out

    def flat(self) -> torch.Tensor:
        """All weights in `shapes` order, W transposed to [in, out]."""
        return torch.cat(
            [p.detach().T.reshape(-1) if p.ndim == 2 else p.detach() for p in self.parameters()]
        )


def unflatten(flat: np.ndarray, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """[P, n] flat parameters -> PolicyPacer weights (W [P, in, out], b [P, out])."""
    out, at = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        out.append(flat[:, at : at + size].reshape(len(flat), *shape))
        at += size
    return out


def score(day: Day, fractions: np.ndarray, weights: list[np.ndarray]) -> np.ndarray:
    """Mean R / R* of each of P policies over the day's campaigns × budget fractions [B, K]."""
    p, b = len(weights[0]), len(fractions)
    budget = day.budgets(fractions)  # [B*K]
    rstar = np.maximum(hindsight_optimum(day, budget, b), 1e-9)  # [B*K]
    episode = simulate(day, np.tile(budget, p), PolicyPacer(weights), replicas=p * b)
    ratio = episode.bought.reshape(p, -1) / rstar[None, :]  # [P, B*K]
    return ratio.mean(axis=1)


def _validate(days: list[Day], fractions: np.ndarray, weights: list[np.ndarray]) -> float:
    return float(np.mean([score(day, fractions, weights)[0] for day in days]))


def train(config: PacingTrainConfig, out: Path, progress: bool = True) -> Path:
    """Train, keep the best policy on the validation days, write its directory."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    market = Market(config.market)
    started = time.perf_counter()
    days = [market.day(s) for s in tqdm(range(config.days), "training days", disable=not progress)]
    held = [market.day(VALIDATION_SEED_BASE + s) for s in range(config.validation_days)]
    k = config.market.campaigns
    fixed = np.repeat(np.array([1 / 32, 1 / 8, 1 / 2])[:, None], k, axis=1)  # [3, K]

    policy = Policy(config.hidden)
    shapes = policy.shapes()
    # ES estimates the gradient itself (no autograd); Adam only applies it.
    theta = torch.nn.Parameter(policy.flat().double(), requires_grad=False)
    adam = torch.optim.Adam([theta], lr=config.lr)
    best = (_validate(held, fixed, unflatten(theta.detach().numpy()[None], shapes)), 0)
    best_theta = theta.detach().clone()
    bar = tqdm(range(1, config.generations + 1), "generations", disable=not progress)
    for gen in bar:
        eps = torch.randn(config.pairs, theta.numel(), dtype=torch.float64)
        members = theta.detach()[None] + config.sigma * torch.cat([eps, -eps])  # [2P, n]
        weights = unflatten(members.numpy(), shapes)
        fitness = np.zeros(2 * config.pairs)
        for d in rng.choice(len(days), config.days_per_generation, replace=False):
            low, high = np.log(config.budget_low), np.log(config.budget_high)
            fractions = np.exp(rng.uniform(low, high, (config.budgets_per_day, k)))
            fitness += score(days[d], fractions, weights)
        fitness /= config.days_per_generation
        ranks = np.argsort(np.argsort(fitness)) / (len(fitness) - 1) - 0.5  # [2P] in ±0.5
        utility = torch.as_tensor(ranks[: config.pairs] - ranks[config.pairs :])
        grad = (utility[:, None] * eps).sum(0) / (config.pairs * config.sigma)
        adam.zero_grad()
        theta.grad = -grad  # Adam minimises
        adam.step()
        if gen % config.validate_every == 0 or gen == config.generations:
            now = _validate(held, fixed, unflatten(theta.detach().numpy()[None], shapes))
            if now > best[0]:
                best, best_theta = (now, gen), theta.detach().clone()
            bar.set_postfix(train=f"{fitness.mean():.4f}", val=f"{now:.4f}", best=f"{best[0]:.4f}")
    weights = unflatten(best_theta.numpy()[None], shapes)
    return write_policy(
        out,
        [w[0] for w in weights],
        {
            "config": asdict(config),
            "validation_r_over_rstar": best[0],
            "best_generation": best[1],
            "train_seconds": round(time.perf_counter() - started, 1),
        },
    )


def write_policy(out: Path, weights: list[np.ndarray], info: dict) -> Path:
    """policy.npz + spec.json in out/policy-<hash>/; the hash is the version."""
    buf = io.BytesIO()
    np.savez(buf, **{f"w{i}": w.astype(np.float64) for i, w in enumerate(weights)})
    blob = buf.getvalue()
    version = hashlib.sha256(blob).hexdigest()[:12]
    directory = out / f"policy-{version}"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "policy.npz").write_bytes(blob)
    base = DualGradient()
    spec = {
        "version": version,
        "features": FEATURES,
        "max_residual": MAX_RESIDUAL,
        "base_step": base.step,
        "base_initial_mu": base.initial_mu,
        **info,
    }
    (directory / "spec.json").write_text(json.dumps(spec, indent=2) + "\n")
    return directory

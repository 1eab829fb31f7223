"""Pacers: every control interval, each campaign's bid multiplier from what was seen.

One interface serves the market simulator and the running exchange: `act` takes an
`Observation` of E campaigns (arrays) and returns their multipliers and pass rates
(the share of auctions entered; only throttling lowers it). Multipliers stay in
(0, 1]: pacing spreads a budget, it never bids above the advertiser's aCPM.

Most pacers aim at a spend plan that follows the traffic forecast: of what is
left, the next interval should spend its share of the traffic that is left.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from inference.world import HOUR_TRAFFIC

MIN_MULTIPLIER = 1e-3
DEFAULT_POLICY = Path(__file__).parent / "policies" / "default"
SECONDS_PER_DAY = 86_400


def traffic_share(begin_s: np.ndarray | float, end_s: np.ndarray | float) -> np.ndarray:
    """The forecast share of a day's traffic between two times of day (seconds after
    midnight UTC): the world's diurnal profile, uniform within each hour."""
    cum = np.concatenate([[0.0], np.cumsum(HOUR_TRAFFIC)]) / HOUR_TRAFFIC.sum()  # [25]
    hours = np.arange(25) * 3600.0
    return np.interp(end_s, hours, cum) - np.interp(begin_s, hours, cum)


def traffic_profile(intervals: int) -> np.ndarray:
    """The forecast share of each of a day's control intervals ([T], sums to 1)."""
    edges = np.arange(intervals + 1) * SECONDS_PER_DAY / intervals  # [T+1]
    return traffic_share(edges[:-1], edges[1:])


@dataclass(frozen=True)
class Observation:
    """What a pacer sees before an interval: scalars for the day, [E] arrays per campaign.

    The `last_*` counters cover the interval that just ended (zeros before the first).
    """

    time_left: float  # share of the day left, 1 at midnight
    traffic_next: float  # forecast share of the day's traffic in the next interval
    traffic_left: float  # forecast share of the day's traffic still to come
    budget: np.ndarray  # [E] int64 daily budget, micros
    spent: np.ndarray  # [E] int64 spent (and reserved) today, micros
    last_spend: np.ndarray  # [E] int64 micros
    last_seen: np.ndarray  # [E] int64 auctions the campaign was eligible for
    last_wins: np.ndarray  # [E] int64
    last_seconds: np.ndarray  # [E] float predicted attentive seconds bought
    acpm_micros: np.ndarray  # [E] float the advertiser's aCPM

    @property
    def remaining(self) -> np.ndarray:
        return np.maximum(self.budget - self.spent, 0).astype(np.float64)  # [E]

    def plan(self) -> np.ndarray:
        """The next interval's spend target: its share of the traffic still to come."""
        share = self.traffic_next / max(self.traffic_left, 1e-12)
        return self.remaining * min(share, 1.0)  # [E] micros


class Pacer(Protocol):
    name: str
    n: int  # campaigns it paces (set by reset and grow)

    def reset(self, n: int) -> None:
        """Forget everything: a new day for n campaigns."""

    def grow(self, n: int) -> None:
        """Campaigns were added: keep the state of the first ones, start the rest fresh."""

    def act(self, obs: Observation) -> tuple[np.ndarray, np.ndarray]:
        """Multipliers [E] in (0, 1] and pass rates [E] in [0, 1] for the next interval."""


class PerCampaign:
    """Pacer state kept as [E] arrays, one entry per campaign: `_fresh(n)` says what a
    new campaign starts with, so a new day and a new campaign mean the same thing."""

    def _fresh(self, n: int) -> dict[str, np.ndarray]:
        return {}

    def reset(self, n: int) -> None:
        self.n = n
        for name, value in self._fresh(n).items():
            setattr(self, name, value)

    def grow(self, n: int) -> None:
        for name, value in self._fresh(n - self.n).items():
            setattr(self, name, np.concatenate([getattr(self, name), value]))
        self.n = n


class NoPacing(PerCampaign):
    """Bid the full value until the budget runs out."""

    name = "none"

    def act(self, obs: Observation) -> tuple[np.ndarray, np.ndarray]:
        return np.ones(self.n), np.ones(self.n)


class _PlanFeedback(PerCampaign):
    """Shared bookkeeping: the last interval's target, to compare its spend against."""

    def _fresh(self, n: int) -> dict[str, np.ndarray]:
        return {"target": np.zeros(n)}  # [E] what the last interval should have spent

    def _ratio(self, obs: Observation) -> tuple[np.ndarray, np.ndarray]:
        """(spend / target of the last interval clipped to [1/8, 8], whether it had one)."""
        had = self.target > 0
        ratio = np.where(had, obs.last_spend / np.maximum(self.target, 1e-9), 1.0)
        return np.clip(ratio, 1 / 8, 8.0), had


class Throttle(_PlanFeedback):
    """Probabilistic throttling: enter a share of auctions, scaled to meet the plan."""

    name = "throttle"

    def __init__(self, gain: float = 1.0, initial: float = 0.2) -> None:
        self.gain, self.initial = gain, initial

    def _fresh(self, n: int) -> dict[str, np.ndarray]:
        return {**super()._fresh(n), "rate": np.full(n, self.initial)}

    def act(self, obs: Observation) -> tuple[np.ndarray, np.ndarray]:
        ratio, had = self._ratio(obs)
        rate = np.clip(self.rate * ratio**-self.gain, 1e-4, 1.0)  # under plan -> open up
        self.rate = np.where(had, rate, self.rate)
        self.target = obs.plan()
        return np.ones(self.n), self.rate.copy()


class PID(_PlanFeedback):
    """A PID controller on the spend rate, acting on the log multiplier."""

    name = "pid"

    def __init__(
        self, kp: float = 0.1, ki: float = 0.05, kd: float = 0.0, initial: float = 0.3
    ) -> None:
        self.kp, self.ki, self.kd, self.initial = kp, ki, kd, initial

    def _fresh(self, n: int) -> dict[str, np.ndarray]:
        return {**super()._fresh(n), "integral": np.zeros(n), "previous": np.zeros(n)}

    def act(self, obs: Observation) -> tuple[np.ndarray, np.ndarray]:
        ratio, had = self._ratio(obs)
        error = np.where(had, -np.log(ratio), 0.0)  # > 0: spend more
        self.integral = np.clip(self.integral + self.ki * error, -10.0, 1.0)  # anti-windup
        derivative = self.kd * (error - self.previous)
        u = np.log(self.initial) + self.kp * error + self.integral + derivative
        self.previous = error
        self.target = obs.plan()
        return np.clip(np.exp(u), MIN_MULTIPLIER, 1.0), np.ones(self.n)


class DualGradient(_PlanFeedback):
    """Adaptive pacing (Balseiro & Gur): bid value / (1 + mu), mu moved by the spend error.

    mu is the budget's shadow price; a gradient step on the dual raises it when the
    interval spent more than its plan and lowers it (not below 0) when it spent less.
    The step is relative to (1 + mu), so it is the same in every price regime.
    """

    name = "dual"

    def __init__(self, step: float = 0.1, initial_mu: float = 3.0) -> None:
        self.step, self.initial_mu = step, initial_mu

    def _fresh(self, n: int) -> dict[str, np.ndarray]:
        return {**super()._fresh(n), "mu": np.full(n, self.initial_mu)}

    def act(self, obs: Observation) -> tuple[np.ndarray, np.ndarray]:
        ratio, had = self._ratio(obs)
        grad = np.where(had, ratio - 1.0, 0.0)  # (spend - plan) / plan
        self.mu = np.clip(self.mu + self.step * grad * (1.0 + self.mu), 0.0, 1 / MIN_MULTIPLIER)
        self.target = obs.plan()
        return 1.0 / (1.0 + self.mu), np.ones(self.n)


BASELINES: dict[str, type[PerCampaign]] = {
    "none": NoPacing,
    "throttle": Throttle,
    "pid": PID,
    "dual": DualGradient,
}  # by name, with their tuned defaults; "rl" (below) needs its policy file


# --- the learned policy ---------------------------------------------------------------

FEATURES = 10
MAX_RESIDUAL = 0.5  # the policy moves log(multiplier) by at most this beyond the dual's step


def policy_features(
    obs: Observation, multiplier: np.ndarray, rate: np.ndarray, base: np.ndarray
) -> np.ndarray:
    """The policy's state, [E, FEATURES], every feature scaled to about [-3, 3].

    `rate` is the smoothed spend per unit of forecast traffic at the multipliers in
    force (micros per share of the day); `base` is the dual controller's step on
    log(multiplier). Both are kept by the pacer across intervals.
    """
    n = len(multiplier)
    remaining = obs.remaining
    budget = np.maximum(obs.budget.astype(np.float64), 1.0)
    need = remaining / max(obs.traffic_left, 1e-9)  # spend per traffic share to use it all
    pressure = np.log(np.maximum(need, 1.0) / np.maximum(rate, 1.0))  # > 0: spend faster
    cost = np.where(
        obs.last_seconds > 0,
        obs.last_spend * 1000.0 / np.maximum(obs.last_seconds, 1e-9) / obs.acpm_micros,
        0.0,
    )  # price per attentive second, as a share of the aCPM
    return np.stack(
        [
            np.full(n, obs.time_left),
            remaining / budget,
            np.clip(pressure, -3.0, 3.0),
            np.log(multiplier),
            obs.last_wins / np.maximum(obs.last_seen, 1),  # win rate
            np.clip(cost, 0.0, 1.0),
            np.full(n, obs.traffic_next / max(obs.traffic_left, 1e-9)),
            (obs.last_seen > 0).astype(np.float64),
            np.full(n, np.log(max(obs.traffic_left, 1e-4)) / 4),
            np.clip(base, -3.0, 3.0),
        ],
        axis=1,
    )


def mlp(weights: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    """A ReLU MLP for P policies at once (ReLU: numpy's tanh is slow at training's scale).

    weights alternate W [P, in, out] and b [P, out]; x is [P, n, in] -> [P, n, out].
    """
    for i in range(0, len(weights), 2):
        x = x @ weights[i] + weights[i + 1][:, None, :]
        if i + 2 < len(weights):
            x = np.maximum(x, 0.0)
    return x


class PolicyPacer(_PlanFeedback):
    """The learned policy: the dual controller's step on log(multiplier), plus a learned
    residual from `policy_features`.

    With a zero residual it is exactly `DualGradient` (its base), so training starts
    from the best baseline and learns what a fixed gain cannot: how hard to correct
    at this time of day, with this much budget and this cost of attention. Holds P
    policies at once for training (env e runs policy e // (E / P)); a shipped policy
    is one. Runs on numpy: the server needs no torch.
    """

    name = "rl"
    SMOOTHING = 0.5  # weight of the newest interval in the spend-rate estimate

    def __init__(
        self,
        weights: list[np.ndarray],
        version: str = "",
        base_step: float = DualGradient().step,
        base_initial_mu: float = DualGradient().initial_mu,
    ) -> None:
        """weights: W [P, in, out] and b [P, out] alternating, for P policies."""
        self.weights, self.version = weights, version
        self.base_step, self.base_initial_mu = base_step, base_initial_mu

    @classmethod
    def load(cls, directory: Path = DEFAULT_POLICY) -> PolicyPacer:
        """Read a policy directory written by `attnx pacing train`; checks its hash."""
        spec = json.loads((directory / "spec.json").read_text())
        blob = (directory / "policy.npz").read_bytes()
        digest = hashlib.sha256(blob).hexdigest()[:12]
        if digest != spec["version"]:
            raise ValueError(
                f"{directory}/policy.npz does not match its spec.json (version "
                f"{spec['version']}, file hash {digest}): retrain or restore the directory"
            )
        with np.load(directory / "policy.npz") as f:
            weights = [f[f"w{i}"][None] for i in range(len(f.files))]  # one policy: P = 1
        if weights[0].shape[-2] != FEATURES:
            raise ValueError(f"{directory}: policy expects {weights[0].shape[-2]} features")
        return cls(weights, spec["version"], spec["base_step"], spec["base_initial_mu"])

    def _fresh(self, n: int) -> dict[str, np.ndarray]:
        return {
            **super()._fresh(n),
            "multiplier": np.full(n, 1.0 / (1.0 + self.base_initial_mu)),
            "rate": np.zeros(n),
        }

    def reset(self, n: int) -> None:
        super().reset(n)
        self.last_share = 0.0

    def act(self, obs: Observation) -> tuple[np.ndarray, np.ndarray]:
        ratio, had = self._ratio(obs)
        base = np.where(had, -np.log1p(self.base_step * (ratio - 1.0)), 0.0)  # dual's step
        observed = obs.last_spend / max(self.last_share, 1e-9)  # per traffic share
        smoothed = (1 - self.SMOOTHING) * self.rate + self.SMOOTHING * observed
        seen = obs.last_seen > 0
        self.rate = np.where(seen, np.where(self.rate > 0, smoothed, observed), self.rate)
        self.last_share = obs.traffic_next
        x = policy_features(obs, self.multiplier, self.rate, base)  # [E, F]
        p = self.weights[0].shape[0]
        out = mlp(self.weights, x.reshape(p, -1, FEATURES)).reshape(-1)  # [E]
        step = base + MAX_RESIDUAL * np.tanh(out)
        self.multiplier = np.clip(self.multiplier * np.exp(step), MIN_MULTIPLIER, 1.0)
        self.target = obs.plan()
        return self.multiplier.copy(), np.ones(self.n)

"""Every pacing method on held-out simulated days, against the hindsight optimum.

    python -m bench.pacing [--days 8] [--policy DIR] [--plot var/pacing.png]

Workload: the default market (`MarketConfig()`: about 75k impressions a day from the
simulated world, 16 campaigns with their own aCPM, creative and targeting, 96 control
intervals of 15 minutes, competing demand by hour and placement with day-level shifts
and unannounced surges). Days use seeds from `market.EVAL_SEED_BASE` on, never seen in
training. Each campaign plays each budget level (1/32 .. 1/2 of what it would spend
unpaced that day) under each method: none, throttle, pid, dual (Balseiro & Gur) and rl
(the shipped policy). R / R* is the attention bought over the LP hindsight optimum.

Targets (issue #6): rl mean R/R* >= 0.95, above every baseline at every budget level,
spent fraction in [0.97, 1.0], overspend exactly 0. Also timed: generating one day and
playing it for all campaigns at one budget (the simulator's speed), and the online
control step of the shipped policy over 10k and 100k campaigns: its duration, and the
longest the event loop waited during it (a coroutine yielding in a loop measures it;
the policy's arithmetic runs on a worker thread). Last line: one JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import numpy as np
import orjson

from exchange.market import EVAL_SEED_BASE, Market, simulate
from exchange.pacers import DEFAULT_POLICY, PolicyPacer
from exchange.pacing_eval import Evaluation, evaluate, methods, plot, table
from exchange.pacing_loop import PacingLoop
from exchange.state import CampaignState


def targets(evaluation: Evaluation) -> dict:
    """The issue's targets, checked on these results; the margin over the best baseline
    at each level is paired over the same campaign-days, with its standard error."""
    results = evaluation.results
    by = {(r.method, r.budget_fraction): r for r in results}
    fractions = sorted({r.budget_fraction for r in results})
    rl = [by["rl", f] for f in fractions]
    others = {r.method for r in results} - {"rl"}
    margins = {}
    for j, f in enumerate(fractions):
        best = max(others, key=lambda m: by[m, f].r_over_rstar)
        mean, sem = evaluation.margin("rl", best)
        margins[f"1/{round(1 / f)}"] = {
            "over": best,
            "margin": round(float(mean[j]), 4),
            "sem": round(float(sem[j]), 4),
        }
    return {
        "rl_mean_r_over_rstar": round(float(np.mean([r.r_over_rstar for r in rl])), 4),
        "rl_mean_at_least_0_95": bool(np.mean([r.r_over_rstar for r in rl]) >= 0.95),
        "rl_margin_over_best_baseline": margins,
        "rl_above_every_baseline": all(m["margin"] > 0 for m in margins.values()),
        "rl_spent_fraction_in_0_97_1": all(0.97 <= r.spent_fraction <= 1.0 for r in rl),
        "overspend_zero": all(r.overspend == 0 for r in results),
    }


async def _heartbeat(gaps: list[float], done: asyncio.Event) -> None:
    """Yield to the loop over and over, recording how long each turn took."""
    while not done.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0)
        gaps.append(time.perf_counter() - t)


async def online_tick(campaigns: int, policy: Path, rounds: int = 5) -> dict:
    """Median control-step time and the longest event-loop stall over `rounds` steps."""
    state = CampaignState(capacity=campaigns)
    for i in range(campaigns):
        state.set_budget(state.slot(f"c{i}"), 10_000_000, 4_000_000)
    loop = PacingLoop(state, PolicyPacer.load(policy), 900.0, clock=lambda: 1.7e9 + 12 * 3600)
    await loop.tick_async()
    ticks, stalls = [], []
    for _ in range(rounds):
        state.spent[:campaigns] += 1000
        state.seen[:campaigns], state.wins[:campaigns] = 50, 5
        state.won_seconds[:campaigns] = 15.0
        gaps: list[float] = []
        done = asyncio.Event()
        beat = asyncio.create_task(_heartbeat(gaps, done))
        await asyncio.sleep(0.005)
        tick = await loop.tick_async()
        done.set()
        await beat
        ticks.append(tick.seconds)
        stalls.append(max(gaps))
    return {
        "campaigns": campaigns,
        "tick_ms": round(float(np.median(ticks)) * 1e3, 2),
        "loop_stall_ms": round(float(np.max(stalls)) * 1e3, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=8, help="held-out days")
    parser.add_argument("--policy", type=Path, default=DEFAULT_POLICY)
    parser.add_argument("--plot", type=Path, help="write one campaign's curves to this PNG")
    args = parser.parse_args()

    market = Market()
    started = time.perf_counter()
    day = market.day(EVAL_SEED_BASE)
    generate_s = time.perf_counter() - started
    budget = (day.unpaced_spend() // 8).astype(np.int64)
    started = time.perf_counter()
    simulate(day, budget, PolicyPacer.load(args.policy))
    simulate_s = time.perf_counter() - started

    evaluation = evaluate(market, methods(args.policy), days=args.days)
    print(table(evaluation.results))
    print(
        f"one day: {len(day.campaign):,} (impression, campaign) pairs generated in "
        f"{generate_s:.2f} s, played for {day.campaigns} campaigns in {simulate_s:.3f} s"
    )
    if args.plot:
        print(f"wrote {plot(evaluation.curves, args.plot)}")
    online = [asyncio.run(online_tick(n, args.policy)) for n in (10_000, 100_000)]
    for o in online:
        print(
            f"online step over {o['campaigns']:,} campaigns: {o['tick_ms']} ms, "
            f"longest event-loop stall {o['loop_stall_ms']} ms"
        )
    report = {
        "bench": "pacing",
        "workload": {
            "days": args.days,
            "seeds_from": EVAL_SEED_BASE,
            "campaigns_per_day": day.campaigns,
            "intervals": day.intervals,
            "impressions_per_day": market.config.impressions_per_day,
            "policy": PolicyPacer.load(args.policy).version,
        },
        "generate_day_s": round(generate_s, 3),
        "simulate_day_s": round(simulate_s, 4),
        "online_step": online,
        "results": [r.as_dict() for r in evaluation.results],
        "targets": targets(evaluation),
    }
    print(orjson.dumps(report).decode())


if __name__ == "__main__":
    main()

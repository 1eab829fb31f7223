"""Simulated-world throughput and its Bayes-optimal ceilings.

    python -m bench.world [--impressions 1000000] [--seed 1]

Workload: the default world (WorldConfig(): 16 topics, 4,096 items of which 1,024 ads,
50,000 users, 512 placements, histories of L = 50) built once, untimed; then ONE call of
`World.impressions(1_000_000, seed)` timed with perf_counter: users, placements, context,
candidate ads, histories with recent exposures, the ground truth (match, fatigue, P(view),
P(click), expected seconds) and the sampled labels, on one core (numpy, single thread).
The target is >= 1M impressions per minute. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import time

import orjson

from inference.metrics import bayes_report
from inference.world import World, WorldConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impressions", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1, help="sample seed (the world is seed 0)")
    args = parser.parse_args()

    world = World(WorldConfig())
    start = time.perf_counter()
    imps = world.impressions(args.impressions, seed=args.seed)
    seconds = time.perf_counter() - start
    per_minute = args.impressions / seconds * 60.0
    report = bayes_report(imps)
    print(f"{args.impressions:,} impressions in {seconds:.2f} s = {per_minute:,.0f} per minute")
    print(
        f"Bayes AUC view {report['auc_view_bayes']:.4f}, click {report['auc_click_bayes']:.4f}; "
        f"mean P(view) {imps.p_view.mean():.3f}, mean seconds {imps.seconds.mean():.2f}"
    )
    result = {
        "bench": "world",
        "impressions": args.impressions,
        "seconds": round(seconds, 3),
        "per_minute": round(per_minute),
        "auc_view_bayes": round(report["auc_view_bayes"], 4),
        "auc_click_bayes": round(report["auc_click_bayes"], 4),
        "mean_p_view": round(float(imps.p_view.mean()), 4),
        "mean_seconds": round(float(imps.seconds.mean()), 3),
    }
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()

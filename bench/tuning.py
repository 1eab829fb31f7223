"""The bid server's tuning knobs, side by side: which setting the figures point at.

    python -m bench.tuning [--seconds 5] [--rounds 2] [--campaigns 10000] [--only a,b]

Workload: `attnx serve` on embedded defaults with `--campaigns` generated demo
campaigns (the shipped model on ONNX Runtime, a SQLite ledger and its journal), once
per variant and round, the variants interleaved round by round (A B C, A B C) so that
the drift of this shared machine falls on all of them alike. Each run: the load
generator (bench.scaleout's: grpc.aio in its own process, pre-encoded requests, every
request a new id from 50k users) keeps 64 calls in flight for `--seconds` (saturation
RPS), then 1 in flight for `--seconds` (the round trip, and the server's own p50/p99
of the whole bid path from its /metrics). CPU time per request is counted per
process kind (bid servers, settlement processes) and for the generator. A variant
is a few lines of TOML and `attnx serve` arguments; `baseline` is the defaults.
Then, in this process, what `[server] gc_freeze` is for: the time one full garbage
collection takes with the exchange loaded, before and after gc.freeze().
The last line is one JSON object: per variant the median over rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import orjson

from bench.scaleout import cpu_seconds, running_server, save_requests
from bench.server import measure

_FIRST, *_REST = sorted(os.sched_getaffinity(0))  # "pinned": the server on one, its settler
_OTHER = _REST[0] if _REST else _FIRST  # on another (the same one if there is only one)
VARIANTS: dict[str, tuple[str, list[str]]] = {  # name -> (TOML, serve arguments)
    "baseline": ("", []),
    "no_gc_freeze": ("[server]\ngc_freeze = false\n", []),
    "ort_threads_2": ("[scorer]\nthreads = 2\n", []),
    "candidates_128": ("[auction]\nmax_candidates = 128\n", []),
    "sync_window_0": ("[settlement]\nsync_window_ms = 0\n", []),
    "pinned": (f"[server]\ncpus = [{_FIRST}]\n[settlement]\ncpus = [{_OTHER}]\n", []),
    "commit_200ms": ("[settlement]\ncommit_interval_ms = 200\n", []),
}
SATURATION = 64


def run_variant(
    folder: Path, toml: str, serve_args: list[str], seconds: float, campaigns: int, bodies
) -> dict:
    cfg = folder / "attnx.toml"
    cfg.write_text(f"[campaigns]\ndemo_count = {campaigns}\n{toml}")
    with running_server(folder, "--config", str(cfg), *serve_args) as (target, pid):
        http = f"http://127.0.0.1:{orjson.loads((folder / 'ports.json').read_bytes())['http']}"
        r = measure(  # state in memory: Redis is not this server's
            target, lambda: cpu_seconds(pid, redis=False), bodies, seconds, SATURATION, http=http
        )
    saturation, low, stages = r["saturation"], r["low"], r["stages_low"]
    return {
        "saturation_rps": saturation["rps"],
        "low_p50_us": low["p50_us"],
        "low_p99_us": low["p99_us"],
        **{
            f"server_{stage}_{q}_us": stages[stage].quantile(p) * 1e6
            for stage in ("auction", "durable", "total")
            for q, p in (("p50", 0.5), ("p99", 0.99))
        },
        "errors": saturation["errors"] + low["errors"],
        "cpu_us_per_request": r["cpu_us_per_request"],
    }


def full_collection_ms(folder: Path, campaigns: int) -> dict[str, float]:
    """What `[server] gc_freeze` is for: the time of one full cyclic collection (which
    pauses every request in flight) in a process holding the exchange with `campaigns`
    campaigns, before and after gc.freeze(); the fastest of 5 each."""
    import asyncio
    import gc
    import time
    from dataclasses import replace

    from exchange.app import Exchange
    from exchange.config import load_config

    async def measure() -> dict[str, float]:
        config = load_config(None)
        config = replace(
            config,
            campaigns=replace(config.campaigns, demo_count=campaigns),
            store=replace(config.store, url=f"sqlite:///{folder}/gc.db", journal=f"{folder}/j"),
        )
        exchange = Exchange(config)
        await exchange.start()
        exchange.warm_up()
        took = {}
        for label in ("not_frozen", "frozen"):
            if label == "frozen":
                gc.collect()
                gc.freeze()
            runs = []
            for _ in range(5):
                started = time.perf_counter()
                gc.collect()
                runs.append((time.perf_counter() - started) * 1000)
            took[f"{label}_ms"] = round(min(runs), 2)
        took["frozen_objects"] = gc.get_freeze_count()
        gc.unfreeze()
        await exchange.close()
        return took

    return asyncio.run(measure())


def median_of(runs: list[dict]) -> dict:
    out = {
        k: round(statistics.median(r[k] for r in runs), 1)
        for k in runs[0]
        if k != "cpu_us_per_request"
    }
    roles = sorted({role for r in runs for role in r["cpu_us_per_request"]})
    out["cpu_us_per_request"] = {
        role: round(statistics.median(r["cpu_us_per_request"].get(role, 0.0) for r in runs), 1)
        for role in roles
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--campaigns", type=int, default=10_000)
    parser.add_argument("--only", default="", help="comma-separated variant names")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(VARIANTS)
    unknown = set(names) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; known: {', '.join(VARIANTS)}")

    runs: dict[str, list[dict]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="attnx-bench-tuning-") as tmp:
        # Request ids must not repeat within a server (a repeat is a retry): one file
        # per phase, each big enough for its phase at any plausible rate.
        bodies = {
            "saturation": save_requests(Path(tmp) / "saturation.bin", int(args.seconds * 3000)),
            "low": save_requests(Path(tmp) / "low.bin", int(args.seconds * 1500)),
        }
        for round_ in range(args.rounds):
            for name in names:
                toml, serve_args = VARIANTS[name]
                with tempfile.TemporaryDirectory(dir=tmp) as run_dir:
                    r = run_variant(
                        Path(run_dir), toml, serve_args, args.seconds, args.campaigns, bodies
                    )
                runs[name].append(r)
                cpu = ", ".join(f"{k} {v:.0f}" for k, v in sorted(r["cpu_us_per_request"].items()))
                inside = ", ".join(
                    f"{stage} {r[f'server_{stage}_p50_us'] / 1000:.2f}/"
                    f"{r[f'server_{stage}_p99_us'] / 1000:.2f}"
                    for stage in ("auction", "durable", "total")
                )
                print(
                    f"round {round_ + 1} {name:<15} {r['saturation_rps']:7.1f} RPS; 1 in flight "
                    f"p50/p99 {r['low_p50_us'] / 1000:.2f}/{r['low_p99_us'] / 1000:.2f} ms "
                    f"(in the server: {inside}); CPU µs/request: {cpu}",
                    flush=True,
                )
        collection = full_collection_ms(Path(tmp), args.campaigns)
    print(
        f"one full garbage collection with {args.campaigns} campaigns loaded: "
        f"{collection['not_frozen_ms']:.1f} ms, after gc.freeze() {collection['frozen_ms']:.1f} ms "
        f"({collection['frozen_objects']} objects frozen)"
    )
    results = {name: median_of(rs) for name, rs in runs.items()}
    report = {
        "bench": "tuning",
        "workload": {
            "seconds": args.seconds,
            "rounds": args.rounds,
            "campaigns": args.campaigns,
            "saturation_concurrency": SATURATION,
            "low_concurrency": 1,
            "generator": "grpc.aio, own process, same machine",
        },
        "variants": {
            name: {"toml": VARIANTS[name][0], "args": VARIANTS[name][1]} for name in names
        },
        "results": results,
        "full_gc": collection,
    }
    print(orjson.dumps(report).decode())


if __name__ == "__main__":
    main()

"""Model latency per backend: torch eager vs ONNX Runtime (vs the GPU backends where present).

    python -m bench.inference [--model DIR] [--iterations 2000] [--cpu 0]

Workload: the shipped default model (D=32, 2 heads, L=50), one impression per
call with 64, 256 or 1024 candidate ads (banner/video/native mix) and a full
50-item history, as the auction calls it. What is timed is the model call
alone (`scorer.run(feeds)`, inputs already in the model's id space), one
thread, pinned to one CPU, after a warm-up; GPU backends include the copies to
and from the device. Backends that cannot run here are listed with the reason.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import orjson

from inference.runtime import (
    DEFAULT_MODEL,
    BackendUnavailable,
    OnnxScorer,
    TorchScorer,
    count_exposures,
)

SIZES = (64, 256, 1024)
GPU_BACKENDS = ("onnxruntime-cuda", "tensorrt")


def feeds_for(scorer, candidates: int, seed: int = 0) -> dict[str, np.ndarray]:
    spec = scorer.spec
    rng = np.random.default_rng(seed)
    ads = rng.integers(1, spec.n_ads + 1, candidates).astype(np.int32)
    history = rng.integers(1, spec.n_items, spec.history_len).astype(np.int32)
    return {
        "ads": ads,
        "ad_kind": rng.choice([1, 1, 1, 2, 3], candidates).astype(np.int32),
        "ad_duration": rng.choice([0.0, 15.0], candidates).astype(np.float32),
        "exposures": count_exposures(ads, history),
        "history": history,
        "context": np.array([17, 1, 4, 20], dtype=np.int32),
    }


def time_calls(scorer, feeds, iterations: int, warmup: int = 100) -> dict[str, float]:
    for _ in range(warmup):
        scorer.run(feeds)
    samples = np.empty(iterations, dtype=np.int64)
    for i in range(iterations):
        t0 = time.perf_counter_ns()
        scorer.run(feeds)
        samples[i] = time.perf_counter_ns() - t0
    us = samples / 1e3
    return {
        "p50_us": round(float(np.percentile(us, 50)), 1),
        "p99_us": round(float(np.percentile(us, 99)), 1),
    }


def backends(model: str, include_torch: bool) -> tuple[list, dict[str, str]]:
    ready, skipped = [], {}
    if include_torch:
        try:
            import torch

            torch.set_num_threads(1)
            ready.append(TorchScorer(model))
            if torch.cuda.is_available():
                ready.append(TorchScorer(model, device="cuda"))
        except ImportError as exc:
            skipped["torch"] = f"torch is not installed ({exc})"
    ready.append(OnnxScorer(model, "onnxruntime-cpu"))
    for name in GPU_BACKENDS:
        try:
            ready.append(OnnxScorer(model, name))
        except BackendUnavailable as exc:
            skipped[name] = str(exc)
    return ready, skipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--cpu", type=int, default=0, help="CPU to pin to (-1: no pinning)")
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args()
    if args.cpu >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})

    from pathlib import Path

    ready, skipped = backends(Path(args.model), not args.no_torch)
    results = []
    for candidates in SIZES:
        for scorer in ready:
            feeds = feeds_for(scorer, candidates)
            row = {
                "backend": scorer.name,
                "candidates": candidates,
                **time_calls(scorer, feeds, args.iterations),
            }
            results.append(row)
            print(
                f"{scorer.name:>18} C={candidates:<5} p50 {row['p50_us']:>8.1f} µs  "
                f"p99 {row['p99_us']:>8.1f} µs",
                flush=True,
            )
    speedup = {}
    for candidates in SIZES:
        by = {r["backend"]: r["p50_us"] for r in results if r["candidates"] == candidates}
        if "torch" in by:
            speedup[str(candidates)] = round(by["torch"] / by["onnxruntime-cpu"], 2)
    print(
        orjson.dumps(
            {
                "bench": "inference",
                "workload": "default model, one impression per call, L=50 full history, 1 thread, "
                "model call only",
                "results": results,
                "onnxruntime_vs_torch_p50": speedup,
                "skipped": skipped,
            }
        ).decode()
    )


if __name__ == "__main__":
    main()

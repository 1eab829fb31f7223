"""Scoring held-out world impressions with a served model, as the exchange calls it.

Used by the model-quality benchmark and by the FP16 check, which must judge the
exact engine that would serve (TensorRT FP16), not the torch weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from inference.metrics import auc
from inference.runtime import OnnxScorer, count_exposures
from inference.world import Impressions, World, WorldConfig

EVAL_SEED_BASE = 900_000  # evaluation sample seeds; training uses seed * 10 + {1, 2}
FP16_CHECK_OFFSET = 2  # a held-out seed of its own


def held_out(model_dir: Path, impressions: int, offset: int) -> tuple[World, Impressions]:
    """The model's own world, sampled with an evaluation seed training never used."""
    saved = json.loads((model_dir / "config.json").read_text())
    world = World(WorldConfig(**saved["world"]))
    return world, world.impressions(impressions, EVAL_SEED_BASE + offset)


def served_predictions(
    scorer: OnnxScorer, imps: Impressions, progress: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """P(view), E[seconds], P(click) [n] each, one impression per call."""
    out = np.zeros((3, len(imps)), dtype=np.float32)
    for i in tqdm(
        range(len(imps)),
        desc=f"scoring ({scorer.name})",
        unit="imp",
        mininterval=1,
        disable=not progress,
    ):
        ads = imps.ad[i : i + 1].astype(np.int32)
        feeds = {
            "ads": ads,
            "ad_kind": imps.ad_kind[i : i + 1].astype(np.int32),
            "ad_duration": imps.ad_duration[i : i + 1].astype(np.float32),
            "exposures": count_exposures(ads, imps.history[i]),
            "history": imps.history[i],
            "context": np.array(
                [imps.placement[i], imps.pos[i], imps.devicetype[i], imps.hour[i]], np.int32
            ),
        }
        s = scorer.run(feeds)
        out[:, i] = s.p_view[0], s.seconds[0], s.p_click[0]
    return out[0], out[1], out[2]


def check_fp16(model_dir: Path, impressions: int = 50_000) -> dict[str, float]:
    """Score held-out impressions with the TensorRT engine in FP32 and in FP16 and write
    `fp16_check.json`; the runtime allows FP16 only if AUC(view) moved < 0.002."""
    _, imps = held_out(model_dir, impressions, FP16_CHECK_OFFSET)
    fp32 = served_predictions(OnnxScorer(model_dir, "tensorrt"), imps)[0]
    fp16 = served_predictions(OnnxScorer(model_dir, "tensorrt", fp16=True), imps)[0]
    result = {
        "impressions": impressions,
        "auc_view_fp32": round(auc(imps.viewed, fp32), 5),
        "auc_view_fp16": round(auc(imps.viewed, fp16), 5),
        "max_abs_p_view_change": float(np.max(np.abs(fp32 - fp16))),
    }
    result["auc_view_change"] = round(result["auc_view_fp16"] - result["auc_view_fp32"], 5)
    (model_dir / "fp16_check.json").write_text(json.dumps(result, indent=2) + "\n")
    return result

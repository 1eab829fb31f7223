"""Model quality on held-out seeds, next to the Bayes-optimal ceiling and baselines.

    python -m bench.model_quality [--model DIR | --train] [--impressions 200000]

Workload: 200k impressions of the default simulated world drawn with a sample
seed that training never used (EVAL_SEED_BASE + 1). The model is scored as it
is served: its ONNX graph in ONNX Runtime, one impression per call. Beside it:
  - Bayes: ranking by the world's true probabilities (the ceiling);
  - no_history_ceiling: the truth with the history terms removed (the best any
    model without the behaviour sequence could do);
  - no_history_model: the same architecture trained with every history blanked
    (placement / ad / context priors only), to show what attention buys;
  - heuristic: the exchange's pre-model baseline predictor (inference.baseline).
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import orjson

from inference.baseline import BaselineScorer
from inference.evaluate import held_out, served_predictions
from inference.metrics import auc, bayes_report
from inference.runtime import DEFAULT_MODEL, OnnxScorer
from inference.scorer import Placement, ScoringBatch
from inference.world import Impressions, World

EVAL_OFFSET = 1  # train.evaluate uses EVAL_SEED_BASE + 0 for the model directory's figures


def heuristic_predictions(imps: Impressions) -> tuple[np.ndarray, ...]:
    """The pre-model baseline, one impression at a time (world banners taken as 300x250)."""
    scorer = BaselineScorer()
    out = np.zeros((3, len(imps)), dtype=np.float32)
    for i in range(len(imps)):
        s = scorer.score(
            ScoringBatch(
                ads=imps.ad[i : i + 1],
                ad_kind=imps.ad_kind[i : i + 1].astype(np.int32),
                ad_w=np.array([300], np.int32),
                ad_h=np.array([250], np.int32),
                ad_duration=imps.ad_duration[i : i + 1].astype(np.float32),
                history=imps.history[i],
                history_len=int(imps.history_len[i]),
                placement=Placement(
                    0, int(imps.pos[i]), int(imps.devicetype[i]), int(imps.hour[i]), False
                ),
            )
        )
        out[:, i] = s.p_view[0], s.seconds[0], s.p_click[0]
    return out[0], out[1], out[2]


def no_history_model(world: World, imps: Impressions, saved: dict) -> dict[str, float]:
    """The served model's own architecture and training, with every history blanked."""
    from inference import train
    from inference.model import ModelConfig

    config = train.TrainConfig(**saved["train"])
    config = replace(config, no_history=True, max_epochs=min(config.max_epochs, 4))
    model, _ = train.train(world, ModelConfig(**saved["model"]), config, progress=True)
    p_view, seconds, p_click, _ = train.predict_batched(model, train.batch_tensors(imps, True))
    return train.quality(imps, p_view, seconds, p_click)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", default=str(DEFAULT_MODEL), help="model directory")
    source.add_argument("--train", action="store_true", help="train a fresh model first")
    parser.add_argument("--impressions", type=int, default=200_000)
    args = parser.parse_args()

    from inference import train

    model_dir = Path(args.model)
    if args.train:
        model_dir = train.run(Path("models"), train.TrainConfig())
    saved = json.loads((model_dir / "config.json").read_text())
    world, imps = held_out(model_dir, args.impressions, EVAL_OFFSET)

    model = train.quality(imps, *served_predictions(OnnxScorer(model_dir), imps))
    bayes = bayes_report(imps)
    ceiling = 1 / (1 + np.exp(-world.view_logit(imps, use_history=False)))
    baselines = {
        "no_history_ceiling": {"auc_view": round(auc(imps.viewed, ceiling), 4)},
        "no_history_model": no_history_model(world, imps, saved),
        "heuristic": train.quality(imps, *heuristic_predictions(imps)),
    }
    print(
        orjson.dumps(
            {
                "bench": "model_quality",
                "model": "{name}-{version}".format(
                    **json.loads((model_dir / "spec.json").read_text())
                ),
                "impressions": len(imps),
                **model,
                "auc_view_bayes": round(bayes["auc_view_bayes"], 4),
                "auc_click_bayes": round(bayes["auc_click_bayes"], 4),
                "seconds_mae_bayes": round(bayes["seconds_mae_bayes"], 4),
                "auc_view_gap": round(bayes["auc_view_bayes"] - model["auc_view"], 4),
                "baselines": baselines,
            }
        ).decode()
    )


if __name__ == "__main__":
    main()

"""Export the serving model to ONNX: dynamic candidate count C, fixed history length L."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from inference.model import AttentionModel, ServingModel

INPUTS = ("ads", "ad_kind", "ad_duration", "exposures", "history", "context")
OUTPUTS = ("p_view", "seconds", "p_click")
OPSET = 17


def example_inputs(history_len: int, candidates: int = 8) -> tuple[torch.Tensor, ...]:
    return (
        torch.arange(1, candidates + 1, dtype=torch.int32),  # ads [C]
        torch.ones(candidates, dtype=torch.int32),  # ad_kind [C]
        torch.zeros(candidates, dtype=torch.float32),  # ad_duration [C]
        torch.zeros(candidates, dtype=torch.float32),  # exposures [C]
        torch.zeros(history_len, dtype=torch.int32),  # history [L]
        torch.zeros(4, dtype=torch.int32),  # context [4]
    )


def export_onnx(model: AttentionModel, path: Path) -> None:
    """Write `path`; the graph takes any C and exactly the model's L."""
    serving = ServingModel(model).eval()
    per_candidate = ("ads", "ad_kind", "ad_duration", "exposures", *OUTPUTS)
    dynamic = {name: {0: "candidates"} for name in per_candidate}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            serving,
            example_inputs(model.config.history_len),
            str(path),
            input_names=list(INPUTS),
            output_names=list(OUTPUTS),
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
        )

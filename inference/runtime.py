"""Serving runtimes behind the `Scorer` seam, and the order in which they are tried.

    tensorrt          ONNX Runtime's TensorRT provider (engine cache on disk, FP16 opt-in)
    onnxruntime-cuda  ONNX Runtime on an NVIDIA GPU
    onnxruntime-cpu   ONNX Runtime on the CPU, one thread: the default
    torch             torch eager on the CPU: the reference, never used by the server

`load_scorer` walks FALLBACK from the backend asked for and returns the first
that loads and passes its probe; each skip is logged with its reason. ONNX
Runtime falls back to the CPU silently when a provider is missing, so every
GPU backend checks which provider really runs.
"""

from __future__ import annotations

import json
import logging
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from numba import njit

from inference.scorer import MAX_ATTENTIVE_SECONDS, Placement, Scores, ScoringBatch

log = logging.getLogger("attnx.inference")

FALLBACK = ("tensorrt", "onnxruntime-cuda", "onnxruntime-cpu")
INPUT_NAMES = ("ads", "ad_kind", "ad_duration", "exposures", "history", "context")  # the graph's
OUTPUT_NAMES = ["p_view", "seconds", "p_click"]
DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "default"
WARM_UP_SIZES = (1, 16, 64, 256, 1024)  # candidate counts run once at load
PROBE_TOLERANCE = 1e-3  # a loaded model must reproduce the exporter's outputs this closely
FP16_MAX_AUC_CHANGE = 0.002
TRT_PROFILE = {"min": 1, "opt": 256, "max": 4096}  # candidate counts the engine is built for


PROVIDERS: dict[str, tuple[str, ...]] = {
    "onnxruntime-cpu": ("CPUExecutionProvider",),
    "onnxruntime-cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}


class BackendUnavailable(RuntimeError):
    """This backend cannot run here (no GPU, no provider, no library): try the next."""


class ModelRejected(RuntimeError):
    """The model directory is unusable (missing files, failed probe): keep the old one."""


@dataclass(frozen=True)
class ModelSpec:
    path: Path
    name: str
    version: str
    n_items: int
    n_ads: int
    n_placements: int
    history_len: int
    probe: dict

    @classmethod
    def load(cls, path: Path) -> ModelSpec:
        try:
            spec = json.loads((path / "spec.json").read_text())
            probe = json.loads((path / "probe.json").read_text())
            vocab = spec["vocab"]
            return cls(
                path,
                spec["name"],
                spec["version"],
                vocab["items"],
                vocab["ads"],
                vocab["placements"],
                spec["history_len"],
                probe,
            )
        except (OSError, ValueError, KeyError) as exc:
            raise ModelRejected(f"{path} is not a model directory: {exc}") from None


def count_exposures(ads: np.ndarray, history: np.ndarray) -> np.ndarray:
    """How often each ad appears in the history (recent exposures: fatigue). [C] float32

    The offline form (training probes, evaluation); serving counts in `_model_feeds`.
    """
    return (ads[:, None] == history[None, history > 0]).sum(axis=1).astype(np.float32)


@njit(cache=True, nogil=True)
def _model_feeds(ads, history, context, n_ads, n_items, n_placements, counts):
    """The exchange's ids onto the model's vocabularies, and the exposure counts, in one
    pass: ads → 1..n_ads, foreign history items folded into 1..n_items-1, context
    values clamped to their tables. `counts` is a zeroed [n_items] scratch, left zeroed.
    Counting here rather than in the graph saves a [C, L] comparison's ONNX nodes.
    """
    hist = np.empty(history.shape[0], dtype=np.int32)  # [L]
    for j in range(history.shape[0]):
        item = history[j]
        if item >= n_items:
            item = 1 + (item - 1) % (n_items - 1)
        hist[j] = item
        if item > 0:
            counts[item] += 1
    model_ads = np.empty(ads.shape[0], dtype=np.int32)  # [C]
    exposures = np.empty(ads.shape[0], dtype=np.float32)  # [C]
    for i in range(ads.shape[0]):
        ad = ads[i] % n_ads + 1
        model_ads[i] = ad
        exposures[i] = counts[ad]
    for j in range(hist.shape[0]):
        counts[hist[j]] = 0
    ctx = np.empty(4, dtype=np.int32)  # placement, position, device type, hour
    ctx[0] = context[0] % n_placements
    ctx[1] = min(max(context[1], 0), 7)
    ctx[2] = min(max(context[2], 0), 7)
    ctx[3] = context[3] % 24
    return model_ads, exposures, hist, ctx


def placement_id(publisher_key: str, tagid: str) -> int:
    """A stable number for a placement (site or app, and tag): the model hashes it."""
    return zlib.crc32(f"{publisher_key}\x1f{tagid}".encode())


class ModelInputs:
    """Maps a scoring batch onto the graph's inputs (one compiled call, no copies kept)."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        # Per scorer: a swap warms the new scorer on another thread while this one serves.
        self._exposure_counts = np.zeros(spec.n_items, dtype=np.int32)

    def history_item(self, ad: int) -> int:
        return ad % self.spec.n_ads + 1  # as _model_feeds maps a candidate ad

    def feeds(self, batch: ScoringBatch) -> dict[str, np.ndarray]:
        s, p = self.spec, batch.placement
        ads, exposures, history, context = _model_feeds(
            batch.ads,  # [C] exchange ad ids
            batch.history,  # [L] 0-padded, never negative (validated)
            (p.placement_id, p.pos, p.devicetype, p.hour),
            s.n_ads,
            s.n_items,
            s.n_placements,
            self._exposure_counts,
        )
        return {
            "ads": ads,
            "ad_kind": batch.ad_kind,  # [C] int32
            "ad_duration": batch.ad_duration,  # [C] float32
            "exposures": exposures,
            "history": history,
            "context": context,
        }


class OnnxScorer:
    """A model directory's ONNX graph in ONNX Runtime, set up for a latency server."""

    def __init__(
        self,
        path: Path,
        backend: str = "onnxruntime-cpu",
        threads: int = 1,
        fp16: bool = False,
        trt_cache: Path | None = None,
    ) -> None:
        self.spec = ModelSpec.load(path)
        self.name = backend
        self.inputs = ModelInputs(self.spec)
        providers = self._providers(backend, fp16, trt_cache)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # one request, one core: no hand-offs
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(
                str(path / "model.onnx"), options, providers=providers
            )
        except Exception as exc:  # ONNX Runtime reports a bad file in many ways
            raise ModelRejected(f"{path / 'model.onnx'} did not load: {exc}") from None
        wanted = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
        if self.session.get_providers()[0] != wanted:
            raise BackendUnavailable(f"{backend}: ONNX Runtime fell back to the CPU")

    def _providers(self, backend: str, fp16: bool, trt_cache: Path | None) -> list:
        if backend not in PROVIDERS:
            raise ValueError(f"unknown backend {backend!r}; known: {', '.join(PROVIDERS)}")
        wanted = PROVIDERS[backend][0]
        if wanted not in ort.get_available_providers():
            raise BackendUnavailable(
                f"{backend}: this onnxruntime build has no {wanted} "
                f"(it has {', '.join(ort.get_available_providers())})"
            )
        if fp16 and backend != "tensorrt":
            raise ValueError("fp16 is a TensorRT option")
        if backend != "tensorrt":
            return list(PROVIDERS[backend])
        cache = trt_cache or self.spec.path / "trt-cache"
        shapes = {
            k: ",".join(f"{name}:{n}" for name in ("ads", "ad_kind", "ad_duration", "exposures"))
            for k, n in TRT_PROFILE.items()
        }
        options = {
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
            "trt_fp16_enable": fp16,
            "trt_profile_min_shapes": shapes["min"],
            "trt_profile_opt_shapes": shapes["opt"],
            "trt_profile_max_shapes": shapes["max"],
        }
        return [("TensorrtExecutionProvider", options), *PROVIDERS[backend][1:]]

    def run(self, feeds: dict[str, np.ndarray]) -> Scores:
        p_view, seconds, p_click = self.session.run(OUTPUT_NAMES, feeds)
        return Scores(p_view=p_view, seconds=seconds, p_click=p_click)

    def score(self, batch: ScoringBatch) -> Scores:
        return self.run(self.inputs.feeds(batch))

    def history_item(self, ad: int) -> int:
        return self.inputs.history_item(ad)


class TorchScorer:
    """The trained weights in torch eager: the reference the runtimes are checked against."""

    def __init__(self, path: Path, device: str = "cpu") -> None:
        import torch

        from inference.model import AttentionModel, ModelConfig, ServingModel

        self.spec = ModelSpec.load(path)
        self.name = "torch" if device == "cpu" else f"torch-{device}"
        self.inputs = ModelInputs(self.spec)
        config = json.loads((path / "config.json").read_text())["model"]
        weights = torch.load(path / "weights.pt", map_location="cpu")
        model = AttentionModel(ModelConfig(**config), weights["item_category"])
        model.load_state_dict(weights)
        self._torch = torch
        self._device = device
        self.model = ServingModel(model).eval().to(device)

    def run(self, feeds: dict[str, np.ndarray]) -> Scores:
        torch = self._torch
        with torch.inference_mode():
            args = [torch.from_numpy(feeds[k]).to(self._device) for k in INPUT_NAMES]
            p_view, seconds, p_click = (t.cpu().numpy() for t in self.model(*args))
        return Scores(p_view=p_view, seconds=seconds, p_click=p_click)

    def score(self, batch: ScoringBatch) -> Scores:
        return self.run(self.inputs.feeds(batch))

    def history_item(self, ad: int) -> int:
        return self.inputs.history_item(ad)


def check_probe(scorer: OnnxScorer | TorchScorer, tolerance: float = PROBE_TOLERANCE) -> None:
    """The exporter's probe inputs must give its outputs again, and sane ones."""
    probe = scorer.spec.probe
    feeds = {k: np.asarray(v, dtype=probe["dtypes"][k]) for k, v in probe["inputs"].items()}
    got = scorer.run(feeds)
    for name in ("p_view", "seconds", "p_click"):
        values = getattr(got, name)
        expected = np.asarray(probe["outputs"][name], dtype=np.float32)
        if values.shape != expected.shape or not np.all(np.isfinite(values)):
            raise ModelRejected(f"probe: {name} has shape {values.shape} or non-finite values")
        worst = float(np.max(np.abs(values - expected)))
        if worst > tolerance:
            raise ModelRejected(f"probe: {name} differs from the exporter's by {worst:.2e}")
    if not (
        np.all((got.p_view >= 0) & (got.p_view <= 1))
        and np.all((got.seconds >= 0) & (got.seconds <= MAX_ATTENTIVE_SECONDS))
    ):
        raise ModelRejected("probe: predictions out of range")


def check_fp16_allowed(path: Path) -> None:
    """FP16 is used only where a recorded check showed AUC moving < 0.002."""
    check = path / "fp16_check.json"
    if not check.exists():
        raise ModelRejected(f"fp16 needs {check}: run `attnx model check-fp16 {path}` first")
    change = abs(json.loads(check.read_text())["auc_view_change"])
    if change >= FP16_MAX_AUC_CHANGE:
        raise ModelRejected(f"fp16 moved AUC(view) by {change:.4f} >= {FP16_MAX_AUC_CHANGE}")


def load_scorer(
    path: Path, backend: str = "onnxruntime-cpu", threads: int = 1, fp16: bool = False
) -> OnnxScorer:
    """The first backend from `backend` down the FALLBACK order that loads and probes."""
    if backend not in FALLBACK:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(FALLBACK)}")
    for name in FALLBACK[FALLBACK.index(backend) :]:
        try:
            scorer = OnnxScorer(path, name, threads, fp16=fp16 and name == "tensorrt")
        except BackendUnavailable as exc:
            log.warning("scorer backend %s skipped: %s", name, exc)
            continue
        check_probe(scorer)
        log.info("scorer: model %s version %s on %s", scorer.spec.name, scorer.spec.version, name)
        return scorer
    raise BackendUnavailable(f"no backend could run {path}")  # unreachable: the CPU always can


def warm_up_scorer(scorer, history_len: int) -> None:
    """Run every typical candidate count once, so no request pays for first-run setup."""
    for n in WARM_UP_SIZES:
        scorer.score(
            ScoringBatch(
                ads=np.arange(n, dtype=np.int32),
                ad_kind=np.ones(n, dtype=np.int32),  # banners
                ad_w=np.full(n, 300, dtype=np.int32),
                ad_h=np.full(n, 250, dtype=np.int32),
                ad_duration=np.zeros(n, dtype=np.float32),
                history=np.zeros(history_len, dtype=np.int32),
                history_len=0,
                placement=Placement(placement_id=0, pos=1, devicetype=2, hour=12, instl=False),
            )
        )


def describe(scorer) -> str:
    """`name version on backend`, or just the backend for the baseline."""
    spec = getattr(scorer, "spec", None)
    return f"{spec.name} {spec.version} on {scorer.name}" if spec else scorer.name

"""The attention model: export parity, determinism, model directories, runtimes."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch", reason="training and export need torch (the train extra)")

from inference.export import INPUTS, export_onnx  # noqa: E402
from inference.model import FORWARD_INPUTS, AttentionModel, ModelConfig, ServingModel  # noqa: E402
from inference.runtime import (  # noqa: E402
    DEFAULT_MODEL,
    ModelInputs,
    ModelRejected,
    ModelSpec,
    OnnxScorer,
    TorchScorer,
    check_probe,
    count_exposures,
    load_scorer,
)
from inference.scorer import Placement, ScoringBatch  # noqa: E402
from inference.train import TrainConfig, quick, run  # noqa: E402
from inference.world import WorldConfig  # noqa: E402

SMALL_WORLD = WorldConfig(n_items=512, n_ads=128, n_users=2_000, n_placements=64)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A quickly trained model directory (seconds; its quality is not the point)."""
    out = tmp_path_factory.mktemp("models")
    return run(out, quick(TrainConfig(seed=3)), SMALL_WORLD, progress=False)


def random_inputs(rng, config: ModelConfig, candidates: int, history: int):
    hist = np.zeros(config.history_len, dtype=np.int32)
    hist[:history] = rng.integers(1, config.n_items, history)
    ads = rng.integers(1, config.n_items, candidates).astype(np.int32)
    hist[: min(history, candidates) // 2] = ads[: min(history, candidates) // 2]  # exposures
    return {
        "ads": ads,
        "ad_kind": rng.integers(0, config.n_kinds, candidates).astype(np.int32),
        "ad_duration": rng.choice([0.0, 6.0, 15.0, 30.0], candidates).astype(np.float32),
        "exposures": count_exposures(ads, hist),
        "history": hist,
        "context": np.array(
            [rng.integers(config.n_placements), rng.integers(8), rng.integers(8), rng.integers(24)],
            dtype=np.int32,
        ),
    }


def shipped_model() -> AttentionModel:
    saved = json.loads((DEFAULT_MODEL / "config.json").read_text())["model"]
    weights = torch.load(DEFAULT_MODEL / "weights.pt")
    model = AttentionModel(ModelConfig(**saved), weights["item_category"])
    model.load_state_dict(weights)
    return model.eval()


def fresh_model(candidates: int) -> AttentionModel:
    torch.manual_seed(candidates)
    config = ModelConfig(n_items=1000, n_placements=40, heads=1 + candidates % 2)
    categories = torch.randint(0, config.n_categories, (config.n_items,), dtype=torch.int32)
    return AttentionModel(config, categories).eval()


@pytest.mark.parametrize("weights", ["shipped", "fresh"])
@pytest.mark.parametrize(("candidates", "history"), [(1, 0), (7, 13), (300, 50)])
def test_onnx_runtime_matches_torch(tmp_path, weights, candidates, history):
    """The exported graph (folded tables) against the unfolded torch model, on fresh
    random inputs: the serving path and the training path must agree."""
    model = shipped_model() if weights == "shipped" else fresh_model(candidates)
    config = model.config
    export_onnx(model, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(candidates)
    for _ in range(3):
        feeds = random_inputs(rng, config, candidates, history)
        got = session.run(None, feeds)
        with torch.no_grad():
            raw = model(*(torch.from_numpy(feeds[k])[None] for k in FORWARD_INPUTS))[0]  # B = 1
            want = model.predict(raw)
        for g, w in zip(got, want, strict=True):
            assert g.shape == (candidates,)
            assert np.max(np.abs(g - w.numpy())) <= 1e-4


def test_an_empty_history_attends_to_the_null_slot_not_nan():
    config = ModelConfig(n_items=100, n_placements=8)
    model = AttentionModel(config).eval()
    feeds = random_inputs(np.random.default_rng(0), config, 5, 0)
    with torch.no_grad():
        out = ServingModel(model)(*(torch.from_numpy(feeds[k]) for k in INPUTS))
    assert all(torch.isfinite(t).all() for t in out)


def test_training_is_deterministic_for_a_seed(tmp_path, model_dir):
    again = run(tmp_path, quick(TrainConfig(seed=3)), SMALL_WORLD, progress=False)
    assert again.name == model_dir.name  # the version is the ONNX file's content hash
    a = torch.load(model_dir / "weights.pt")
    b = torch.load(again / "weights.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_model_directory_holds_what_serving_and_audits_need(model_dir):
    names = {p.name for p in model_dir.iterdir()}
    assert {
        "model.onnx",
        "spec.json",
        "config.json",
        "metrics.json",
        "probe.json",
        "weights.pt",
    } <= names
    spec = json.loads((model_dir / "spec.json").read_text())
    assert model_dir.name == f"attention-{spec['version']}"
    assert spec["history_len"] == SMALL_WORLD.history_len
    metrics = json.loads((model_dir / "metrics.json").read_text())["held_out"]
    for key in ("auc_view", "auc_view_bayes", "auc_click", "auc_click_bayes", "seconds_mae"):
        assert metrics[key] > 0
    assert metrics["auc_view"] <= metrics["auc_view_bayes"] + 0.01


def test_runtimes_agree_with_the_reference(model_dir):
    onnx = load_scorer(model_dir)
    reference = TorchScorer(model_dir)
    rng = np.random.default_rng(1)
    config = ModelConfig(**json.loads((model_dir / "config.json").read_text())["model"])
    for candidates in (1, 64, 256):
        feeds = random_inputs(rng, config, candidates, 20)
        a, b = onnx.run(feeds), reference.run(feeds)
        for name in ("p_view", "seconds", "p_click"):
            assert np.max(np.abs(getattr(a, name) - getattr(b, name))) <= 1e-4


def test_a_model_that_does_not_reproduce_its_probe_is_rejected(tmp_path, model_dir):
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    probe = json.loads((broken / "probe.json").read_text())
    probe["outputs"]["p_view"][0] += 0.05
    (broken / "probe.json").write_text(json.dumps(probe))
    with pytest.raises(ModelRejected, match="probe: p_view differs"):
        load_scorer(broken)


def test_a_directory_without_a_model_is_rejected(tmp_path):
    with pytest.raises(ModelRejected, match="is not a model directory"):
        load_scorer(tmp_path)


def test_gpu_backends_fall_back_in_order_and_say_why(model_dir, caplog):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has a CUDA provider: the fallback is not exercised")
    with caplog.at_level(logging.WARNING, logger="attnx.inference"):
        scorer = load_scorer(model_dir, "tensorrt")
    assert scorer.name == "onnxruntime-cpu"
    skipped = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("scorer backend tensorrt skipped") for m in skipped)
    assert any(m.startswith("scorer backend onnxruntime-cuda skipped") for m in skipped)


@pytest.mark.parametrize("backend", ["onnxruntime-cuda", "tensorrt"])
def test_gpu_backend_matches_the_cpu(model_dir, backend):
    provider = {
        "onnxruntime-cuda": "CUDAExecutionProvider",
        "tensorrt": "TensorrtExecutionProvider",
    }[backend]
    if provider not in ort.get_available_providers():
        pytest.skip(f"{backend}: this onnxruntime build has no {provider} (no GPU build here)")
    if backend == "tensorrt":
        pytest.importorskip("tensorrt", reason="TensorRT is not installed here")
    gpu, cpu = OnnxScorer(model_dir, backend), OnnxScorer(model_dir)
    check_probe(gpu)
    feeds = random_inputs(
        np.random.default_rng(2), ModelConfig(n_items=512, n_placements=64), 256, 30
    )
    assert np.max(np.abs(gpu.run(feeds).p_view - cpu.run(feeds).p_view)) <= 1e-3


def test_the_shipped_default_model_loads_and_is_near_the_bayes_ceiling():
    scorer = load_scorer(DEFAULT_MODEL)
    metrics = json.loads((DEFAULT_MODEL / "metrics.json").read_text())["held_out"]
    assert metrics["auc_view_bayes"] - metrics["auc_view"] <= 0.01
    assert scorer.spec.history_len == 50


def test_torch_on_cuda_matches_the_cpu_reference(model_dir):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here")
    cpu, gpu = TorchScorer(model_dir), TorchScorer(model_dir, device="cuda")
    feeds = random_inputs(
        np.random.default_rng(4), ModelConfig(n_items=512, n_placements=64), 1024, 50
    )
    for name in ("p_view", "seconds", "p_click"):
        assert np.max(np.abs(getattr(gpu.run(feeds), name) - getattr(cpu.run(feeds), name))) <= 1e-3


def test_model_feeds_fold_ids_count_exposures_and_leave_the_scratch_zeroed():
    """The serving kernel against numpy: ids folded onto the model's vocabularies,
    exposures counted exactly (as the offline `count_exposures` does)."""
    spec = ModelSpec(DEFAULT_MODEL, "m", "v", n_items=100, n_ads=40, n_placements=16,
                     history_len=50, probe={})  # fmt: skip
    inputs = ModelInputs(spec)
    rng = np.random.default_rng(7)
    for _ in range(50):
        history = np.zeros(50, dtype=np.int32)
        n = int(rng.integers(0, 51))
        history[:n] = rng.integers(1, 300, n)  # some beyond the vocabulary
        ads = rng.integers(0, 500, 30).astype(np.int32)
        pos, device = int(rng.integers(-1, 10)), int(rng.integers(0, 12))
        placement = Placement(int(rng.integers(0, 2**32)), pos, device, 27, False)
        batch = ScoringBatch(ads, np.ones(30, np.int32), ads, ads, np.zeros(30, np.float32),
                             history, n, placement)  # fmt: skip
        feeds = inputs.feeds(batch)
        want_history = np.where(history > 0, 1 + (history - 1) % 99, 0)
        want_ads = ads % 40 + 1
        assert feeds["history"].tolist() == want_history.tolist()
        assert feeds["ads"].tolist() == want_ads.tolist()
        assert feeds["exposures"].tolist() == count_exposures(want_ads, want_history).tolist()
        assert feeds["exposures"].tolist() == [
            float((want_history[:n] == a).sum()) for a in want_ads
        ]
        want_context = [placement.placement_id % 16, min(max(pos, 0), 7), min(device, 7), 3]
        assert feeds["context"].tolist() == want_context
        assert not inputs._exposure_counts.any()

"""Train the attention model on the simulated world, export it, and write a model directory.

    attnx train [--out models] [--seed 0] [--epochs 8] [--impressions 1000000] [--ship]

Deterministic for a seed (and thread count): the world, the samples, the
initialisation and the batch order all derive from it. Early stopping keeps
the weights of the best validation epoch. Evaluation uses sample seeds that
training never sees, and reports the Bayes-optimal figures beside the model's.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from inference.evaluate import EVAL_SEED_BASE
from inference.export import INPUTS, OUTPUTS, export_onnx
from inference.metrics import auc, bayes_report, mae
from inference.model import FORWARD_INPUTS, AttentionModel, ModelConfig, ServingModel
from inference.runtime import count_exposures
from inference.world import Impressions, World, WorldConfig


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    train_impressions: int = 1_000_000
    val_impressions: int = 100_000
    eval_impressions: int = 200_000
    batch_size: int = 2048
    learning_rate: float = 3e-3
    max_epochs: int = 8
    patience: int = 2  # epochs without a better validation loss before stopping
    threads: int = 2
    no_history: bool = False  # the priors-only baseline: every history blanked


def batch_tensors(imps: Impressions, no_history: bool = False) -> dict[str, torch.Tensor]:
    """World impressions as model inputs ([N, 1] candidates) and labels ([N])."""
    history = np.zeros_like(imps.history) if no_history else imps.history
    context = np.stack([imps.placement, imps.pos, imps.devicetype, imps.hour], axis=1)
    return {
        "ads": torch.from_numpy(imps.ad.astype(np.int32)[:, None]),  # [N, 1]
        "ad_kind": torch.from_numpy(imps.ad_kind.astype(np.int32)[:, None]),  # [N, 1]
        "ad_duration": torch.from_numpy(imps.ad_duration.astype(np.float32)[:, None]),
        "history": torch.from_numpy(history.astype(np.int32)),  # [N, L]
        "context": torch.from_numpy(context.astype(np.int32)),  # [N, 4]
        "viewed": torch.from_numpy(imps.viewed.astype(np.float32)),  # [N]
        "seconds": torch.from_numpy(imps.seconds.astype(np.float32)),  # [N]
        "clicked": torch.from_numpy(imps.clicked.astype(np.float32)),  # [N]
    }


def _forward(model: AttentionModel, t: dict[str, torch.Tensor], idx) -> torch.Tensor:
    return model(*(t[name][idx] for name in FORWARD_INPUTS))  # [B, 1, 3]


@torch.no_grad()
def predict_batched(
    model: AttentionModel, t: dict[str, torch.Tensor], batch: int = 8192
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """P(view), E[seconds], P(click) for every impression, and the mean loss."""
    model.eval()
    outs, loss_sum, n = [], 0.0, len(t["viewed"])
    for start in range(0, n, batch):
        idx = slice(start, min(start + batch, n))
        raw = _forward(model, t, idx)
        loss = model.loss(raw, t["viewed"][idx], t["seconds"][idx], t["clicked"][idx])
        loss_sum += float(loss) * (idx.stop - idx.start)
        outs.append([x[:, 0].numpy() for x in model.predict(raw)])
    p_view, seconds, p_click = (np.concatenate(col) for col in zip(*outs, strict=True))
    return p_view, seconds, p_click, loss_sum / n


def quality(imps: Impressions, p_view, seconds, p_click) -> dict[str, float]:
    return {
        "auc_view": round(auc(imps.viewed, p_view), 4),
        "auc_click": round(auc(imps.clicked, p_click), 4),
        "seconds_mae": round(mae(imps.seconds, seconds), 4),
    }


def item_categories(world: World) -> torch.Tensor:
    """The catalogue's category of each item (its primary topic + 1; 0 for padding)."""
    return torch.from_numpy((world.item_primary + 1).astype(np.int32))  # [n_items]


def train(
    world: World, model_config: ModelConfig, config: TrainConfig, progress: bool = True
) -> tuple[AttentionModel, list[dict]]:
    """Fit the model; returns the best-validation weights and the per-epoch log."""
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    train_t = batch_tensors(
        world.impressions(config.train_impressions, config.seed * 10 + 1), config.no_history
    )
    val_imps = world.impressions(config.val_impressions, config.seed * 10 + 2)
    val_t = batch_tensors(val_imps, config.no_history)

    model = AttentionModel(model_config, item_categories(world))
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    order_rng = torch.Generator().manual_seed(config.seed)
    n = len(train_t["viewed"])
    best, best_state, stale, log = float("inf"), None, 0, []
    for epoch in range(1, config.max_epochs + 1):
        model.train()
        order = torch.randperm(n, generator=order_rng)
        steps = range(0, n, config.batch_size)
        bar = tqdm(steps, desc=f"epoch {epoch}", unit="batch", disable=not progress, leave=False)
        for start in bar:
            idx = order[start : start + config.batch_size]
            loss = model.loss(
                _forward(model, train_t, idx),
                train_t["viewed"][idx],
                train_t["seconds"][idx],
                train_t["clicked"][idx],
            )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        p_view, seconds, p_click, val_loss = predict_batched(model, val_t)
        row = {
            "epoch": epoch,
            "val_loss": round(val_loss, 5),
            **quality(val_imps, p_view, seconds, p_click),
        }
        log.append(row)
        if progress:
            tqdm.write(
                f"epoch {epoch}: val loss {row['val_loss']:.5f}  AUC(view) {row['auc_view']:.4f}  "
                f"AUC(click) {row['auc_click']:.4f}  seconds MAE {row['seconds_mae']:.3f}"
            )
        if val_loss < best - 1e-5:
            best, stale = val_loss, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= config.patience:
                break
    model.load_state_dict(best_state)
    return model.eval(), log


def evaluate(world: World, model: AttentionModel, config: TrainConfig, seed_offset: int = 0):
    """Held-out figures on seeds training never saw, next to the Bayes-optimal ones."""
    imps = world.impressions(config.eval_impressions, EVAL_SEED_BASE + seed_offset)
    p_view, seconds, p_click, _ = predict_batched(model, batch_tensors(imps, config.no_history))
    return {**quality(imps, p_view, seconds, p_click), **bayes_report(imps)}


@torch.no_grad()
def probe(model: AttentionModel, world_config: WorldConfig, candidates: int = 16) -> dict:
    """Fixed inputs and the torch outputs for them: every runtime must reproduce these."""
    rng = np.random.default_rng(12345)
    L = model.config.history_len
    history = np.zeros(L, dtype=np.int32)
    history[: L // 2] = rng.integers(1, world_config.n_items, L // 2)
    ads = rng.integers(1, world_config.n_ads + 1, candidates).astype(np.int32)
    history[3] = ads[0]  # one recent exposure, so the probe covers that input too
    inputs = {
        "ads": ads,
        "ad_kind": rng.integers(1, 4, candidates).astype(np.int32),
        "ad_duration": rng.choice([0.0, 6.0, 15.0, 30.0], candidates).astype(np.float32),
        "exposures": count_exposures(ads, history),
        "history": history,
        "context": np.array([7, 1, 4, 20], dtype=np.int32),
    }
    outputs = ServingModel(model).eval()(*(torch.from_numpy(inputs[k]) for k in INPUTS))
    return {
        "inputs": {k: v.tolist() for k, v in inputs.items()},
        "dtypes": {k: str(v.dtype) for k, v in inputs.items()},
        "outputs": {k: v.tolist() for k, v in zip(OUTPUTS, outputs, strict=True)},
    }


def write_model_dir(
    model: AttentionModel,
    out_root: Path,
    world_config: WorldConfig,
    config: TrainConfig,
    metrics: dict,
    log: list[dict],
    name: str = "attention",
) -> Path:
    """Write ONNX + spec + config + metrics into `<out_root>/<name>-<content hash>`."""
    with tempfile.TemporaryDirectory(dir=out_root) as tmp:
        tmp_dir = Path(tmp)
        export_onnx(model, tmp_dir / "model.onnx")
        version = hashlib.sha256((tmp_dir / "model.onnx").read_bytes()).hexdigest()[:12]
        cfg = model.config
        spec = {
            "name": name,
            "version": version,
            "format": "onnx",
            "inputs": {
                "ads": {"dtype": "int32", "shape": ["candidates"]},
                "ad_kind": {"dtype": "int32", "shape": ["candidates"]},
                "ad_duration": {"dtype": "float32", "shape": ["candidates"]},
                "exposures": {"dtype": "float32", "shape": ["candidates"]},
                "history": {"dtype": "int32", "shape": [cfg.history_len]},
                "context": {
                    "dtype": "int32",
                    "shape": [4],
                    "fields": ["placement", "position", "devicetype", "hour"],
                },
            },
            "outputs": {name: {"dtype": "float32", "shape": ["candidates"]} for name in OUTPUTS},
            "vocab": {
                "items": cfg.n_items,
                "ads": world_config.n_ads,
                "categories": cfg.n_categories,
                "placements": cfg.n_placements,
                "kinds": cfg.n_kinds,
                "positions": cfg.n_positions,
                "devices": cfg.n_devices,
                "hours": cfg.n_hours,
            },
            "history_len": cfg.history_len,
        }
        files = {
            "spec.json": spec,
            "config.json": {
                "model": cfg.to_dict(),
                "train": asdict(config),
                "world": asdict(world_config),
            },
            "metrics.json": {"held_out": metrics, "epochs": log},
        }
        files["probe.json"] = probe(model, world_config)
        torch.save(model.state_dict(), tmp_dir / "weights.pt")
        for file_name, body in files.items():
            (tmp_dir / file_name).write_text(json.dumps(body, indent=2) + "\n")
        final = out_root / f"{name}-{version}"
        if final.exists():
            shutil.rmtree(final)
        shutil.copytree(tmp_dir, final)
    final.chmod(0o755)  # the temporary folder was private
    return final


def run(
    out_root: Path,
    config: TrainConfig,
    world_config: WorldConfig | None = None,
    model_config: ModelConfig | None = None,
    progress: bool = True,
) -> Path:
    world_config = world_config or WorldConfig()
    model_config = model_config or ModelConfig(
        n_items=world_config.n_items,
        n_categories=world_config.n_topics + 1,
        n_placements=world_config.n_placements,
        history_len=world_config.history_len,
    )
    started = time.perf_counter()
    world = World(world_config)
    model, log = train(world, model_config, config, progress)
    metrics = evaluate(world, model, config)
    metrics["train_seconds"] = round(time.perf_counter() - started, 1)
    out_root.mkdir(parents=True, exist_ok=True)
    path = write_model_dir(model, out_root, world_config, config, metrics, log)
    if progress:
        m = metrics
        print(
            f"wrote {path}: AUC(view) {m['auc_view']} (Bayes {m['auc_view_bayes']:.4f}), "
            f"AUC(click) {metrics['auc_click']} (Bayes {metrics['auc_click_bayes']:.4f}), "
            f"seconds MAE {metrics['seconds_mae']}, {metrics['train_seconds']} s"
        )
    return path


def quick(config: TrainConfig) -> TrainConfig:
    """A small run for tests and smoke checks (seconds, not minutes)."""
    return replace(
        config,
        train_impressions=60_000,
        val_impressions=10_000,
        eval_impressions=20_000,
        max_epochs=2,
    )

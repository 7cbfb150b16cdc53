"""The short driver behind ``detops train``: wire data, model, recipe and state objects, then loop.

    >>> from detops.engine.fit import fit
    >>> summary = fit("damo_yolo_t", data_root="data/synth", epochs=3, out_dir="runs/t", img_size=320)

Run directory: ``config.json`` (resolved config), ``metrics.jsonl`` (one JSON object per epoch),
``summary.json``, ``last.pt`` (every epoch) and ``best.pt`` (highest val mAP 50:95), all written
atomically on rank 0.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import models
from detops.config import TrainConfig, apply_overrides, config_from_dict
from detops.data.dataset import CocoDetection
from detops.data.loader import build_loader, set_loader_epoch
from detops.data.transforms import eval_pipeline
from detops.engine import distributed as dist_utils
from detops.engine.callbacks import StopTraining, emit
from detops.engine.checkpoint import (
    capture_rng,
    load_matching,
    model_weights,
    read_checkpoint,
    restore_rng,
    save_checkpoint,
)
from detops.engine.ema import ModelEMA, unwrap
from detops.engine.loop import evaluate, train_one_epoch
from detops.engine.recipes import (
    build_optimizer,
    build_schedule,
    multi_scale_sizes,
    recipe_for,
    train_pipeline,
)
from detops.engine.schedules import IterScheduler
from detops.errors import DetopsError
from detops.fileio import atomic_open, write_json

METRIC_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def fit(
    variant: str,
    *,
    data_root: str | Path,
    epochs: int,
    out_dir: str | Path,
    img_size: int | None = None,
    batch_size: int = 16,
    device: str = "cpu",
    workers: int = 2,
    seed: int = 0,
    weights: str | Path | None = None,
    callbacks: Sequence[Any] = (),
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``variant`` on the COCO-format dataset at ``data_root``; returns the run summary.

    ``overrides`` holds further flat ``TrainConfig`` fields (``lr``, ``augment``, ``val_split``, ...);
    an unknown key is a ``DetopsError``. See ``train`` for the summary dict.
    """
    config = TrainConfig(
        variant=variant,
        data=str(data_root),
        out=str(out_dir),
        epochs=epochs,
        img_size=img_size,
        batch_size=batch_size,
        device=device,
        workers=workers,
        seed=seed,
        weights=None if weights is None else str(weights),
    )
    return train(apply_overrides(config, overrides), callbacks=callbacks)


def resume(
    run_dir: str | Path,
    *,
    epochs: int | None = None,
    device: str | None = None,
    callbacks: Sequence[Any] = (),
) -> dict[str, Any]:
    """Continue the run in ``run_dir`` from its ``last.pt`` (same config; ``epochs`` may extend it)."""
    last = Path(run_dir) / "last.pt"
    if not Path(run_dir).is_dir():
        raise DetopsError(f"run directory not found: {run_dir}")
    ckpt = read_checkpoint(last)
    if "config" not in ckpt or "optimizer" not in ckpt:
        raise DetopsError(f"checkpoint {last}: has no training state to resume from")
    config = config_from_dict(dict(ckpt["config"]), source=str(last))
    config.out = str(run_dir)
    if epochs is not None:
        config.epochs = epochs
    if device is not None:
        config.device = device
    return train(config, callbacks=callbacks, resume_from=last)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _check_same_classes(train_ds: CocoDetection, val_ds: CocoDetection) -> None:
    if train_ds.label_to_category_id != val_ds.label_to_category_id:
        raise DetopsError(
            f"annotations {val_ds.annotation_file}: categories {val_ds.label_to_category_id} differ from "
            f"the training split's {train_ds.label_to_category_id}"
        )


def train(
    config: TrainConfig,
    *,
    callbacks: Sequence[Any] = (),
    resume_from: str | Path | None = None,
) -> dict[str, Any]:
    """Run ``config`` (optionally continuing the checkpoint ``resume_from``); returns the summary:
    ``variant``, ``run_dir``, ``epochs``, ``best_epoch``, ``best_map``, ``final`` (last val stats
    without per-class), ``history`` (per-epoch records as in metrics.jsonl), ``wall_time_s`` and
    ``checkpoints`` (paths of best and last)."""
    try:
        variant = models.get_variant(config.variant)
    except ValueError as exc:
        raise DetopsError(str(exc)) from None
    if config.epochs < 1 or config.batch_size < 1:
        raise DetopsError(f"epochs and batch_size must be >= 1 (got {config.epochs}, {config.batch_size})")
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise DetopsError(f"device {config.device!r} requested but CUDA is not available")
    info = dist_utils.init_from_env(config.device)
    device = dist_utils.device_for(config.device, info)
    if config.batch_size % info.world_size:
        raise DetopsError(
            f"batch_size {config.batch_size} is not divisible by the world size {info.world_size}"
        )
    size = config.img_size or variant.input_size
    amp = device.type == "cuda" if config.amp is None else bool(config.amp)
    run_dir = Path(config.out)
    _seed_everything(config.seed)

    train_ds = CocoDetection.from_root(config.data, split=config.train_split, seed=config.seed)
    val_ds = CocoDetection.from_root(
        config.data,
        split=config.val_split,
        transform=eval_pipeline(size=size, pixel_scale=variant.pixel_scale),
    )
    _check_same_classes(train_ds, val_ds)
    num_classes = train_ds.num_classes

    model = models.build_model(variant.name, num_classes=num_classes)
    criterion = models.build_criterion(variant.name, num_classes=num_classes)
    postprocessor = models.build_postprocessor(variant.name, num_classes=num_classes)
    reinitialised: list[str] = []
    if config.weights and resume_from is None:
        start = read_checkpoint(config.weights, variant=variant.name)
        reinitialised = load_matching(model, model_weights(start))
    model.to(device)
    criterion.to(device)
    postprocessor.to(device)

    per_rank = config.batch_size // info.world_size
    train_loader = build_loader(
        train_ds,
        batch_size=per_rank,
        shuffle=True,
        workers=config.workers,
        seed=config.seed,
        drop_last=len(train_ds) >= config.batch_size,
        distributed=info.enabled,
    )
    val_loader = build_loader(
        val_ds,
        batch_size=config.eval_batch_size or per_rank,
        shuffle=False,
        workers=config.workers,
        seed=config.seed,
        distributed=info.enabled,
    )
    iters = len(train_loader)
    recipe = recipe_for(
        variant,
        epochs=config.epochs,
        iters_per_epoch=iters,
        total_batch=config.batch_size,
        lr=config.lr,
        warmup_iters=config.warmup_iters,
        no_aug_epochs=config.no_aug_epochs,
    )
    clip_norm = config.clip_norm if config.clip_norm is not None else recipe.clip_norm
    optimizer = build_optimizer(model, recipe)
    scheduler = IterScheduler(optimizer, build_schedule(recipe, epochs=config.epochs, iters_per_epoch=iters))
    ema = ModelEMA(model, decay=recipe.ema_decay, ramp=recipe.ema_ramp) if config.ema else None
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    ddp_model = dist_utils.wrap(model, info, device, find_unused=variant.family == "rtdetrv2")

    start_epoch, best_map, best_epoch, history = 0, -1.0, 0, []
    if resume_from is not None:
        ckpt = read_checkpoint(resume_from, variant=variant.name)
        model.load_state_dict(ckpt["model"])
        if ema is not None and ckpt.get("ema"):
            ema.load_state_dict(ckpt["ema"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        restore_rng(ckpt["rng"])
        start_epoch = int(ckpt["epoch"]) + 1
        best_map, best_epoch = float(ckpt.get("best_map", -1.0)), int(ckpt.get("best_epoch", 0))
        history = [h for h in _read_history(run_dir) if h["epoch"] <= start_epoch]

    resolved = {**config.to_dict(), "img_size": size, "amp": amp}
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(
            run_dir / "config.json",
            {
                **resolved,
                "recipe": recipe.__dict__,
                "world_size": info.world_size,
                "reinitialised": reinitialised,
            },
        )
        emit(callbacks, "on_train_start", config=resolved, run_dir=str(run_dir))

    no_aug_from = config.epochs - recipe.no_aug_epochs
    sizes = multi_scale_sizes(size) if recipe.multi_scale else None
    t_start = time.perf_counter()
    current_aug: bool | None = None
    for epoch in range(start_epoch, config.epochs):
        t_epoch = time.perf_counter()
        augment = config.augment and epoch < no_aug_from
        if augment != current_aug:
            train_ds.transform = train_pipeline(variant, size=size, augment=augment)
            current_aug = augment
        set_loader_epoch(train_loader, epoch)
        stats = train_one_epoch(
            ddp_model,
            criterion,
            train_loader,
            optimizer,
            scheduler=scheduler,
            epoch=epoch,
            device=device,
            ema=ema,
            scaler=scaler,
            amp=amp,
            clip_norm=clip_norm,
            multi_scale=sizes if augment else None,
            seed=config.seed,
            callbacks=callbacks,
            dist_info=info,
            progress=config.progress,
        )
        record: dict[str, Any] = {"epoch": epoch + 1, **{f"train/{k}": v for k, v in stats.items()}}
        last_epoch = epoch + 1 == config.epochs
        if (epoch + 1) % max(1, config.eval_interval) == 0 or last_epoch:
            eval_model = ema.module if ema is not None else unwrap(model)
            val = evaluate(eval_model, postprocessor, val_loader, device=device, amp=amp, dist_info=info)
            record.update({f"val/{k}": val[k] for k in METRIC_KEYS})
        record["time_s"] = time.perf_counter() - t_epoch
        history.append(record)
        current_map: float | None = record.get("val/AP")
        is_best = current_map is not None and current_map > best_map
        if current_map is not None and is_best:
            best_map, best_epoch = current_map, epoch + 1
        if info.is_main:
            payload = {
                "variant": variant.name,
                "num_classes": num_classes,
                "class_names": train_ds.class_names,
                "category_ids": train_ds.label_to_category_id,
                "img_size": size,
                "epoch": epoch,
                "model": model.state_dict(),
                "ema": ema.state_dict() if ema is not None else None,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": capture_rng(),
                "best_map": best_map,
                "best_epoch": best_epoch,
                "config": config.to_dict(),
            }
            save_checkpoint(run_dir / "last.pt", payload)
            emit(callbacks, "on_checkpoint", path=str(run_dir / "last.pt"), kind="last", epoch=epoch + 1)
            if is_best:
                save_checkpoint(run_dir / "best.pt", payload)
                emit(callbacks, "on_checkpoint", path=str(run_dir / "best.pt"), kind="best", epoch=epoch + 1)
            _write_history(run_dir, history)
            print(_summary_line(record, config.epochs), flush=True)
        stop = False
        if info.is_main:
            try:
                emit(
                    callbacks,
                    "on_epoch_end",
                    epoch=epoch + 1,
                    metrics={k: v for k, v in record.items() if k != "epoch"},
                )
            except StopTraining:
                stop = True
        if dist_utils.broadcast_object(stop, info):
            break

    final = {k: v for k, v in (history[-1] if history else {}).items() if k.startswith("val/")}
    summary = {
        "variant": variant.name,
        "run_dir": str(run_dir),
        "epochs": config.epochs,
        "img_size": size,
        "best_epoch": best_epoch,
        "best_map": best_map,
        "final": final,
        "history": history,
        "wall_time_s": time.perf_counter() - t_start,
        "checkpoints": {"best": str(run_dir / "best.pt"), "last": str(run_dir / "last.pt")},
    }
    if info.is_main:
        write_json(run_dir / "summary.json", summary)
        emit(callbacks, "on_train_end", summary=summary)
    return summary


def _summary_line(record: dict[str, Any], epochs: int) -> str:
    parts = [
        f"epoch {record['epoch']}/{epochs}",
        f"loss {record.get('train/loss', float('nan')):.4f}",
        f"lr {record.get('train/lr', 0.0):.2e}",
    ]
    if "val/AP" in record:
        parts += [f"mAP {record['val/AP']:.4f}", f"mAP50 {record['val/AP50']:.4f}"]
    parts.append(f"{record['time_s']:.1f}s")
    return "  ".join(parts)


def _read_history(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    with atomic_open(run_dir / "metrics.jsonl", "w") as fh:
        for record in history:
            fh.write(json.dumps(record) + "\n")

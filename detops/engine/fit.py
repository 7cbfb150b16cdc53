"""The short driver behind ``detops train``: wire data, model, recipe and state objects, then loop.

    >>> from detops.engine.fit import fit
    >>> summary = fit("damo_yolo_t", data_root="data/synth", epochs=3, out_dir="runs/t", img_size=320)

Run directory: ``config.json`` (resolved config), ``metrics.jsonl`` (one JSON object per epoch),
``summary.json``, ``last.pt`` (every epoch) and ``best.pt`` (highest val mAP 50:95), all written
atomically on rank 0.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

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
    Recipe,
    build_optimizer,
    build_schedule,
    multi_scale_sizes,
    recipe_for,
    train_pipeline,
)
from detops.engine.schedules import IterScheduler
from detops.errors import DetopsError
from detops.fileio import atomic_copy, atomic_open, write_json

METRIC_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
log = logging.getLogger(__name__)


def fit(
    variant: str,
    *,
    data_root: str | Path,
    epochs: int,
    out_dir: str | Path,
    img_size: int | None = None,
    batch_size: int = 16,
    device: str = "auto",
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


@dataclass(frozen=True)
class _Run:
    """The validated, resolved settings of one run: the variant row, this process's place in the
    world, the torch device, the square input size in pixels, whether AMP is on, and the run directory."""

    variant: models.Variant
    info: dist_utils.DistInfo
    device: torch.device
    size: int
    amp: bool
    run_dir: Path


@dataclass(frozen=True)
class _Data:
    """The train/val datasets and their loaders (train: shuffled, per-rank batches; val: in order)."""

    train_ds: CocoDetection
    val_ds: CocoDetection
    train_loader: DataLoader
    val_loader: DataLoader


@dataclass(frozen=True)
class _Parts:
    """What one run trains with. ``model`` is the bare module (checkpoints, EMA, evaluation);
    ``ddp_model`` is what ``train_one_epoch`` steps (``model`` itself unless distributed).
    ``reinitialised``: parameter names ``config.weights`` could not fill (class heads when fine-tuning)."""

    model: nn.Module
    ddp_model: nn.Module
    criterion: nn.Module
    postprocessor: nn.Module
    recipe: Recipe
    clip_norm: float | None
    optimizer: torch.optim.Optimizer
    scheduler: IterScheduler
    ema: ModelEMA | None
    scaler: torch.amp.GradScaler
    reinitialised: list[str]


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
    run = _resolve_run(config)
    _seed_everything(config.seed)
    data = _build_data(config, run)
    parts = _build_parts(config, run, data, load_weights=resume_from is None)

    start_epoch, best_map, best_epoch = 0, -1.0, 0
    history: list[dict[str, Any]] = []
    if resume_from is not None:
        start_epoch, best_map, best_epoch, history = _restore(resume_from, run, parts)
    if run.info.is_main:
        _start_run_dir(config, run, parts, callbacks)

    no_aug_from = config.epochs - parts.recipe.no_aug_epochs
    sizes = multi_scale_sizes(run.size) if parts.recipe.multi_scale else None
    t_start = time.perf_counter()
    current_aug: bool | None = None
    for epoch in range(start_epoch, config.epochs):
        t_epoch = time.perf_counter()
        augment = config.augment and epoch < no_aug_from
        if augment != current_aug:
            data.train_ds.transform = train_pipeline(run.variant, size=run.size, augment=augment)
            current_aug = augment
        set_loader_epoch(data.train_loader, epoch)
        stats = _train_epoch(
            config, run, data, parts, epoch=epoch, multi_scale=sizes if augment else None, callbacks=callbacks
        )
        record = _evaluate_and_record(config, run, data, parts, epoch=epoch, stats=stats, t_epoch=t_epoch)
        history.append(record)
        current_map: float | None = record.get("val/AP")
        is_best = current_map is not None and current_map > best_map
        if current_map is not None and is_best:
            best_map, best_epoch = current_map, epoch + 1
        if run.info.is_main:
            # Built only on rank 0 and only now: ``capture_rng`` must see the state after this
            # epoch's evaluation, which is what a resumed run restores before its next epoch.
            payload = _checkpoint_payload(
                config, run, data, parts, epoch=epoch, best_map=best_map, best_epoch=best_epoch
            )
            _save_epoch_checkpoints(run.run_dir, payload, epoch=epoch, is_best=is_best, callbacks=callbacks)
            _write_history(run.run_dir, history)
            log.info("%-12s %s", run.variant.name, _summary_line(record, config.epochs))
        if _stop_requested(callbacks, record, epoch=epoch, info=run.info):
            break

    final = {k: v for k, v in (history[-1] if history else {}).items() if k.startswith("val/")}
    summary = {
        "variant": run.variant.name,
        "run_dir": str(run.run_dir),
        "epochs": config.epochs,
        "img_size": run.size,
        "device": str(run.device.type),
        "world_size": run.info.world_size,
        "best_epoch": best_epoch,
        "best_map": best_map,
        "final": final,
        "history": history,
        "wall_time_s": time.perf_counter() - t_start,
        "checkpoints": {"best": str(run.run_dir / "best.pt"), "last": str(run.run_dir / "last.pt")},
    }
    if run.info.is_main:
        write_json(run.run_dir / "summary.json", summary)
        emit(callbacks, "on_train_end", summary=summary)
    return summary


def _resolve_run(config: TrainConfig) -> _Run:
    """Validate ``config``, join the process group if torchrun started us, and resolve the variant,
    device, input size and AMP setting. Raises ``DetopsError`` for a bad variant or setting."""
    try:
        variant = models.get_variant(config.variant)
    except ValueError as exc:
        raise DetopsError(str(exc)) from None
    size = config.img_size if config.img_size is not None else variant.input_size
    try:
        models.check_input_size(variant, size)  # before any data is loaded
    except ValueError as exc:
        raise DetopsError(f"img_size {size}: {exc}") from None
    if config.epochs < 1 or config.batch_size < 1:
        raise DetopsError(f"epochs and batch_size must be >= 1 (got {config.epochs}, {config.batch_size})")
    config.device = dist_utils.resolve_device(config.device)  # the run records the device it used
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise DetopsError(f"device {config.device!r} requested but CUDA is not available")
    info = dist_utils.init_from_env(config.device)
    device = dist_utils.device_for(config.device, info)
    if config.batch_size % info.world_size:
        raise DetopsError(
            f"batch_size {config.batch_size} is not divisible by the world size {info.world_size}"
        )
    return _Run(
        variant=variant,
        info=info,
        device=device,
        size=size,
        amp=device.type == "cuda" if config.amp is None else bool(config.amp),
        run_dir=Path(config.out),
    )


def _build_data(config: TrainConfig, run: _Run) -> _Data:
    """The train split (augmentation set per epoch by ``train``) and the val split (eval pipeline at
    ``run.size``), checked to share categories, with their loaders. ``config.batch_size`` is the
    global batch; each rank loads ``batch_size // world_size``."""
    train_ds = CocoDetection.from_root(config.data, split=config.train_split, seed=config.seed)
    val_ds = CocoDetection.from_root(
        config.data,
        split=config.val_split,
        transform=eval_pipeline(size=run.size, pixel_scale=run.variant.pixel_scale),
    )
    _check_same_classes(train_ds, val_ds)
    # Loader construction draws nothing from the global RNGs (samplers and workers use their own
    # generators seeded from ``config.seed``), so building the loaders before the model leaves the
    # model's seeded initialisation, and hence every run and resume, unchanged.
    per_rank = config.batch_size // run.info.world_size
    train_loader = build_loader(
        train_ds,
        batch_size=per_rank,
        shuffle=True,
        workers=config.workers,
        seed=config.seed,
        drop_last=len(train_ds) >= config.batch_size,
        distributed=run.info.enabled,
    )
    val_loader = build_loader(
        val_ds,
        batch_size=config.eval_batch_size or per_rank,
        shuffle=False,
        workers=config.workers,
        seed=config.seed,
        distributed=run.info.enabled,
    )
    return _Data(train_ds=train_ds, val_ds=val_ds, train_loader=train_loader, val_loader=val_loader)


def _build_parts(config: TrainConfig, run: _Run, data: _Data, *, load_weights: bool) -> _Parts:
    """Model, criterion and postprocessor on ``run.device`` (the model optionally initialised from
    ``config.weights`` when ``load_weights``), then recipe, optimizer, per-iteration LR schedule,
    EMA, AMP scaler and the DDP wrapper. Fresh state: a resume overwrites it in ``_restore``."""
    name, num_classes = run.variant.name, data.train_ds.num_classes
    model = models.build_model(name, num_classes=num_classes)
    criterion = models.build_criterion(name, num_classes=num_classes)
    postprocessor = models.build_postprocessor(name, num_classes=num_classes)
    reinitialised: list[str] = []
    # A resume restores the full state from its own checkpoint; the start weights would be overwritten.
    if config.weights and load_weights:
        start = read_checkpoint(config.weights, variant=name)
        reinitialised = load_matching(model, model_weights(start))
    model.to(run.device)
    criterion.to(run.device)
    postprocessor.to(run.device)

    iters = len(data.train_loader)
    recipe = recipe_for(
        run.variant,
        epochs=config.epochs,
        iters_per_epoch=iters,
        total_batch=config.batch_size,
        lr=config.lr,
        warmup_iters=config.warmup_iters,
        no_aug_epochs=config.no_aug_epochs,
    )
    optimizer = build_optimizer(model, recipe)
    scheduler = IterScheduler(optimizer, build_schedule(recipe, epochs=config.epochs, iters_per_epoch=iters))
    ema = ModelEMA(model, decay=recipe.ema_decay, ramp=recipe.ema_ramp) if config.ema else None
    scaler = torch.amp.GradScaler(run.device.type, enabled=run.amp)
    # RT-DETRv2's denoising queries leave branches idle on a batch without objects.
    ddp_model = dist_utils.wrap(model, run.info, run.device, find_unused=run.variant.family == "rtdetrv2")
    return _Parts(
        model=model,
        ddp_model=ddp_model,
        criterion=criterion,
        postprocessor=postprocessor,
        recipe=recipe,
        clip_norm=config.clip_norm if config.clip_norm is not None else recipe.clip_norm,
        optimizer=optimizer,
        scheduler=scheduler,
        ema=ema,
        scaler=scaler,
        reinitialised=reinitialised,
    )


def _restore(
    resume_from: str | Path, run: _Run, parts: _Parts
) -> tuple[int, float, int, list[dict[str, Any]]]:
    """Load model, EMA, optimizer, schedule, scaler and RNG state from the checkpoint ``resume_from``;
    returns ``(start_epoch, best_map, best_epoch, history)``, the history being the run directory's
    metrics.jsonl records up to the checkpoint's epoch."""
    ckpt = read_checkpoint(resume_from, variant=run.variant.name)
    parts.model.load_state_dict(ckpt["model"])
    if parts.ema is not None and ckpt.get("ema"):
        parts.ema.load_state_dict(ckpt["ema"])
    parts.optimizer.load_state_dict(ckpt["optimizer"])
    parts.scheduler.load_state_dict(ckpt["scheduler"])
    if ckpt.get("scaler"):
        parts.scaler.load_state_dict(ckpt["scaler"])
    # Last, after everything above was built: the next epoch then draws exactly what the
    # uninterrupted run would have.
    restore_rng(ckpt["rng"])
    start_epoch = int(ckpt["epoch"]) + 1
    best_map, best_epoch = float(ckpt.get("best_map", -1.0)), int(ckpt.get("best_epoch", 0))
    history = [h for h in _read_history(run.run_dir) if h["epoch"] <= start_epoch]
    return start_epoch, best_map, best_epoch, history


def _start_run_dir(config: TrainConfig, run: _Run, parts: _Parts, callbacks: Sequence[Any]) -> None:
    """Rank 0: create the run directory, write ``config.json`` (the resolved config plus recipe,
    world size and reinitialised parameter names) and call ``on_train_start``."""
    resolved = {**config.to_dict(), "img_size": run.size, "amp": run.amp}
    run.run_dir.mkdir(parents=True, exist_ok=True)
    write_json(
        run.run_dir / "config.json",
        {
            **resolved,
            "recipe": parts.recipe.__dict__,
            "world_size": run.info.world_size,
            "reinitialised": parts.reinitialised,
        },
    )
    emit(callbacks, "on_train_start", config=resolved, run_dir=str(run.run_dir))


def _train_epoch(
    config: TrainConfig,
    run: _Run,
    data: _Data,
    parts: _Parts,
    *,
    epoch: int,
    multi_scale: Sequence[int] | None,
    callbacks: Sequence[Any],
) -> dict[str, float]:
    """One pass over the train loader (see ``train_one_epoch``); returns its mean losses and last LR."""
    return train_one_epoch(
        parts.ddp_model,
        parts.criterion,
        data.train_loader,
        parts.optimizer,
        scheduler=parts.scheduler,
        epoch=epoch,
        device=run.device,
        ema=parts.ema,
        scaler=parts.scaler,
        amp=run.amp,
        clip_norm=parts.clip_norm,
        multi_scale=multi_scale,
        seed=config.seed,
        callbacks=callbacks,
        dist_info=run.info,
        progress=config.progress,
    )


def _evaluate_and_record(
    config: TrainConfig,
    run: _Run,
    data: _Data,
    parts: _Parts,
    *,
    epoch: int,
    stats: dict[str, float],
    t_epoch: float,
) -> dict[str, Any]:
    """Validate (the EMA weights when kept) if this epoch is due or the last, and return the
    epoch's metrics.jsonl record: ``epoch`` (1-based), ``train/*``, ``val/<METRIC_KEYS>`` when
    validated, and ``time_s`` since ``t_epoch`` (a ``perf_counter`` reading)."""
    record: dict[str, Any] = {"epoch": epoch + 1, **{f"train/{k}": v for k, v in stats.items()}}
    last_epoch = epoch + 1 == config.epochs
    if (epoch + 1) % max(1, config.eval_interval) == 0 or last_epoch:
        eval_model = parts.ema.module if parts.ema is not None else unwrap(parts.model)
        val = evaluate(
            eval_model,
            parts.postprocessor,
            data.val_loader,
            device=run.device,
            amp=run.amp,
            dist_info=run.info,
        )
        record.update({f"val/{k}": val[k] for k in METRIC_KEYS})
    record["time_s"] = time.perf_counter() - t_epoch
    return record


def _checkpoint_payload(
    config: TrainConfig,
    run: _Run,
    data: _Data,
    parts: _Parts,
    *,
    epoch: int,
    best_map: float,
    best_epoch: int,
) -> dict[str, Any]:
    """The last.pt / best.pt payload after ``epoch`` (0-based): what inference needs (variant,
    classes, input size, weights) and what ``resume`` needs (optimizer, schedule, scaler, EMA, RNG
    states, best so far, config). Captures the RNG states now."""
    return {
        "variant": run.variant.name,
        "num_classes": data.train_ds.num_classes,
        "class_names": data.train_ds.class_names,
        "category_ids": data.train_ds.label_to_category_id,
        "img_size": run.size,
        "epoch": epoch,
        "model": parts.model.state_dict(),
        "ema": parts.ema.state_dict() if parts.ema is not None else None,
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict(),
        "scaler": parts.scaler.state_dict(),
        "rng": capture_rng(),
        "best_map": best_map,
        "best_epoch": best_epoch,
        "config": config.to_dict(),
    }


def _save_epoch_checkpoints(
    run_dir: Path, payload: dict[str, Any], *, epoch: int, is_best: bool, callbacks: Sequence[Any]
) -> None:
    """Write ``last.pt`` (and ``best.pt`` when ``is_best``), each followed by ``on_checkpoint``."""
    save_checkpoint(run_dir / "last.pt", payload)
    emit(callbacks, "on_checkpoint", path=str(run_dir / "last.pt"), kind="last", epoch=epoch + 1)
    if is_best:
        # the same payload: link the file just written instead of serialising it a second time
        atomic_copy(run_dir / "last.pt", run_dir / "best.pt")
        emit(callbacks, "on_checkpoint", path=str(run_dir / "best.pt"), kind="best", epoch=epoch + 1)


def _stop_requested(
    callbacks: Sequence[Any], record: dict[str, Any], *, epoch: int, info: dist_utils.DistInfo
) -> bool:
    """Call ``on_epoch_end`` on rank 0; True on every rank when a callback raised ``StopTraining``.

    Every rank must call this each epoch: rank 0's decision is broadcast so all ranks leave the
    loop together (a rank left behind would hang in the next collective)."""
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
    return bool(dist_utils.broadcast_object(stop, info))


def _summary_line(record: dict[str, Any], epochs: int) -> str:
    parts = [
        f"epoch {record['epoch']}/{epochs}",
        f"loss {record.get('train/loss', float('nan')):.4f}",
        f"lr {record.get('train/lr', 0.0):.2e}",
    ]
    if "val/AP" in record:
        parts += [f"mAP {record['val/AP']:.4f}", f"mAP50 {record['val/AP50']:.4f}"]
    parts.append(f"{record['time_s']:.1f} s")
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

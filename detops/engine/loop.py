"""One training epoch and one evaluation pass, as functions over objects passed in (DETR style)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from detops.data.augment_rtdetr import resize_batch
from detops.data.dataset import CocoDetection
from detops.engine.callbacks import emit
from detops.engine.distributed import DistInfo, gather_objects, mean_over_ranks, sync_buffers
from detops.engine.ema import ModelEMA
from detops.engine.schedules import IterScheduler
from detops.errors import DetopsError
from detops.evaluation import evaluate_results


def _to_device(targets: list[dict[str, Any]], device: torch.device) -> list[dict[str, Any]]:
    return [{"boxes": t["boxes"].to(device), "labels": t["labels"].to(device)} for t in targets]


def _to_float(obj: Any) -> Any:
    """Outputs of an autocast forward back to float32 so the loss is computed in full precision."""
    if isinstance(obj, torch.Tensor):
        return obj.float() if obj.is_floating_point() else obj
    if isinstance(obj, dict):
        return {k: _to_float(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_float(v) for v in obj)
    return obj


def train_step(
    model: nn.Module,
    criterion: nn.Module,
    images: torch.Tensor,
    targets: list[dict[str, Any]],
    optimizer: torch.optim.Optimizer,
    *,
    scaler: torch.amp.GradScaler | None = None,
    amp: bool = False,
    clip_norm: float | None = None,
) -> dict[str, float]:
    """Forward, loss, backward and one optimiser step on one batch (already on the device).

    Returns the criterion's components as floats (``"loss"`` included). A non-finite loss is a
    ``DetopsError`` (the step is not taken)."""
    size = (int(images.shape[-2]), int(images.shape[-1]))
    with torch.autocast(device_type=images.device.type, enabled=amp):
        outputs = model(images, targets)
    losses = criterion(_to_float(outputs), targets, image_size=size)
    loss = losses["loss"]
    if not torch.isfinite(loss):
        raise DetopsError(
            f"training diverged: loss is {loss.item()} ({ {k: float(v) for k, v in losses.items()} })"
        )
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None and scaler.is_enabled():
        scaler.scale(loss).backward()
        if clip_norm is not None:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        if clip_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        optimizer.step()
    return {k: float(v.detach()) for k, v in losses.items()}


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    *,
    scheduler: IterScheduler,
    epoch: int,
    device: torch.device,
    ema: ModelEMA | None = None,
    scaler: torch.amp.GradScaler | None = None,
    amp: bool = False,
    clip_norm: float | None = None,
    multi_scale: Sequence[int] | None = None,
    seed: int = 0,
    callbacks: Sequence[Any] = (),
    dist_info: DistInfo = DistInfo(),
    progress: bool = True,
) -> dict[str, float]:
    """Train ``model`` for one pass over ``loader``; returns the epoch's mean loss components and
    last learning rate (under DDP the losses are averaged over the ranks and rank 0's BatchNorm
    buffers are copied to every rank after each step, so all ranks hold the same model and EMA).
    ``multi_scale``: sizes one of which is drawn per batch (seeded by ``seed``,
    ``epoch`` and step, so resume and every rank draw the same)."""
    from tqdm import tqdm

    model.train()
    criterion.train()
    sums: dict[str, float] = {}
    n = 0
    bar = tqdm(
        loader,
        desc=f"epoch {epoch + 1}",
        leave=False,
        disable=not (progress and dist_info.is_main),
        dynamic_ncols=True,
    )
    for step, (images, targets) in enumerate(bar):
        if multi_scale:
            size = int(np.random.default_rng((seed, epoch, step)).choice(list(multi_scale)))
            images, targets = resize_batch(images, targets, size)
        images = images.to(device, non_blocking=True)
        losses = train_step(
            model,
            criterion,
            images,
            _to_device(targets, device),
            optimizer,
            scaler=scaler,
            amp=amp,
            clip_norm=clip_norm,
        )
        # Logged losses are the ranks' mean: one process's loss over the global batch.
        losses = mean_over_ranks(losses, dist_info)
        lr = scheduler.last_lr()[0]
        scheduler.step()
        sync_buffers(model, dist_info)
        if ema is not None:
            ema.update(model)
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + v
        n += 1
        bar.set_postfix(loss=f"{losses['loss']:.3f}", lr=f"{lr:.2e}")
        if dist_info.is_main:
            emit(
                callbacks, "on_step_end", step=scheduler.iteration, epoch=epoch, metrics={**losses, "lr": lr}
            )
    bar.close()
    out = {k: v / max(n, 1) for k, v in sums.items()}
    out["lr"] = scheduler.last_lr()[0]
    return out


def coco_detections(
    dets: Sequence[dict[str, torch.Tensor]],
    targets: Sequence[dict[str, Any]],
    *,
    label_to_category_id: Sequence[int],
) -> tuple[list[dict[str, Any]], int]:
    """Postprocessor outputs of one batch -> (COCO results, number of boxes dropped as non-finite).

    ``dets[i]`` has ``"boxes"`` [K, 4] xyxy original pixels, ``"scores"`` [K], ``"labels"`` [K];
    ``targets[i]["image_id"]`` names its image. A box with a NaN or infinite coordinate cannot be
    scored by COCOeval: it is left out and counted, never dropped silently."""
    results: list[dict[str, Any]] = []
    dropped = 0
    for target, det in zip(targets, dets, strict=True):
        boxes = det["boxes"].float().cpu()
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
        for box, score, label in zip(
            xywh, det["scores"].float().cpu().tolist(), det["labels"].cpu().tolist(), strict=True
        ):
            if not all(math.isfinite(v) for v in box):
                dropped += 1
                continue
            results.append(
                {
                    "image_id": target["image_id"],
                    "category_id": int(label_to_category_id[int(label)]),
                    "bbox": [round(v, 3) for v in box],
                    "score": round(float(score), 5),
                }
            )
    return results, dropped


@torch.no_grad()
def predict_counted(
    model: nn.Module,
    postprocessor: nn.Module,
    loader: DataLoader,
    *,
    label_to_category_id: Sequence[int],
    device: torch.device,
    amp: bool = False,
    dist_info: DistInfo = DistInfo(),
) -> tuple[list[dict[str, Any]], int]:
    """``predict``'s results and the number of predicted boxes dropped for non-finite coordinates
    (both over all ranks); a warning names that number on rank 0 when it is not zero."""
    was_training = model.training
    model.eval()
    results: list[dict[str, Any]] = []
    dropped = 0
    for images, targets in loader:
        images = images.to(device, non_blocking=True)
        with torch.autocast(device_type=device.type, enabled=amp):
            outputs = model(images)
        orig_sizes = torch.stack([t["orig_size"] for t in targets]).to(device)
        size = (int(images.shape[-2]), int(images.shape[-1]))
        dets = postprocessor(_to_float(outputs), image_size=size, orig_sizes=orig_sizes)
        batch, n = coco_detections(dets, targets, label_to_category_id=label_to_category_id)
        results.extend(batch)
        dropped += n
    model.train(was_training)
    parts = gather_objects((results, dropped), dist_info)
    dropped = sum(n for _, n in parts)
    if dropped and dist_info.is_main:
        warnings.warn(
            f"dropped {dropped} predicted box(es) with non-finite coordinates (kept {sum(len(r) for r, _ in parts)})",
            RuntimeWarning,
            stacklevel=2,
        )
    return [r for part, _ in parts for r in part], dropped


def predict(
    model: nn.Module,
    postprocessor: nn.Module,
    loader: DataLoader,
    *,
    label_to_category_id: Sequence[int],
    device: torch.device,
    amp: bool = False,
    dist_info: DistInfo = DistInfo(),
) -> list[dict[str, Any]]:
    """COCO results list (original-image xywh boxes, the dataset's category ids) for every image of
    ``loader``, gathered from all ranks (boxes with non-finite coordinates are left out with a
    warning; ``predict_counted`` also returns their number)."""
    results, _ = predict_counted(
        model,
        postprocessor,
        loader,
        label_to_category_id=label_to_category_id,
        device=device,
        amp=amp,
        dist_info=dist_info,
    )
    return results


def evaluate(
    model: nn.Module,
    postprocessor: nn.Module,
    loader: DataLoader,
    *,
    device: torch.device,
    amp: bool = False,
    dist_info: DistInfo = DistInfo(),
) -> dict[str, Any]:
    """COCO bbox statistics of ``model`` on ``loader``'s dataset (a ``CocoDetection``); see
    ``detops.evaluation`` for the returned stats dict, plus ``dropped_nonfinite``: predicted boxes
    left out for non-finite coordinates. Every rank gets the same dict."""
    dataset = loader.dataset
    if not isinstance(dataset, CocoDetection):
        raise TypeError(f"evaluate needs a loader over a CocoDetection, got {type(dataset).__name__}")
    results, dropped = predict_counted(
        model,
        postprocessor,
        loader,
        label_to_category_id=dataset.label_to_category_id,
        device=device,
        amp=amp,
        dist_info=dist_info,
    )
    stats = evaluate_results(
        dataset.coco, results, gt_source=str(dataset.annotation_file), results_source="<predictions>"
    )
    stats["dropped_nonfinite"] = dropped
    return stats

"""Each family's training recipe as plain data and functions (``damo-yolo.md`` / ``rtdetrv2.md`` s.4).

* DAMO-YOLO: SGD Nesterov (momentum 0.9, wd 5e-4; no decay on biases and norm parameters), lr
  0.01/64 per image of total batch, quadratic warm-up 5 epochs, cosine to 5 % until the
  no-augmentation tail (last 16 of 300 epochs), EMA 0.9998, no clipping; mosaic + affine + mixup +
  flip, RGB 0-255.
* RT-DETRv2: AdamW (betas 0.9/0.999, lr 1e-4, wd 1e-4; no decay on norm parameters; a backbone rate
  per variant), linear warm-up 2000 iterations then constant, EMA 0.9999, grad-norm clip 0.1;
  photometric + zoom-out + IoU crop + flip, multi-scale batches for M/L/X, RGB 0-1.

Short runs (the demo, tests, the overfit bench) keep the same shape: warm-up and the no-augmentation
tail are the recipe's fractions of the run, and warm-up is capped at a tenth of the run's steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from detops.data.augment_damo import MixUp, Mosaic, RandomAffine
from detops.data.augment_rtdetr import IoUCrop, PhotometricDistort, RandomApply, ZoomOut
from detops.data.transforms import Compose, HorizontalFlip, Sanitize, StretchResize, ToTensor
from detops.engine.schedules import WarmupConstant, WarmupCosine
from models.variants import Variant

# Backbone learning rate and no-augmentation tail of the RT-DETRv2 rows (epochs / aug stop epoch).
_RTDETR_BACKBONE_LR = {"rtdetrv2_s": 1e-4, "rtdetrv2_m": 1e-5, "rtdetrv2_l": 1e-5, "rtdetrv2_x": 1e-6}
_RTDETR_SCHEDULE = {
    "rtdetrv2_s": (120, 117),
    "rtdetrv2_m": (84, 81),
    "rtdetrv2_l": (72, 71),
    "rtdetrv2_x": (72, 71),
}
_RTDETR_MULTI_SCALE = {"rtdetrv2_m", "rtdetrv2_l", "rtdetrv2_x"}
# Published total batch (over all GPUs): DAMO-YOLO 8 GPUs x 32, RT-DETRv2 4 GPUs x 4.
_PUBLISHED_BATCH = {"damo_yolo": 256, "rtdetrv2": 16}
_DAMO_EPOCHS = 300
# DAMO-YOLO T trains with a much smaller affine shear than S/M/L.
_DAMO_SHEAR = {"damo_yolo_t": 0.2}


def published_schedule(variant: Variant) -> tuple[int, int]:
    """(epochs, total batch) of ``variant``'s published training: DAMO-YOLO 300 epochs at 256 images;
    RT-DETRv2 S 120, M 84, L and X 72 epochs at 16 images. The learning rates follow from the recipe
    (DAMO-YOLO scales 0.01/64 per image of total batch; RT-DETRv2 1e-4)."""
    if variant.family == "damo_yolo":
        return _DAMO_EPOCHS, _PUBLISHED_BATCH["damo_yolo"]
    epochs, _ = _RTDETR_SCHEDULE.get(variant.name, (72, 71))
    return epochs, _PUBLISHED_BATCH["rtdetrv2"]


@dataclass(frozen=True)
class Recipe:
    """Resolved optimisation settings of one run (``recipe_for`` fills it; fields may be overridden)."""

    family: str
    optimizer: str  # "sgd" or "adamw"
    lr: float
    backbone_lr: float | None
    weight_decay: float
    momentum: float
    warmup_iters: int
    no_aug_epochs: int
    ema_decay: float
    ema_ramp: float
    clip_norm: float | None
    multi_scale: bool


def recipe_for(
    variant: Variant,
    *,
    epochs: int,
    iters_per_epoch: int,
    total_batch: int,
    lr: float | None = None,
    warmup_iters: int | None = None,
    no_aug_epochs: int | None = None,
) -> Recipe:
    """The family recipe of ``variant`` for a run of ``epochs`` x ``iters_per_epoch`` steps at a total
    batch of ``total_batch`` images; ``None`` arguments take the recipe's value."""
    total_iters = max(1, epochs * iters_per_epoch)
    if variant.family == "damo_yolo":
        warm = int(round(5 / 300 * total_iters)) if epochs < 300 else 5 * iters_per_epoch
        return Recipe(
            family="damo_yolo",
            optimizer="sgd",
            lr=lr if lr is not None else 0.01 / 64 * total_batch,
            backbone_lr=None,
            weight_decay=5e-4,
            momentum=0.9,
            warmup_iters=warmup_iters if warmup_iters is not None else min(warm, total_iters // 10),
            no_aug_epochs=no_aug_epochs if no_aug_epochs is not None else int(round(16 / 300 * epochs)),
            ema_decay=0.9998,
            ema_ramp=2000.0,
            clip_norm=None,
            multi_scale=False,
        )
    if variant.family == "rtdetrv2":
        full, stop = _RTDETR_SCHEDULE.get(variant.name, (120, 117))
        base_lr = lr if lr is not None else 1e-4
        # The backbone rate keeps its ratio to the base rate when the base is overridden.
        bb_lr = _RTDETR_BACKBONE_LR.get(variant.name, 1e-4) * base_lr / 1e-4
        return Recipe(
            family="rtdetrv2",
            optimizer="adamw",
            lr=base_lr,
            backbone_lr=bb_lr,
            weight_decay=1e-4,
            momentum=0.9,
            warmup_iters=warmup_iters if warmup_iters is not None else min(2000, total_iters // 10),
            no_aug_epochs=no_aug_epochs
            if no_aug_epochs is not None
            else int(round((full - stop) / full * epochs)),
            ema_decay=0.9999,
            ema_ramp=2000.0,
            clip_norm=0.1,
            multi_scale=variant.name in _RTDETR_MULTI_SCALE,
        )
    raise ValueError(f"no training recipe for family {variant.family!r}")


_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def param_groups(model: nn.Module, recipe: Recipe) -> list[dict[str, Any]]:
    """Trainable parameters split into optimiser groups: (backbone or not) x (decayed or not).

    Not decayed: parameters of normalisation layers (both families), and for DAMO-YOLO also every
    bias and every 0-/1-d parameter (head scales). Backbone = names starting ``backbone.``, at
    ``recipe.backbone_lr`` when set. Empty groups are omitted; each group has a ``"name"``.
    """
    norm_params = {
        id(p) for m in model.modules() if isinstance(m, _NORM_TYPES) for p in m.parameters(recurse=False)
    }
    buckets: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = id(p) in norm_params
        if recipe.family == "damo_yolo":
            no_decay = no_decay or name.endswith(".bias") or p.ndim <= 1
        backbone = recipe.backbone_lr is not None and name.startswith("backbone.")
        buckets.setdefault((backbone, no_decay), []).append(p)
    groups = []
    for (backbone, no_decay), params in sorted(buckets.items()):
        groups.append(
            {
                "name": f"{'backbone' if backbone else 'main'}{'_no_decay' if no_decay else ''}",
                "params": params,
                "lr": recipe.backbone_lr if backbone else recipe.lr,
                "weight_decay": 0.0 if no_decay else recipe.weight_decay,
            }
        )
    return groups


def build_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """SGD Nesterov (DAMO-YOLO) or AdamW (RT-DETRv2) over ``param_groups(model, recipe)``."""
    groups = param_groups(model, recipe)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=recipe.lr, betas=(0.9, 0.999))


def build_schedule(recipe: Recipe, *, epochs: int, iters_per_epoch: int):
    """The per-iteration LR factor function of the recipe (see ``detops.engine.schedules``)."""
    if recipe.family == "damo_yolo":
        cosine_end = max(recipe.warmup_iters, (epochs - recipe.no_aug_epochs) * iters_per_epoch)
        return WarmupCosine(warmup_iters=recipe.warmup_iters, cosine_end_iter=cosine_end)
    return WarmupConstant(warmup_iters=recipe.warmup_iters)


def train_pipeline(variant: Variant, *, size: int, augment: bool) -> Compose:
    """The family's training transform at ``size`` px; ``augment=False`` is the no-augmentation tail
    (stretch resize + flip for both families, as upstream's last epochs)."""
    if not augment:
        return Compose(
            [StretchResize(size), HorizontalFlip(0.5), Sanitize(1.0), ToTensor(variant.pixel_scale)]
        )
    if variant.family == "damo_yolo":
        return Compose(
            [
                Mosaic(size, p=1.0),
                RandomAffine(size, shear=_DAMO_SHEAR.get(variant.name, 2.0)),
                MixUp(size, p=0.15),
                StretchResize(size),
                HorizontalFlip(0.5),
                Sanitize(2.0),
                ToTensor(variant.pixel_scale),
            ]
        )
    return Compose(
        [
            PhotometricDistort(p=0.5),
            ZoomOut(fill=0, p=0.5),
            RandomApply(IoUCrop(), p=0.8),
            Sanitize(1.0),
            HorizontalFlip(0.5),
            StretchResize(size),
            Sanitize(1.0),
            ToTensor(variant.pixel_scale),
        ]
    )


def multi_scale_sizes(size: int) -> tuple[int, ...]:
    """Upstream's 480-800 list for 640 scaled to ``size``, on multiples of 32."""
    from detops.data.augment_rtdetr import MULTI_SCALES

    return tuple(max(32, int(round(s * size / 640 / 32)) * 32) for s in MULTI_SCALES)

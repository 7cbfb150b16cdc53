"""Per family (tiny rows): one optimiser step of the recipe lowers the loss on a fixed batch, and the
recipe's parameter groups and schedule have the shape the specs describe."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import models
from detops.data.dataset import CocoDetection, collate
from detops.engine.loop import train_step
from detops.engine.recipes import build_optimizer, build_schedule, param_groups, recipe_for, train_pipeline
from detops.engine.schedules import IterScheduler


def _batch(root: Path, variant_name: str, size: int = 128) -> tuple[torch.Tensor, list[dict]]:
    variant = models.get_variant(variant_name)
    ds = CocoDetection.from_root(
        root, split="train", transform=train_pipeline(variant, size=size, augment=False)
    )
    images, targets = collate([ds[i] for i in range(len(ds))])
    assert sum(len(t["labels"]) for t in targets) > 0
    return images, [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]


def _loss(model, criterion, images, targets) -> float:
    torch.manual_seed(123)  # RT-DETRv2's denoising queries are random: same draw before and after
    with torch.no_grad():
        return float(criterion(model(images, targets), targets, image_size=tuple(images.shape[-2:]))["loss"])


@pytest.mark.parametrize("name", ["damo_yolo_tiny", "rtdetrv2_tiny"])
def test_one_step_lowers_loss(name: str, synth_root: Path) -> None:
    torch.manual_seed(0)
    images, targets = _batch(synth_root, name)
    variant = models.get_variant(name)
    model = models.build_model(name, num_classes=6)
    criterion = models.build_criterion(name, num_classes=6)
    model.train()
    # The recipe's own rate for this batch (DAMO-YOLO: 0.01/64 per image; RT-DETRv2: 1e-4).
    recipe = recipe_for(variant, epochs=1, iters_per_epoch=1, total_batch=len(images))
    optimizer = build_optimizer(model, recipe)
    before = _loss(model, criterion, images, targets)
    torch.manual_seed(123)
    train_step(model, criterion, images, targets, optimizer, clip_norm=recipe.clip_norm)
    after = _loss(model, criterion, images, targets)
    assert after < before, (before, after)


def test_param_groups_follow_the_recipes() -> None:
    damo = models.build_model("damo_yolo_tiny", num_classes=3)
    r = recipe_for(models.get_variant("damo_yolo_tiny"), epochs=300, iters_per_epoch=10, total_batch=64)
    assert r.optimizer == "sgd" and r.lr == pytest.approx(0.01) and r.no_aug_epochs == 16
    groups = {g["name"]: g for g in param_groups(damo, r)}
    assert set(groups) == {"main", "main_no_decay"}
    assert groups["main"]["weight_decay"] == 5e-4 and groups["main_no_decay"]["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in groups["main"]["params"])
    opt = build_optimizer(damo, r)
    assert opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9

    rt = models.build_model("rtdetrv2_tiny", num_classes=3)
    r2 = recipe_for(models.get_variant("rtdetrv2_l"), epochs=72, iters_per_epoch=5000, total_batch=16)
    assert r2.optimizer == "adamw" and r2.backbone_lr == pytest.approx(1e-5) and r2.clip_norm == 0.1
    assert r2.warmup_iters == 2000 and r2.no_aug_epochs == 1 and r2.multi_scale
    groups = {g["name"]: g for g in param_groups(rt, r2)}
    assert groups["backbone"]["lr"] == pytest.approx(1e-5) and groups["main"]["lr"] == pytest.approx(1e-4)
    assert groups["main_no_decay"]["weight_decay"] == 0.0
    n_trainable = sum(p.numel() for p in rt.parameters() if p.requires_grad)
    assert sum(p.numel() for g in groups.values() for p in g["params"]) == n_trainable


def test_schedules() -> None:
    model = torch.nn.Linear(2, 2)
    r = recipe_for(models.get_variant("damo_yolo_t"), epochs=300, iters_per_epoch=100, total_batch=64)
    opt = build_optimizer(model, r)
    sched = IterScheduler(opt, build_schedule(r, epochs=300, iters_per_epoch=100))
    fn = sched.schedule
    assert fn(0) == 0.0 and fn(250) == pytest.approx(0.25)  # quadratic warm-up over 5 epochs
    assert fn(500) == pytest.approx(1.0)
    assert fn(284 * 100) == pytest.approx(0.05) and fn(299 * 100) == pytest.approx(0.05)
    assert 0.05 < fn(150 * 100) < 1.0
    sched.step()
    assert sched.last_lr()[0] == pytest.approx(0.01 * (1 / 500) ** 2)
    r2 = recipe_for(models.get_variant("rtdetrv2_s"), epochs=120, iters_per_epoch=7000, total_batch=16)
    fn2 = build_schedule(r2, epochs=120, iters_per_epoch=7000)
    assert fn2(0) == pytest.approx(1 / 2000) and fn2(1999) == 1.0 and fn2(10**6) == 1.0


def test_pipelines_and_multi_scale() -> None:
    from detops.engine.recipes import multi_scale_sizes

    assert multi_scale_sizes(640) == (480, 512, 544, 576, 608, 640, 640, 640, 672, 704, 736, 768, 800)
    assert all(s % 32 == 0 for s in multi_scale_sizes(320))
    damo, rt = models.get_variant("damo_yolo_t"), models.get_variant("rtdetrv2_s")
    names = lambda p: [type(t).__name__ for t in p.transforms]  # noqa: E731
    assert names(train_pipeline(damo, size=640, augment=True))[:3] == ["Mosaic", "RandomAffine", "MixUp"]
    assert names(train_pipeline(rt, size=640, augment=True))[:3] == [
        "PhotometricDistort",
        "ZoomOut",
        "RandomApply",
    ]
    assert names(train_pipeline(rt, size=640, augment=False)) == [
        "StretchResize",
        "HorizontalFlip",
        "Sanitize",
        "ToTensor",
    ]
    assert train_pipeline(damo, size=64, augment=False).transforms[-1].pixel_scale == 255.0
    assert train_pipeline(rt, size=64, augment=False).transforms[-1].pixel_scale == 1.0

"""Run by ``test_distributed.py`` under ``torchrun --nproc_per_node 2``: one DDP training step of
damo_yolo_tiny on CPU (gloo) through the engine's loader, wrapper and step; rank 0 saves the result.

Usage: torchrun --nproc_per_node 2 ddp_first_step.py DATA_ROOT OUT_FILE
"""

from __future__ import annotations

import sys

import torch

import models
from detops.data.dataset import CocoDetection
from detops.data.loader import build_loader, set_loader_epoch
from detops.engine import distributed
from detops.engine.loop import train_step
from detops.engine.recipes import build_optimizer, recipe_for, train_pipeline

NAME, SIZE, GLOBAL_BATCH, LR, SEED = "damo_yolo_tiny", 64, 4, 0.01, 0


def main() -> None:
    root, out = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    info = distributed.init_from_env("cpu")
    variant = models.get_variant(NAME)
    torch.manual_seed(SEED)
    model = models.build_model(NAME, num_classes=6)
    criterion = models.build_criterion(NAME, num_classes=6)
    ds = CocoDetection.from_root(
        root, split="train", seed=SEED, transform=train_pipeline(variant, size=SIZE, augment=False)
    )
    loader = build_loader(
        ds,
        batch_size=GLOBAL_BATCH // info.world_size,
        shuffle=True,
        workers=0,
        seed=SEED,
        distributed=info.enabled,
    )
    set_loader_epoch(loader, 0)
    images, targets = next(iter(loader))
    recipe = recipe_for(variant, epochs=1, iters_per_epoch=1, total_batch=GLOBAL_BATCH, lr=LR)
    optimizer = build_optimizer(model, recipe)
    ddp = distributed.wrap(model, info, torch.device("cpu"))
    ddp.train()
    losses = train_step(
        ddp, criterion, images, [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets], optimizer
    )
    ids = distributed.gather_objects([t["image_id"] for t in targets], info)
    all_losses = distributed.gather_objects(losses["loss"], info)
    if info.is_main:
        torch.save(
            {
                "params": dict(model.named_parameters()),
                "image_ids": ids,
                "losses": all_losses,
                "world": info.world_size,
            },
            out,
        )
    distributed.shutdown(info)


if __name__ == "__main__":
    main()

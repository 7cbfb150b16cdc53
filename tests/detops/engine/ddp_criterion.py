"""Run by ``test_distributed.py`` under ``torchrun --nproc_per_node 2``: for each tiny family and
each case of ``CASES``, each rank computes the criterion on its own images (unequal box counts, see ``batch``), back-propagates, and
averages the parameter gradients over the ranks as DDP does; rank 0 saves loss and gradients.

The model runs in eval mode so that each image's raw outputs do not depend on which other images
share its batch (no BatchNorm batch statistics); the criterion itself is what is under test.

Usage: torchrun --nproc_per_node 2 ddp_criterion.py OUT_FILE
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist

import models

SIZE, SEED, NUM_CLASSES = 64, 0, 3
NAMES = ("damo_yolo_tiny", "rtdetrv2_tiny")
# Box counts per image of the global batch; rank r takes images [2r, 2r + 1].
CASES = {"unequal": [1, 0, 3, 4], "empty_rank": [0, 0, 2, 5]}


def batch(case: str) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """The whole global batch (4 images, seeded): images [4, 3, SIZE, SIZE] and xyxy pixel targets."""
    gen = torch.Generator().manual_seed(SEED)
    images = torch.rand(4, 3, SIZE, SIZE, generator=gen)
    targets = []
    for n in CASES[case]:
        xy = torch.rand(n, 2, generator=gen) * SIZE * 0.6
        wh = 8.0 + torch.rand(n, 2, generator=gen) * SIZE * 0.3
        boxes = torch.cat([xy, (xy + wh).clamp(max=SIZE)], dim=1)
        labels = torch.randint(0, NUM_CLASSES, (n,), generator=gen)
        targets.append({"boxes": boxes, "labels": labels})
    return images, targets


def loss_and_grads(
    name: str, images: torch.Tensor, targets: list[dict[str, torch.Tensor]]
) -> tuple[float, dict[str, torch.Tensor]]:
    """Criterion loss of the seeded model on ``images`` and the parameter gradients (None -> zeros)."""
    torch.manual_seed(SEED)
    model = models.build_model(name, num_classes=NUM_CLASSES).eval()
    criterion = models.build_criterion(name, num_classes=NUM_CLASSES)
    loss = criterion(model(images), targets, image_size=(SIZE, SIZE))["loss"]
    loss.backward()
    grads = {
        k: (p.grad if p.grad is not None else torch.zeros_like(p)).detach().clone()
        for k, p in model.named_parameters()
    }
    return float(loss.detach()), grads


def main() -> None:
    out = sys.argv[1]
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    results = {}
    for name in NAMES:
        for case in CASES:
            images, targets = batch(case)
            per = len(targets) // world
            mine = slice(rank * per, (rank + 1) * per)
            loss, grads = loss_and_grads(name, images[mine], targets[mine])
            for g in grads.values():  # what DDP's gradient hook does
                dist.all_reduce(g)
                g /= world
            losses: list[float] = [0.0] * world
            dist.all_gather_object(losses, loss)
            results[f"{name}/{case}"] = {"losses": losses, "grads": grads}
    if rank == 0:
        torch.save(results, out)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

"""Training-step images/s per variant at 640 (CPU), and on CUDA with AMP plus peak GPU memory.

    cd <repo> && .venv/bin/python -m bench.train_throughput --variants damo_yolo_t rtdetrv2_s --batch 2 --steps 3
    .venv/bin/python -m bench.train_throughput --device cuda --batch 16 --steps 20     # every row

A step = forward, loss, backward, optimiser step of the family recipe, on random images with a few
random boxes each (throughput does not depend on pixel content). The first step is a warm-up.
"""

from __future__ import annotations

import argparse
import time

import torch

import models
from detops.engine.loop import train_step
from detops.engine.recipes import build_optimizer, recipe_for


def _batch(batch: int, size: int, num_classes: int, pixel_scale: float, device: torch.device, seed: int):
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, size, size, generator=gen) * pixel_scale
    targets = []
    for _ in range(batch):
        n = 5
        xy = torch.rand(n, 2, generator=gen) * size * 0.7
        wh = torch.rand(n, 2, generator=gen) * size * 0.3 + 8
        targets.append(
            {
                "boxes": torch.cat([xy, xy + wh], 1).to(device),
                "labels": torch.randint(0, num_classes, (n,), generator=gen).to(device),
            }
        )
    return images.to(device), targets


def measure(name: str, *, device: torch.device, batch: int, size: int, steps: int, amp: bool) -> dict:
    variant = models.get_variant(name)
    model = models.build_model(name, num_classes=80).to(device).train()
    criterion = models.build_criterion(name, num_classes=80).to(device)
    recipe = recipe_for(variant, epochs=1, iters_per_epoch=steps + 1, total_batch=batch)
    optimizer = build_optimizer(model, recipe)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    images, targets = _batch(batch, size, 80, variant.pixel_scale, device, seed=0)
    train_step(
        model, criterion, images, targets, optimizer, scaler=scaler, amp=amp, clip_norm=recipe.clip_norm
    )
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step(
            model, criterion, images, targets, optimizer, scaler=scaler, amp=amp, clip_norm=recipe.clip_norm
        )
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    out = {"variant": name, "images_per_s": batch * steps / elapsed, "batch": batch, "size": size, "amp": amp}
    if device.type == "cuda":
        out["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def main() -> None:
    rows = [n for n in models.VARIANTS if not n.endswith("_tiny")]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=rows)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch", type=int, default=None, help="default 2 on CPU, 16 on CUDA")
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batch = args.batch or (16 if device.type == "cuda" else 2)
    amp = device.type == "cuda"
    print(
        f"device {device}, batch {batch}, {args.size} px, {args.steps} timed steps, AMP {'on' if amp else 'off'}"
    )
    for name in args.variants:
        r = measure(name, device=device, batch=batch, size=args.size, steps=args.steps, amp=amp)
        mem = f"  peak {r['peak_mem_gib']:.2f} GiB" if "peak_mem_gib" in r else ""
        print(f"{name:<16} {r['images_per_s']:8.2f} images/s{mem}", flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()

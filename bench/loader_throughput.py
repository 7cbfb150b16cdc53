"""Data-loader images/s: decode + each family's training augmentation per worker count, against
decode-only on the same files.

    cd <repo> && .venv/bin/python -m bench.loader_throughput --workers 0 1 2 --images 64 --size 640
    .venv/bin/python -m bench.loader_throughput --data /path/to/coco --split val
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import models
from detops.data.dataset import CocoDetection
from detops.data.loader import set_loader_epoch
from detops.data.synth import synthesize
from detops.engine.recipes import train_pipeline


def _as_list(samples: list) -> list:
    return samples


def images_per_second(dataset: CocoDetection, *, workers: int, batch: int) -> float:
    """Iterate the whole dataset once through a DataLoader; images per second."""
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=batch, num_workers=workers, collate_fn=_as_list, shuffle=False)
    set_loader_epoch(loader, 0)
    t0 = time.perf_counter()
    n = sum(len(b) for b in loader)
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="dataset root (default: a synthetic set)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--images", type=int, default=64, help="synthetic images to generate")
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data
        if root is None:
            root = Path(tmp) / "data"
            synthesize(root, train=args.images, val=1, size=args.size, seed=0, progress=False)
        pipelines = {
            "decode-only": None,
            "damo_yolo (mosaic+affine+mixup)": train_pipeline(
                models.get_variant("damo_yolo_t"), size=args.size, augment=True
            ),
            "rtdetrv2 (photometric+zoom+crop)": train_pipeline(
                models.get_variant("rtdetrv2_s"), size=args.size, augment=True
            ),
        }
        print(f"{'pipeline':<34} " + " ".join(f"{f'w={w}':>9}" for w in args.workers) + "   (images/s)")
        for name, transform in pipelines.items():
            ds = CocoDetection.from_root(root, split=args.split, transform=transform)
            rates = [images_per_second(ds, workers=w, batch=args.batch) for w in args.workers]
            print(f"{name:<34} " + " ".join(f"{r:9.1f}" for r in rates), flush=True)


if __name__ == "__main__":
    main()

"""Time COCO evaluation (pycocotools, through ``detops.evaluation``) on a 5,000-image results file.

    cd <repo> && .venv/bin/python -m bench.eval_bench --images 5000 --dets-per-image 100

Builds a synthetic ground truth (80 categories with COCO's gappy ids, ~7 boxes per image like
val2017) and a results file of jittered copies plus false positives, writes both as JSON, then
times ``evaluate_files`` end to end (JSON load, COCOeval evaluate / accumulate / summarize) with
pycocotools (the reference) and faster-coco-eval, and says whether the 12 statistics are identical.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from detops.evaluation import evaluate_files

# COCO's 80 category ids (1..90 with gaps).
COCO_IDS = [i for i in range(1, 91) if i not in {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}]


def make_files(out: Path, *, images: int, dets_per_image: int, seed: int) -> tuple[Path, Path, int]:
    rng = np.random.default_rng(seed)
    gt = {"images": [], "annotations": [], "categories": [{"id": c, "name": f"c{c}"} for c in COCO_IDS]}
    results = []
    ann_id = 1
    for img_id in range(1, images + 1):
        w, h = int(rng.integers(400, 641)), int(rng.integers(300, 481))
        gt["images"].append({"id": img_id, "file_name": f"{img_id:012d}.jpg", "width": w, "height": h})
        boxes = []
        for _ in range(int(rng.poisson(7))):
            bw, bh = float(rng.uniform(8, w / 2)), float(rng.uniform(8, h / 2))
            x, y = float(rng.uniform(0, w - bw)), float(rng.uniform(0, h - bh))
            cat = int(rng.choice(COCO_IDS))
            gt["annotations"].append(
                {
                    "id": ann_id,
                    "image_id": img_id,
                    "category_id": cat,
                    "bbox": [x, y, bw, bh],
                    "area": bw * bh,
                    "iscrowd": 0,
                }
            )
            ann_id += 1
            boxes.append((x, y, bw, bh, cat))
        for k in range(dets_per_image):
            if boxes and k < 2 * len(boxes):
                x, y, bw, bh, cat = boxes[k % len(boxes)]
                j = rng.normal(0, 0.08, size=4) * [bw, bh, bw, bh]
                box = [x + j[0], y + j[1], max(1.0, bw + j[2]), max(1.0, bh + j[3])]
            else:
                bw, bh = float(rng.uniform(8, w / 2)), float(rng.uniform(8, h / 2))
                box, cat = (
                    [float(rng.uniform(0, w - bw)), float(rng.uniform(0, h - bh)), bw, bh],
                    int(rng.choice(COCO_IDS)),
                )
            results.append(
                {
                    "image_id": img_id,
                    "category_id": cat,
                    "bbox": [round(v, 2) for v in box],
                    "score": round(float(rng.random()), 4),
                }
            )
    gt_path, dt_path = out / "gt.json", out / "dt.json"
    gt_path.write_text(json.dumps(gt))
    dt_path.write_text(json.dumps(results))
    return gt_path, dt_path, len(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--dets-per-image", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        gt, dt, n = make_files(
            Path(tmp), images=args.images, dets_per_image=args.dets_per_image, seed=args.seed
        )
        timings = {}
        for backend in ("pycocotools", "faster"):
            t0 = time.perf_counter()
            stats = evaluate_files(annotations=gt, predictions=dt, backend=backend)
            timings[backend] = (time.perf_counter() - t0, stats)
    reference = timings["pycocotools"][1]["stats"]
    print(f"{args.images} images, {n} detections")
    print(f"{'backend':<12} {'seconds':>8} {'AP':>8} {'AP50':>8}  identical to pycocotools")
    for backend, (seconds, stats) in timings.items():
        same = max(abs(a - b) for a, b in zip(stats["stats"], reference, strict=True)) == 0.0
        print(
            f"{backend:<12} {seconds:8.1f} {stats['AP']:8.4f} {stats['AP50']:8.4f}  {'yes' if same else 'NO'}"
        )


if __name__ == "__main__":
    main()

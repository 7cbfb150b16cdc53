"""Validation time on annotations of COCO val2017's size (5,000 images, 36,000 boxes).

Builds a synthetic COCO instances file of that size in a temporary directory (every image file is a
hard link to one tiny JPEG, so presence checks run but nothing is decoded), then times the suite.
Prints a table. Run: ``.venv/bin/python bench/validate_bench.py [--images N] [--boxes M]``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench._report import print_table

# COCO 2017's 80 category ids: 1..90 without these ten.
COCO_GAPS = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}
COCO_IDS = [i for i in range(1, 91) if i not in COCO_GAPS]


def build(root: Path, *, images: int, boxes: int, seed: int) -> None:
    """Write ``root/annotations/instances_val2017.json`` and ``root/val2017/`` (hard links)."""
    rng = np.random.default_rng(seed)
    widths = rng.choice([640, 500, 480, 427], size=images)
    heights = rng.choice([480, 375, 640, 333], size=images)
    img_dir = root / "val2017"
    img_dir.mkdir(parents=True)
    proto = root / "proto.jpg"
    Image.new("RGB", (8, 8), (128, 128, 128)).save(proto, "JPEG")
    image_ids = np.sort(rng.choice(600_000, size=images, replace=False)) + 1
    recs = []
    for i, image_id in enumerate(image_ids.tolist()):
        name = f"{image_id:012d}.jpg"
        os.link(proto, img_dir / name)
        recs.append({"id": image_id, "file_name": name, "width": int(widths[i]), "height": int(heights[i])})
    owner = rng.integers(0, images, size=boxes)
    w = rng.uniform(2, 200, size=boxes)
    h = rng.uniform(2, 200, size=boxes)
    x = rng.uniform(0, 1, size=boxes) * np.maximum(widths[owner] - w, 0)
    y = rng.uniform(0, 1, size=boxes) * np.maximum(heights[owner] - h, 0)
    cats = rng.choice(COCO_IDS, size=boxes)
    crowd = (rng.random(boxes) < 0.01).astype(int)
    anns = [
        {
            "id": 900_000 + k,
            "image_id": int(image_ids[owner[k]]),
            "category_id": int(cats[k]),
            "bbox": [
                round(float(x[k]), 2),
                round(float(y[k]), 2),
                round(float(w[k]), 2),
                round(float(h[k]), 2),
            ],
            "area": round(float(w[k] * h[k]), 2),
            "iscrowd": int(crowd[k]),
            "segmentation": [
                [
                    float(x[k]),
                    float(y[k]),
                    float(x[k] + w[k]),
                    float(y[k]),
                    float(x[k] + w[k]),
                    float(y[k] + h[k]),
                ]
            ],
        }
        for k in range(boxes)
    ]
    doc = {
        "info": {"description": "validate bench"},
        "licenses": [],
        "images": recs,
        "annotations": anns,
        "categories": [{"id": c, "name": f"class {c}", "supercategory": "thing"} for c in COCO_IDS],
    }
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(doc))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--boxes", type=int, default=36000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "coco"
        t = time.perf_counter()
        build(root, images=args.images, boxes=args.boxes, seed=args.seed)
        ann = root / "annotations" / "instances_val2017.json"
        rows.append(("build fixture (not part of validation)", f"{time.perf_counter() - t:.2f} s"))
        rows.append(("annotation file", f"{ann.stat().st_size / 1e6:.1f} MB"))

        t = time.perf_counter()
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
        import great_expectations  # noqa: F401  (import cost reported on its own row)

        rows.append(("import great_expectations (once per process)", f"{time.perf_counter() - t:.2f} s"))
        from detops.data.layout import load_coco_json
        from detops.data.validate import validate_dataset
        from detops.data.validate_frames import annotations_frame, categories_frame, images_frame

        t = time.perf_counter()
        data = load_coco_json(ann)
        rows.append(("json load", f"{time.perf_counter() - t:.2f} s"))
        t = time.perf_counter()
        imgs = images_frame(data, file=ann, image_dir=root / "val2017", sample_images=0)
        annotations_frame(data, file=ann, images=imgs)
        categories_frame(data, file=ann)
        rows.append(("build frames (vectorised derived columns)", f"{time.perf_counter() - t:.2f} s"))
        for label, docs in (
            ("validate_dataset, no Data Docs", None),
            ("validate_dataset + Data Docs", Path(tmp) / "docs"),
        ):
            t = time.perf_counter()
            report = validate_dataset(root, sample_images=0, docs_dir=docs)
            dt = time.perf_counter() - t
            c = report.counts["val"]
            rows.append(
                (
                    f"{label} ({c['images']} images, {c['annotations']} boxes)",
                    f"{dt:.2f} s, success={report.success}",
                )
            )

    print_table("detops data validate: COCO val2017-sized annotations (images not decoded)", rows)


if __name__ == "__main__":
    main()

"""COCO dataset parsing (crowd, empty images, non-contiguous ids, both layouts) and seeded loading."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import models
from detops.data.dataset import CocoDetection
from detops.data.loader import build_loader, set_loader_epoch
from detops.engine.recipes import train_pipeline
from detops.errors import DetopsError


def _write_coco(root: Path, *, images_dir: str, ann_name: str) -> None:
    (root / images_dir).mkdir(parents=True)
    (root / "annotations").mkdir()
    for name, (h, w) in {"a.jpg": (60, 80), "b.jpg": (50, 40), "c.jpg": (30, 30)}.items():
        cv2.imwrite(str(root / images_dir / name), np.full((h, w, 3), 127, dtype=np.uint8))
    gt = {
        "images": [
            {"id": 10, "file_name": "a.jpg", "width": 80, "height": 60},
            {"id": 4, "file_name": "b.jpg", "width": 40, "height": 50},
            {"id": 99, "file_name": "c.jpg", "width": 30, "height": 30},  # no objects at all
        ],
        "categories": [{"id": 90, "name": "z"}, {"id": 5, "name": "y"}, {"id": 17, "name": "x"}],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 90, "bbox": [10, 5, 20, 30], "iscrowd": 0, "area": 600},
            {"id": 2, "image_id": 10, "category_id": 5, "bbox": [0, 0, 80, 60], "iscrowd": 1, "area": 4800},
            # Past the border by 0.5 px (validation allows 1 px): clipped to the image.
            {
                "id": 3,
                "image_id": 10,
                "category_id": 17,
                "bbox": [70, 50, 10.5, 10.5],
                "iscrowd": 0,
                "area": 110,
            },
            # Starts 0.5 px right of the image: zero width once clipped.
            {"id": 4, "image_id": 4, "category_id": 5, "bbox": [40.5, 5, 0.5, 10], "iscrowd": 0, "area": 5},
            {"id": 5, "image_id": 4, "category_id": 17, "bbox": [1, 2, 3, 4], "iscrowd": 0, "area": 12},
        ],
    }
    (root / "annotations" / ann_name).write_text(json.dumps(gt))


def test_parsing_crowd_empty_and_noncontiguous_ids(tmp_path: Path) -> None:
    _write_coco(tmp_path, images_dir="train", ann_name="instances_train.json")
    ds = CocoDetection.from_root(tmp_path, split="train")
    assert len(ds) == 3  # the image without objects is kept
    assert ds.label_to_category_id == [5, 17, 90]
    assert ds.category_id_to_label == {5: 0, 17: 1, 90: 2}
    assert ds.class_names == ["y", "x", "z"]
    by_id = {ds.images[i]["id"]: ds.load_raw(i) for i in range(len(ds))}
    a = by_id[10]
    # Crowd box dropped; the box past the border clipped to the image.
    np.testing.assert_allclose(a["boxes"], [[10, 5, 30, 35], [70, 50, 80, 60]])
    assert a["labels"].tolist() == [2, 1]
    assert a["image"].shape == (60, 80, 3) and a["orig_size"] == (60, 80)
    b = by_id[4]  # the box of zero width after clipping is dropped
    np.testing.assert_allclose(b["boxes"], [[1, 2, 4, 6]])
    assert b["labels"].tolist() == [1]
    c = by_id[99]
    assert c["boxes"].shape == (0, 4) and c["labels"].shape == (0,)
    # The evaluation ground truth keeps crowd regions (COCOeval ignores matches on them).
    assert any(ann["iscrowd"] for ann in ds.coco["annotations"])


def test_coco2017_layout(tmp_path: Path) -> None:
    _write_coco(tmp_path, images_dir="val2017", ann_name="instances_val2017.json")
    ds = CocoDetection.from_root(tmp_path, split="val")
    assert ds.image_dir.name == "val2017" and len(ds) == 3


def test_missing_root_and_bad_annotations(tmp_path: Path) -> None:
    with pytest.raises(DetopsError, match="does not exist"):
        CocoDetection.from_root(tmp_path / "nope", split="train")
    _write_coco(tmp_path, images_dir="train", ann_name="instances_train.json")
    path = tmp_path / "annotations" / "instances_train.json"
    gt = json.loads(path.read_text())
    gt["annotations"][0]["category_id"] = 1234
    path.write_text(json.dumps(gt))
    with pytest.raises(DetopsError, match="category_id 1234"):
        CocoDetection.from_root(tmp_path, split="train")


def test_synth_root_maps_ids(synth_root: Path) -> None:
    ds = CocoDetection.from_root(synth_root, split="train")
    gt_ids = sorted(c["id"] for c in ds.coco["categories"])
    assert ds.label_to_category_id == gt_ids and gt_ids != list(range(1, len(gt_ids) + 1))
    for i in range(len(ds)):
        s = ds.load_raw(i)
        assert s["labels"].min(initial=0) >= 0 and s["labels"].max(initial=0) < ds.num_classes


def _batches(root: Path, *, workers: int, epoch: int) -> list[tuple[torch.Tensor, list]]:
    variant = models.get_variant("damo_yolo_tiny")
    ds = CocoDetection.from_root(
        root, split="train", seed=3, transform=train_pipeline(variant, size=64, augment=True)
    )
    loader = build_loader(ds, batch_size=3, shuffle=True, workers=workers, seed=3)
    set_loader_epoch(loader, epoch)
    return [(images, [t["boxes"] for t in targets]) for images, targets in loader]


def test_loading_is_seeded_and_independent_of_workers(synth_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(synth_root, root)
    a = _batches(root, workers=0, epoch=1)
    b = _batches(root, workers=2, epoch=1)
    c = _batches(root, workers=0, epoch=2)
    assert len(a) == len(b) == 3
    for (ia, ba), (ib, bb) in zip(a, b, strict=True):
        assert ia.shape == (3, 3, 64, 64) or ia.shape[0] == 2
        torch.testing.assert_close(ia, ib, rtol=0, atol=0)
        for x, y in zip(ba, bb, strict=True):
            torch.testing.assert_close(x, y, rtol=0, atol=0)
    assert not torch.equal(a[0][0], c[0][0])  # another epoch, another order / augmentation
    assert a[0][0].max() > 1.5  # DAMO-YOLO pixels are 0-255

"""The synthetic dataset: deterministic bytes, COCO-shaped, and the promised variety."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from detops.data.synth import clip_polygon, mask_to_rle, polygon_area, synthesize
from detops.errors import DetopsError
from tests.conftest import tree_digest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools.*")


def test_same_seed_same_bytes(synth_root: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    synthesize(again, train=8, val=4, size=128, seed=0, progress=False)
    first, second = tree_digest(synth_root), tree_digest(again)
    assert len(first) == 8 + 4 + 2
    assert first == second


def test_other_seed_other_bytes(synth_root: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    synthesize(other, train=8, val=4, size=128, seed=1, progress=False)
    a, b = tree_digest(synth_root), tree_digest(other)
    assert a.keys() == b.keys()
    assert sum(a[k] != b[k] for k in a) == len(a)


def test_rerun_prunes_stale_images(tmp_path: Path) -> None:
    root = tmp_path / "d"
    synthesize(root, train=5, val=1, size=64, seed=0, progress=False)
    synthesize(root, train=3, val=1, size=64, seed=0, progress=False)
    fresh = tmp_path / "fresh"
    synthesize(fresh, train=3, val=1, size=64, seed=0, progress=False)
    assert tree_digest(root) == tree_digest(fresh)


def test_refuses_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(DetopsError, match="not empty"):
        synthesize(tmp_path, train=1, val=1, size=64, seed=0, progress=False)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_variety(tmp_path: Path) -> None:
    root = tmp_path / "d"
    synthesize(root, train=60, val=0, size=160, seed=3, progress=False)
    data = json.loads((root / "annotations" / "instances_train.json").read_text())
    cat_ids = sorted(c["id"] for c in data["categories"])
    assert cat_ids != list(range(1, len(cat_ids) + 1)) and max(cat_ids) <= 90  # gappy like COCO
    assert all(c["name"] and c["supercategory"] for c in data["categories"])
    sizes = {(im["width"], im["height"]) for im in data["images"]}
    assert len(sizes) > 10 and any(w != h for w, h in sizes)
    per_image = {im["id"]: 0 for im in data["images"]}
    for a in data["annotations"]:
        per_image[a["image_id"]] += 1
    assert 0 in per_image.values() and max(per_image.values()) >= 4
    assert {a["iscrowd"] for a in data["annotations"]} == {0, 1}
    assert len({a["category_id"] for a in data["annotations"]}) == len(cat_ids)
    ims = {im["id"]: im for im in data["images"]}
    touching = small = 0
    for a in data["annotations"]:
        x, y, w, h = a["bbox"]
        im = ims[a["image_id"]]
        assert w > 0 and h > 0 and x >= 0 and y >= 0
        assert x + w <= im["width"] + 1e-6 and y + h <= im["height"] + 1e-6
        touching += x <= 0.01 or y <= 0.01 or x + w >= im["width"] - 0.01 or y + h >= im["height"] - 0.01
        small += w * h < 32 * 32
    assert touching >= 5 and small >= 5
    # Overlap: at least one pair of boxes in the same image intersects.
    boxes: dict[int, list[list[float]]] = {}
    for a in data["annotations"]:
        boxes.setdefault(a["image_id"], []).append(a["bbox"])
    assert any(_any_overlap(b) for b in boxes.values())


def _any_overlap(boxes: list[list[float]]) -> bool:
    for i, (x1, y1, w1, h1) in enumerate(boxes):
        for x2, y2, w2, h2 in boxes[i + 1 :]:
            if min(x1 + w1, x2 + w2) > max(x1, x2) and min(y1 + h1, y2 + h2) > max(y1, y2):
                return True
    return False


def test_pycocotools_masks_match_areas(synth_root: Path) -> None:
    from pycocotools.coco import COCO

    coco = COCO(str(synth_root / "annotations" / "instances_train.json"))
    anns = coco.loadAnns(coco.getAnnIds())
    assert anns
    for a in anns:
        m = coco.annToMask(a)
        # Rasterised polygons differ from the exact shoelace area by about half the perimeter.
        assert abs(m.sum() - a["area"]) <= 0.5 * (a["bbox"][2] + a["bbox"][3]) * 2 + 4
        if a["iscrowd"]:
            assert m.sum() == a["area"]


def test_images_decode_with_declared_size(synth_root: Path) -> None:
    data = json.loads((synth_root / "annotations" / "instances_val.json").read_text())
    for im in data["images"]:
        with Image.open(synth_root / "val" / im["file_name"]) as img:
            assert img.format == "JPEG" and img.size == (im["width"], im["height"])


def test_clip_polygon_square() -> None:
    sq = np.array([[-5.0, -5.0], [5.0, -5.0], [5.0, 5.0], [-5.0, 5.0]])
    clipped = clip_polygon(sq, width=100, height=100)
    assert polygon_area(clipped) == pytest.approx(25.0)
    assert len(clip_polygon(sq - 50, width=100, height=100)) == 0


def test_mask_to_rle_roundtrip() -> None:
    rng = np.random.default_rng(0)
    m = rng.random((7, 5)) > 0.5
    m[0, 0] = True  # forces the leading empty run of zeros
    rle = mask_to_rle(m)
    assert rle["counts"][0] == 0
    back = mask_utils.decode(mask_utils.frPyObjects(rle, 7, 5))
    assert np.array_equal(back.astype(bool), m)

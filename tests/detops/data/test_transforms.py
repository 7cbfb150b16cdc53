"""Every augmentation keeps boxes aligned with pixels: draw a box, transform, check it bounds them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detops.data.augment_damo import MixUp, Mosaic, RandomAffine
from detops.data.augment_rtdetr import IoUCrop, PhotometricDistort, ZoomOut, resize_batch
from detops.data.transforms import HorizontalFlip, Sanitize, StretchResize, ToTensor


def _drawn(h: int = 120, w: int = 160, box: tuple[int, int, int, int] = (30, 20, 90, 70)) -> dict:
    """A black image with one white filled rectangle and its xyxy box (pixel edges)."""
    image = np.zeros((h, w, 3), dtype=np.uint8)
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = 255
    return {
        "image": image,
        "boxes": np.asarray([box], dtype=np.float32),
        "labels": np.asarray([2], dtype=np.int64),
        "image_id": 1,
        "orig_size": (h, w),
    }


class _FakeDataset:
    """What mosaic and mixup read: ``len`` and ``load_raw`` (each image has one drawn box)."""

    def __init__(self) -> None:
        rng = np.random.default_rng(1)
        self.samples = []
        for _ in range(5):
            h, w = (int(v) for v in rng.integers(80, 200, size=2))
            x1, y1 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
            x2, y2 = x1 + int(rng.integers(10, w // 2)), y1 + int(rng.integers(10, h // 2))
            self.samples.append(_drawn(h, w, (x1, y1, x2, y2)))

    def __len__(self) -> int:
        return len(self.samples)

    def load_raw(self, i: int) -> dict:
        return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in self.samples[i].items()}


def _check_bounds(sample: dict, *, threshold: int = 100, tol: float = 1.5, tight: bool = True) -> None:
    """Every bright pixel lies inside some box; with ``tight``, each box is the bright region's hull."""
    image = sample["image"]
    mask = image.min(axis=2) > threshold if image.ndim == 3 else image > threshold
    ys, xs = np.nonzero(mask)
    boxes = sample["boxes"]
    assert len(xs) > 0 and len(boxes) > 0
    inside = np.zeros(len(xs), dtype=bool)
    for x1, y1, x2, y2 in boxes:
        inside |= (
            (xs + 0.5 >= x1 - tol) & (xs + 0.5 <= x2 + tol) & (ys + 0.5 >= y1 - tol) & (ys + 0.5 <= y2 + tol)
        )
    assert inside.mean() > 0.995, f"{(~inside).sum()} bright pixels outside every box"
    if tight and len(boxes) == 1:
        x1, y1, x2, y2 = boxes[0]
        assert xs.min() == pytest.approx(x1, abs=tol + 0.5) and xs.max() + 1 == pytest.approx(
            x2, abs=tol + 0.5
        )
        assert ys.min() == pytest.approx(y1, abs=tol + 0.5) and ys.max() + 1 == pytest.approx(
            y2, abs=tol + 0.5
        )


@pytest.mark.parametrize("seed", range(4))
def test_flip_resize_sanitize(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sample = HorizontalFlip(1.0)(_drawn(), rng=rng)
    _check_bounds(sample)
    sample = StretchResize(96)(sample, rng=rng)
    assert sample["image"].shape == (96, 96, 3)
    _check_bounds(sample, tol=1.5)
    _check_bounds(Sanitize(1.0)(sample, rng=rng))


@pytest.mark.parametrize("seed", range(6))
def test_random_affine(seed: int) -> None:
    out = RandomAffine(128, degrees=10, scale=(0.5, 1.5), shear=2.0)(
        _drawn(), rng=np.random.default_rng(seed)
    )
    # These seeds keep the object in view (scale >= 0.5 of a central box), so its box must survive.
    assert len(out["boxes"]) == 1
    # Rotation makes the box the hull of a rotated rectangle: pixels inside, not tight.
    # Threshold above the grey border fill (114).
    _check_bounds(out, threshold=160, tight=False)


@pytest.mark.parametrize("seed", range(4))
def test_mosaic_then_affine(seed: int) -> None:
    ds = _FakeDataset()
    rng = np.random.default_rng(seed)
    out = Mosaic(96, p=1.0)(ds.load_raw(0), rng=rng, dataset=ds)
    assert out["image"].shape == (192, 192, 3) and len(out["boxes"]) >= 1
    _check_bounds(out, threshold=160, tol=2.0, tight=False)
    out = RandomAffine(96, degrees=0, scale=(0.8, 1.2), shear=0)(out, rng=rng)
    if len(out["boxes"]):
        _check_bounds(out, threshold=160, tol=2.0, tight=False)


@pytest.mark.parametrize("seed", range(4))
def test_mixup(seed: int) -> None:
    ds = _FakeDataset()
    out = MixUp(128, p=1.0)(ds.load_raw(1), rng=np.random.default_rng(seed), dataset=ds)
    # A blend of two white-on-black images: every pixel brighter than half-white belongs to a box.
    _check_bounds(out, threshold=100, tol=2.0, tight=False)


@pytest.mark.parametrize("seed", range(4))
def test_zoom_out_and_iou_crop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    out = ZoomOut(p=1.0)(_drawn(), rng=rng)
    assert out["image"].shape[0] >= 120
    _check_bounds(out)
    out = IoUCrop()(out, rng=rng)
    # The crop may cut the drawn rectangle; the clipped box still hugs the visible part.
    _check_bounds(out, tol=1.0)


def test_photometric_keeps_geometry() -> None:
    sample = _drawn()
    sample["image"][20:70, 30:90] = (200, 120, 60)  # a saturated colour, so every op has an effect
    out = PhotometricDistort(p=1.0)(sample, rng=np.random.default_rng(0))
    assert out["image"].shape == sample["image"].shape
    assert not np.array_equal(out["image"], sample["image"])
    np.testing.assert_array_equal(out["boxes"], sample["boxes"])
    changed = np.abs(out["image"].astype(int) - sample["image"].astype(int)).sum(axis=2) > 0
    # Black background stays near black, so the bright region is still where the box says.
    _check_bounds({**out, "image": out["image"].max(axis=2)}, threshold=30)
    assert changed.any()


def test_to_tensor_scales_and_resize_batch() -> None:
    sample = _drawn()
    t255 = ToTensor(255.0)(sample, rng=np.random.default_rng(0))
    t1 = ToTensor(1.0)(sample, rng=np.random.default_rng(0))
    assert t255["image"].shape == (3, 120, 160) and t255["image"].max() == 255.0
    assert t1["image"].max() == pytest.approx(1.0)
    images = t1["image"][None]
    images2, targets = resize_batch(images, [{"boxes": t1["boxes"], "labels": t1["labels"]}], 64)
    assert images2.shape == (1, 3, 64, 64)
    mask = images2[0, 0] > 0.5
    ys, xs = torch.nonzero(mask, as_tuple=True)
    x1, y1, x2, y2 = targets[0]["boxes"][0].tolist()
    assert xs.min() >= x1 - 1 and xs.max() + 1 <= x2 + 1 and ys.min() >= y1 - 1 and ys.max() + 1 <= y2 + 1

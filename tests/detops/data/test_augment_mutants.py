"""Tests written against the surviving mutants of the data-augmentation files (``make mutation``).

Each test pins one behaviour that the alignment and property tests left open: a boundary (``>=``
versus ``>``), a default value, an output dtype, a key of the output dict, a probability draw. Names of
the mutants each test kills are listed in ``tests/MUTATION.md``. Where a random draw decides a branch,
a stub generator returns chosen values, so the boundary itself is exercised (with a real generator it
has probability zero).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest
import torch

from detops.data.augment_damo import MixUp
from detops.data.augment_rtdetr import IoUCrop, PhotometricDistort, RandomApply, ZoomOut
from detops.data.transforms import (
    Compose,
    HorizontalFlip,
    Sanitize,
    StretchResize,
    ToTensor,
    eval_pipeline,
    keep_valid,
    with_image,
)
from tests.detops.data.painted import PRIMARIES, Palette, assert_aligned, nearest_masks


class StubRng:
    """The subset of ``numpy.random.Generator`` the transforms use, returning scripted values.

    ``random`` pops from ``randoms`` (a scalar per call, or an array of exactly ``size`` values);
    ``uniform(lo, hi)`` pops a fraction ``t`` from ``fractions`` and returns ``lo + t * (hi - lo)``;
    ``permutation`` pops from ``perms``; everything else goes to a real seeded generator."""

    def __init__(self, randoms: list[Any], *, fractions: Any = (), perms: Any = (), seed: int = 0) -> None:
        self.randoms, self.fractions, self.perms = list(randoms), list(fractions), list(perms)
        self.real = np.random.default_rng(seed)

    def random(self, size: Any = None) -> Any:
        value = self.randoms.pop(0)
        if size is None:
            return float(value)
        value = np.asarray(value, dtype=np.float64)
        assert value.shape == np.empty(size).shape, f"asked for {size} draws, scripted {value.shape}"
        return value

    def uniform(self, low: float, high: float, size: Any = None) -> Any:
        assert size is None
        return low + self.fractions.pop(0) * (high - low)

    def permutation(self, n: int) -> np.ndarray:
        perm = np.asarray(self.perms.pop(0))
        assert sorted(perm.tolist()) == list(range(n))
        return perm

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def _sample(boxes: list[list[float]], *, h: int = 40, w: int = 60, labels: Any = None) -> dict[str, Any]:
    image = np.arange(h * w * 3, dtype=np.int64).reshape(h, w, 3).astype(np.uint8)
    box_array = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    if labels is None:
        labels = np.arange(len(box_array), dtype=np.int64)
    return {"image": image, "boxes": box_array, "labels": labels, "image_id": 3, "orig_size": (h, w)}


# --------------------------------------------------------------------------- transforms.py


def test_with_image_casts_and_flattens_targets() -> None:
    sample = _sample([])
    boxes = np.asarray([1, 2, 3, 4, 5, 6, 7, 8], dtype=np.float64)
    labels = np.asarray([[4], [9]], dtype=np.int32)
    out = with_image(sample, sample["image"], boxes, labels)
    assert out["boxes"].dtype == np.float32 and out["boxes"].shape == (2, 4)
    assert out["labels"].dtype == np.int64 and out["labels"].shape == (2,)
    assert out["labels"].tolist() == [4, 9] and out["image_id"] == 3


def test_keep_valid_keeps_a_box_exactly_min_size_wide() -> None:
    boxes = np.asarray([[0, 0, 2, 5], [0, 0, 1.5, 5], [0, 0, 5, 2]], dtype=np.float32)
    kept, labels = keep_valid(boxes, np.arange(3), min_size=2.0)
    np.testing.assert_array_equal(labels, [0, 2])
    np.testing.assert_array_equal(kept, boxes[[0, 2]])


def test_sanitize_default_min_size_is_one_pixel() -> None:
    sample = _sample([[10, 10, 11.5, 20], [10, 10, 10.5, 20]])
    out = Sanitize()(sample, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(out["labels"], [0])


def test_horizontal_flip_draw_equal_to_p_does_not_flip() -> None:
    sample = _sample([[5, 5, 15, 25]])
    out = HorizontalFlip(0.25)(sample, rng=StubRng([0.25]))
    assert out is sample
    flipped = HorizontalFlip(0.25)(sample, rng=StubRng([0.2499]))
    np.testing.assert_array_equal(flipped["boxes"], [[45, 5, 55, 25]])


def test_horizontal_flip_default_probability_is_one_half() -> None:
    sample = _sample([[5, 5, 15, 25]])
    assert HorizontalFlip()(sample, rng=StubRng([0.5])) is sample
    assert HorizontalFlip()(sample, rng=StubRng([0.49]))["boxes"][0, 0] == 45


def test_to_tensor_converts_boxes_and_labels_dtypes() -> None:
    sample = _sample([[1, 2, 3, 4]], labels=np.asarray([7], dtype=np.int32))
    sample["boxes"] = sample["boxes"].astype(np.float64)
    out = ToTensor(255.0)(sample, rng=np.random.default_rng(0))
    assert isinstance(out["boxes"], torch.Tensor) and out["boxes"].dtype == torch.float32
    assert isinstance(out["labels"], torch.Tensor) and out["labels"].dtype == torch.int64
    assert out["labels"].tolist() == [7] and out["boxes"].tolist() == [[1, 2, 3, 4]]
    assert out["image_id"] == 3 and out["orig_size"] == (40, 60)


def test_compose_repr_names_the_transforms() -> None:
    assert repr(Compose([StretchResize(8), HorizontalFlip(0.5)])) == "Compose(StretchResize, HorizontalFlip)"


def test_eval_pipeline_resizes_and_scales() -> None:
    palette = Palette()
    sample = palette.sample(np.random.default_rng(4), 90, 130, PRIMARIES[:3], background=0)
    out = eval_pipeline(size=64, pixel_scale=1.0)(sample, rng=np.random.default_rng(0))
    assert out["image"].shape == (3, 64, 64) and out["image"].dtype == torch.float32
    assert float(out["image"].max()) == 1.0
    image = (out["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    colours = {k: np.asarray(v, dtype=np.float32) for k, v in palette.colours.items()}
    masks = nearest_masks(image, colours, [np.zeros(3, dtype=np.float32)])
    assert_aligned(image, out["boxes"].numpy(), out["labels"].numpy(), masks, tol=1.5)


# --------------------------------------------------------------------------- augment_rtdetr.py

GREY_WEIGHTS = np.asarray([0.299, 0.587, 0.114])  # ITU-R 601 luma, as torchvision's rgb_to_grayscale


def _photometric_reference(
    image: np.ndarray,
    draws: list[float],
    fractions: list[float],
    perm: list[int],
    *,
    ranges: dict[str, tuple[float, float]],
    p: float,
) -> np.ndarray:
    """torchvision's RandomPhotometricDistort written out in float64: op k runs when ``draws[k] < p``;
    contrast runs before the colour ops when ``draws[1] < 0.5``, else after hue."""
    x = image.astype(np.float64)
    ts = iter(fractions)

    def factor(name: str) -> float:
        lo, hi = ranges[name]
        return lo + next(ts) * (hi - lo)

    def contrast(x: np.ndarray) -> np.ndarray:
        x = np.clip(x, 0, 255)
        f = factor("contrast")
        return x * f + (x @ GREY_WEIGHTS).mean() * (1 - f)

    if draws[0] < p:
        x = x * factor("brightness")
    first = draws[1] < 0.5
    if first and draws[2] < p:
        x = contrast(x)
    if draws[3] < p:
        grey = (np.clip(x, 0, 255) @ GREY_WEIGHTS)[..., None]
        f = factor("saturation")
        x = x * f + grey * (1 - f)
    if draws[4] < p:
        hsv = cv2.cvtColor(np.clip(x, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV_FULL).astype(np.int64)
        hsv[..., 0] = (hsv[..., 0] + round(factor("hue") * 256)) % 256
        x = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB_FULL).astype(np.float64)
    if not first and draws[5] < p:
        x = contrast(x)
    if draws[6] < p:
        x = x[..., perm]
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


DEFAULT_RANGES = {
    "brightness": (0.875, 1.125),
    "contrast": (0.5, 1.5),
    "saturation": (0.5, 1.5),
    "hue": (-0.05, 0.05),
}
# A draw of exactly p (0.5) must leave its op out; 0.49 runs it. Index 1 picks the contrast position.
DRAW_CASES = {
    "none": [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5],
    "none, contrast first": [0.5, 0.49, 0.5, 0.5, 0.5, 0.5, 0.5],
    "brightness": [0.49, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5],
    "contrast first": [0.5, 0.49, 0.49, 0.5, 0.5, 0.5, 0.5],
    "contrast last": [0.5, 0.5, 0.5, 0.5, 0.5, 0.49, 0.5],
    "contrast last, first's draw on": [0.5, 0.5, 0.49, 0.5, 0.5, 0.5, 0.5],
    "saturation": [0.5, 0.5, 0.5, 0.49, 0.5, 0.5, 0.5],
    "hue": [0.5, 0.5, 0.5, 0.5, 0.49, 0.5, 0.5],
    "permute": [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.49],
    "all, contrast first": [0.1, 0.2, 0.3, 0.4, 0.45, 0.49, 0.05],
    "all, contrast last": [0.1, 0.5, 0.3, 0.4, 0.45, 0.49, 0.05],
}


def _photo_image() -> np.ndarray:
    image = np.random.default_rng(5).integers(0, 256, size=(6, 9, 3), dtype=np.uint8)
    image[0, :3] = [[255, 255, 255], [0, 0, 0], [255, 0, 0]]  # extremes, so every clip matters
    return image


@pytest.mark.parametrize("case", list(DRAW_CASES))
def test_photometric_distort_matches_the_written_out_ops(case: str) -> None:
    draws = DRAW_CASES[case]
    fractions, perm = [1.0, 0.0, 1.0, 1.0], [2, 0, 1]
    image = _photo_image()
    sample = _sample([[1, 1, 4, 4]])
    sample["image"] = image
    out = PhotometricDistort()(sample, rng=StubRng([draws], fractions=list(fractions), perms=[perm]))
    expected = _photometric_reference(image, draws, fractions, perm, ranges=DEFAULT_RANGES, p=0.5)
    assert out["image"].dtype == np.uint8
    diff = np.abs(out["image"].astype(int) - expected.astype(int))
    assert diff.max() <= 1, f"{case}: {diff.max()} levels off"
    np.testing.assert_array_equal(out["boxes"], sample["boxes"])


BIG = {"brightness": (1.5, 1.5), "contrast": (4.0, 4.0), "saturation": (3.0, 3.0), "hue": (0.2, 0.2)}
# Negative factors send black pixels up: a clip floor of 1 instead of 0 then moves them by 3 levels.
INVERT = {"brightness": (1.0, 1.0), "contrast": (-3.0, -3.0), "saturation": (-3.0, -3.0), "hue": (0.0, 0.0)}


@pytest.mark.parametrize(
    ("ranges", "contrast_first", "hue"),
    [
        (BIG, True, True),
        (BIG, False, True),
        (BIG, False, False),
        (INVERT, True, False),
        (INVERT, False, False),
    ],
)
def test_photometric_distort_clips_before_each_colour_op(
    ranges: dict[str, tuple[float, float]], contrast_first: bool, hue: bool
) -> None:
    draws = [0.0, 0.0 if contrast_first else 0.9, 0.0, 0.0, 0.0 if hue else 0.9, 0.0, 0.9]
    image = _photo_image()
    sample = {**_sample([[1, 1, 4, 4]]), "image": image}
    out = PhotometricDistort(**ranges, p=0.5)(sample, rng=StubRng([draws], fractions=[0.5] * 4))
    expected = _photometric_reference(image, draws, [0.5] * 4, [0, 1, 2], ranges=ranges, p=0.5)
    assert np.abs(out["image"].astype(int) - expected.astype(int)).max() <= 1


def test_photometric_distort_default_probability_is_one_half() -> None:
    sample = _sample([[1, 1, 4, 4]])
    out = PhotometricDistort()(sample, rng=StubRng([[0.5] * 7]))
    np.testing.assert_array_equal(out["image"], sample["image"])


class _Recorder:
    def __init__(self) -> None:
        self.seen: list[Any] = []

    def __call__(self, sample: dict[str, Any], *, rng: Any, dataset: Any = None) -> dict[str, Any]:
        self.seen.append(dataset)
        return {**sample, "touched": True}


def test_random_apply_boundary_and_dataset_pass_through() -> None:
    inner, dataset = _Recorder(), object()
    sample = _sample([])
    assert RandomApply(inner, p=0.3)(sample, rng=StubRng([0.3]), dataset=dataset) is sample
    out = RandomApply(inner, p=0.3)(sample, rng=StubRng([0.29]), dataset=dataset)
    assert out["touched"] and inner.seen == [dataset]


def test_photometric_hue_shift_is_in_256ths_of_the_wheel() -> None:
    ranges = {**DEFAULT_RANGES, "hue": (0.4, 0.4)}  # 0.4 * 256 = 102.4 -> 102 (0.4 * 257 would give 103)
    draws = [0.9, 0.9, 0.9, 0.9, 0.0, 0.9, 0.9]
    image = _photo_image()
    sample = {**_sample([[1, 1, 4, 4]]), "image": image}
    out = PhotometricDistort(**ranges, p=0.5)(sample, rng=StubRng([draws], fractions=[0.5]))
    expected = _photometric_reference(image, draws, [0.5], [0, 1, 2], ranges=ranges, p=0.5)
    assert np.abs(out["image"].astype(int) - expected.astype(int)).max() <= 1


def test_iou_crop_crops_a_single_box_image_for_some_seed() -> None:
    sample = _sample([[10, 8, 40, 30]])
    sizes = {IoUCrop()(sample, rng=np.random.default_rng(seed))["image"].shape[:2] for seed in range(8)}
    assert len(sizes) > 1 and any(h < 40 or w < 60 for h, w in sizes)


def test_iou_crop_draw_of_one_returns_the_image_at_once() -> None:
    sample = _sample([[10, 8, 40, 30]])
    rng = StubRng([])  # any further random() draw would fail

    class Integers:
        def __call__(self, n: int) -> int:
            return n - 1  # the last option, 1.0

    rng.integers = Integers()  # type: ignore[attr-defined]
    assert IoUCrop()(sample, rng=rng) is sample


def test_zoom_out_defaults_boundary_and_black_fill() -> None:
    sample = _sample([[5, 6, 15, 26]])
    assert ZoomOut()(sample, rng=StubRng([0.5])) is sample  # default p 0.5; a draw of p skips
    # r = 1 + (1/3) * (4 - 1) = 2 on the default side range; the image goes to the top-left corner.
    out = ZoomOut()(sample, rng=StubRng([0.49, 0.0, 0.0], fractions=[1 / 3]))
    assert out["image"].shape == (80, 120, 3)
    np.testing.assert_array_equal(out["image"][:40, :60], sample["image"])
    assert not out["image"][40:].any() and not out["image"][:, 60:].any()
    np.testing.assert_array_equal(out["boxes"], sample["boxes"])


# --------------------------------------------------------------------------- augment_damo.py


class _OneImage:
    """A dataset of one 40 x 60 image with a 10 x 8 box on the left and boxes of area 4 and 4.5."""

    def __len__(self) -> int:
        return 1

    def load_raw(self, index: int) -> dict[str, Any]:
        return _sample([[2, 3, 12, 11], [30, 20, 32, 22], [40, 20, 41.5, 23]], labels=np.asarray([7, 8, 9]))


def test_mixup_default_probability_and_boundary() -> None:
    sample = _sample([[1, 1, 20, 20]])
    assert MixUp(60)(sample, rng=StubRng([0.15]), dataset=_OneImage()) is sample


def test_mixup_flip_boundary_area_filter_and_dtype() -> None:
    sample = _sample([[1, 1, 20, 20]])
    # Same size as the sample at scale 1 (fraction 0.5 of 0.5-1.5): the pasted image sits at (0, 0).
    kept = MixUp(60, p=1.0)(sample, rng=StubRng([0.0, 0.5], fractions=[0.5]), dataset=_OneImage())
    assert kept["image"].dtype == np.uint8
    np.testing.assert_array_equal(kept["labels"], [0, 7, 9])  # area 4 dropped, 4.5 kept
    np.testing.assert_array_equal(kept["boxes"][1], [2, 3, 12, 11])  # a draw of 0.5 does not flip
    flipped = MixUp(60, p=1.0)(sample, rng=StubRng([0.0, 0.49], fractions=[0.5]), dataset=_OneImage())
    np.testing.assert_array_equal(flipped["boxes"][1], [48, 3, 58, 11])

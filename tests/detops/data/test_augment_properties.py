"""Property-based tests (hypothesis) of the geometric augmentations: flips, stretch resize, clipping,
the affine box mapping, random affine with random parameters, mosaic placement, zoom-out, IoU crop
and the multi-scale batch resize.

Alignment uses the painted scenes of ``tests.detops.data.painted``: each box must stay the tight
hull of its colour's pixels, whatever the parameters. Example counts are small so the default suite
stays fast; the ``slow`` twin of each property reruns it with many more examples.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detops.data.augment_damo import Mosaic, RandomAffine, affine_matrix, transform_boxes
from detops.data.augment_rtdetr import IoUCrop, ZoomOut, resize_batch
from detops.data.transforms import HorizontalFlip, Sanitize, StretchResize, clip_boxes
from tests.detops.data.painted import (
    GREY,
    PRIMARIES,
    PaintedDataset,
    Palette,
    assert_aligned,
    grey_offset_masks,
    nearest_masks,
    wheel,
)

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEEDS = st.integers(0, 2**32 - 1)


@st.composite
def boxes_in(draw: st.DrawFn, h: int, w: int, *, max_boxes: int = 6) -> np.ndarray:
    """[N, 4] float32 xyxy boxes inside a ``h`` x ``w`` image (possibly degenerate)."""
    n = draw(st.integers(0, max_boxes))
    xs = st.floats(0, w, allow_nan=False, width=32)
    ys = st.floats(0, h, allow_nan=False, width=32)
    rows = []
    for _ in range(n):
        xa, xb, ya, yb = draw(xs), draw(xs), draw(ys), draw(ys)
        rows.append([min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb)])
    return np.asarray(rows, dtype=np.float32).reshape(-1, 4)


@st.composite
def raw_samples(draw: st.DrawFn) -> dict:
    """A random-noise image with random boxes inside it."""
    h, w = draw(st.integers(1, 64)), draw(st.integers(1, 64))
    boxes = draw(boxes_in(h, w))
    rng = np.random.default_rng(draw(SEEDS))
    image = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    return {"image": image, "boxes": boxes, "labels": np.arange(len(boxes), dtype=np.int64)}


def _inside(boxes: np.ndarray, h: float, w: float, eps: float = 1e-3) -> bool:
    return bool(
        (
            (boxes[:, :2] >= -eps)
            & (boxes[:, 2:] <= np.asarray([w, h]) + eps)
            & (boxes[:, 2:] >= boxes[:, :2])
        ).all()
    )


# --------------------------------------------------------------------------- flips and clipping


@FAST
@given(raw_samples())
def test_flip_twice_is_identity(sample: dict) -> None:
    flip = HorizontalFlip(1.0)
    rng = np.random.default_rng(0)
    once = flip(sample, rng=rng)
    twice = flip(once, rng=rng)
    np.testing.assert_array_equal(twice["image"], sample["image"])
    np.testing.assert_allclose(twice["boxes"], sample["boxes"], atol=1e-4)
    np.testing.assert_array_equal(twice["labels"], sample["labels"])


@FAST
@given(raw_samples())
def test_flip_mirrors_boxes_and_keeps_them_inside(sample: dict) -> None:
    h, w = sample["image"].shape[:2]
    out = HorizontalFlip(1.0)(sample, rng=np.random.default_rng(0))
    b, o = sample["boxes"], out["boxes"]
    assert _inside(o, h, w)
    # Mirror image of x about the centre line w / 2; y and the box sizes unchanged.
    np.testing.assert_allclose(o[:, 0] + b[:, 2], w, atol=1e-4)
    np.testing.assert_allclose(o[:, 2] + b[:, 0], w, atol=1e-4)
    np.testing.assert_array_equal(o[:, [1, 3]], b[:, [1, 3]])
    np.testing.assert_array_equal(out["image"][:, ::-1], sample["image"])


@FAST
@given(st.integers(1, 100), st.integers(1, 100), st.data())
def test_clip_boxes_stays_inside_and_is_idempotent(h: int, w: int, data: st.DataObject) -> None:
    # Boxes anywhere around the image, partly or wholly outside it.
    raw = data.draw(boxes_in(3 * h, 3 * w)) - np.asarray([w, h, w, h], dtype=np.float32)
    out = clip_boxes(raw, h, w)
    assert _inside(out, h, w, eps=0)
    np.testing.assert_array_equal(clip_boxes(out, h, w), out)
    inside = _inside_rows(raw, h, w)
    np.testing.assert_array_equal(out[inside], raw[inside])


def _inside_rows(boxes: np.ndarray, h: int, w: int) -> np.ndarray:
    return (boxes[:, :2] >= 0).all(axis=1) & (boxes[:, 2] <= w) & (boxes[:, 3] <= h)


@FAST
@given(st.integers(1, 100), st.integers(1, 100), st.floats(0.5, 5), st.data())
def test_sanitize_leaves_only_inside_boxes_of_min_size(
    h: int, w: int, min_size: float, data: st.DataObject
) -> None:
    raw = data.draw(boxes_in(3 * h, 3 * w)) - np.asarray([w, h, w, h], dtype=np.float32)
    sample = {"image": np.zeros((h, w, 3), np.uint8), "boxes": raw, "labels": np.arange(len(raw))}
    out = Sanitize(min_size)(sample, rng=np.random.default_rng(0))
    assert _inside(out["boxes"], h, w, eps=0)
    assert ((out["boxes"][:, 2:] - out["boxes"][:, :2]) >= min_size).all()
    # Nothing kept that is not a clipped input, nothing dropped that was big enough once clipped.
    clipped = np.stack(
        [raw[:, 0].clip(0, w), raw[:, 1].clip(0, h), raw[:, 2].clip(0, w), raw[:, 3].clip(0, h)], 1
    )
    big = ((clipped[:, 2:] - clipped[:, :2]) >= min_size).all(axis=1) if len(raw) else np.zeros(0, bool)
    np.testing.assert_array_equal(out["labels"], np.arange(len(raw))[big])
    np.testing.assert_array_equal(out["boxes"], clipped[big].reshape(-1, 4))


# --------------------------------------------------------------------------- stretch resize


def _black_palette_scene(seed: int, h: int, w: int, n: int) -> tuple[dict, dict[int, np.ndarray]]:
    palette = Palette()
    sample = palette.sample(np.random.default_rng(seed), h, w, PRIMARIES[:n], background=0)
    return sample, {k: np.asarray(c, dtype=np.float32) for k, c in palette.colours.items()}


@FAST
@given(st.integers(60, 200), st.integers(60, 200), st.integers(0, 10**6), st.data())
def test_stretch_resize_keeps_alignment(h: int, w: int, seed: int, data: st.DataObject) -> None:
    # Up to 3x magnification (each blurred edge then spans at most 3 px) and down to 1/3.
    size = data.draw(st.integers(max(24, math.ceil(max(h, w) / 3)), 3 * min(h, w)))
    sample, colours = _black_palette_scene(seed, h, w, 3)
    out = StretchResize(size)(sample, rng=np.random.default_rng(0))
    assert out["image"].shape == (size, size, 3)
    masks = nearest_masks(out["image"], colours, [np.zeros(3, np.float32)])
    assert_aligned(out["image"], out["boxes"], out["labels"], masks, tol=1.5, what=f"resize {h}x{w}->{size}")


# --------------------------------------------------------------------------- affine


@st.composite
def affine_params(draw: st.DrawFn) -> dict:
    return {
        "in_size": (draw(st.integers(1, 300)), draw(st.integers(1, 300))),
        "out_size": draw(st.integers(1, 300)),
        "degrees": draw(st.floats(-180, 180)),
        "scale": draw(st.floats(0.05, 4)),
        "shear_x": draw(st.floats(-20, 20)),
        "shear_y": draw(st.floats(-20, 20)),
        "translate_x": draw(st.floats(-0.5, 1.5)),
        "translate_y": draw(st.floats(-0.5, 1.5)),
    }


@FAST
@given(affine_params(), st.integers(0, 10**6))
def test_transform_boxes_is_the_hull_of_the_mapped_box(params: dict, seed: int) -> None:
    h, w = params["in_size"]
    matrix = affine_matrix(**params)
    rng = np.random.default_rng(seed)
    x1, x2 = np.sort(rng.uniform(0, w, 2))
    y1, y2 = np.sort(rng.uniform(0, h, 2))
    out = transform_boxes(np.asarray([[x1, y1, x2, y2]], dtype=np.float32), matrix)[0]
    # Map the box's corners and random points of it with the matrix (an affine map: A p + t).
    t = rng.uniform(0, 1, size=(64, 2))
    pts = np.concatenate([[[x1, y1], [x2, y1], [x1, y2], [x2, y2]], [x1, y1] + t * [x2 - x1, y2 - y1]])
    mapped = pts @ matrix[:, :2].T + matrix[:, 2]
    tol = 1e-3 * (1 + np.abs(mapped).max())
    assert (mapped >= out[:2] - tol).all() and (mapped <= out[2:] + tol).all()
    # Tight: every side is reached by a mapped corner.
    np.testing.assert_allclose(mapped[:4].min(axis=0), out[:2], atol=tol)
    np.testing.assert_allclose(mapped[:4].max(axis=0), out[2:], atol=tol)


@FAST
@given(st.floats(-180, 180), st.floats(0.1, 3), st.integers(10, 200), st.integers(10, 200))
def test_affine_matrix_rotates_and_scales_about_the_centre(
    degrees: float, scale: float, h: int, w: int
) -> None:
    out_size = 128
    m = affine_matrix(
        in_size=(h, w), out_size=out_size, degrees=degrees, scale=scale, shear_x=0, shear_y=0,
        translate_x=0.5, translate_y=0.5,
    )  # fmt: skip
    centre = np.asarray([w / 2, h / 2])
    np.testing.assert_allclose(m[:, :2] @ centre + m[:, 2], [out_size / 2, out_size / 2], atol=1e-6)
    # Without shear the linear part is a scaled rotation: lengths scale by ``scale``, angles kept.
    np.testing.assert_allclose(m[:, :2].T @ m[:, :2], scale**2 * np.eye(2), atol=1e-9 * max(1, scale**2))
    assert np.linalg.det(m[:, :2]) > 0


@st.composite
def random_affines(draw: st.DrawFn) -> RandomAffine:
    lo = draw(st.floats(0.3, 1.5))
    hi = draw(st.floats(lo, 1.5))
    return RandomAffine(
        draw(st.integers(64, 160)),
        degrees=draw(st.floats(0, 30)),
        scale=(lo, hi),
        shear=draw(st.floats(0, 5)),
        translate=draw(st.floats(0, 0.3)),
    )


@FAST
@given(random_affines(), st.integers(0, 10**6))
def test_random_affine_keeps_alignment(affine: RandomAffine, seed: int) -> None:
    palette = Palette()
    sample = palette.sample(np.random.default_rng(seed), 140, 150, wheel(8), background=GREY)
    out = affine(sample, rng=np.random.default_rng(seed))
    assert out["image"].shape == (affine.size, affine.size, 3)
    masks = grey_offset_masks(out["image"], palette, mixed=False)
    assert_aligned(out["image"], out["boxes"], out["labels"], masks, tol=1.5, rotated=True, what="affine")


# --------------------------------------------------------------------------- mosaic placement


@FAST
@given(st.integers(48, 160), st.integers(0, 10**6))
def test_mosaic_placement_keeps_alignment(size: int, seed: int) -> None:
    palette = Palette()
    w12 = wheel(12)
    ds = PaintedDataset(
        palette,
        [w12[3:6], w12[6:9], w12[9:12]],
        background=GREY,
        seed=seed,
        size_range=(size // 2 + 20, 2 * size),
    )
    sample = palette.sample(np.random.default_rng(seed), size, size, w12[:3], background=GREY)
    out = Mosaic(size, p=1.0)(sample, rng=np.random.default_rng(seed), dataset=ds)
    assert out["image"].shape == (2 * size, 2 * size, 3)
    masks = grey_offset_masks(out["image"], palette, mixed=False)
    # Axis-aligned tiles: every box is tight, and every colour with pixels left has its box.
    assert_aligned(out["image"], out["boxes"], out["labels"], masks, tol=1.5, what="mosaic")
    assert {k for k, m in masks.items() if m.any()} <= set(out["labels"].tolist())


# --------------------------------------------------------------------------- RT-DETRv2 geometry


@FAST
@given(st.floats(1.0, 4.0), st.floats(0.1, 1.0), st.floats(0.3, 1.0), st.integers(0, 10**6))
def test_zoom_out_then_iou_crop_keep_alignment(
    max_side: float, min_scale: float, max_aspect_inv: float, seed: int
) -> None:
    sample, colours = _black_palette_scene(seed, 120, 150, 5)
    rng = np.random.default_rng(seed)
    out = ZoomOut(side_range=(1.0, max_side), p=1.0)(sample, rng=rng)
    masks = nearest_masks(out["image"], colours, [np.zeros(3, np.float32)])
    assert_aligned(out["image"], out["boxes"], out["labels"], masks, tol=0.0, what="zoom-out")
    crop = IoUCrop(
        min_scale=min_scale, min_aspect=max_aspect_inv, max_aspect=1 / max_aspect_inv, options=(0.0, 0.3, 0.7)
    )
    out = crop(out, rng=rng)
    masks = nearest_masks(out["image"], colours, [np.zeros(3, np.float32)])
    # Integer crop of an unblurred image: boxes are exactly the visible parts; colours whose centre
    # fell outside the crop lose their box.
    assert_aligned(out["image"], out["boxes"], out["labels"], masks, tol=0.0, border_filter=True, what="crop")


@FAST
@given(st.integers(40, 160), st.integers(40, 160), st.integers(0, 10**6), st.data())
def test_resize_batch_keeps_alignment(h: int, w: int, seed: int, data: st.DataObject) -> None:
    size = data.draw(st.integers(max(16, math.ceil(max(h, w) / 2)), 2 * min(h, w)))
    sample, colours = _black_palette_scene(seed, h, w, 3)
    images = torch.from_numpy(sample["image"]).permute(2, 0, 1)[None].float()
    out, targets = resize_batch(
        images,
        [{"boxes": torch.from_numpy(sample["boxes"]), "labels": torch.from_numpy(sample["labels"])}],
        size,
    )
    image = out[0].permute(1, 2, 0).numpy().round().astype(np.uint8)
    masks = nearest_masks(image, colours, [np.zeros(3, np.float32)])
    # Nearest sampling: an edge lands within one output pixel of the scaled box edge.
    assert_aligned(
        image, targets[0]["boxes"].numpy(), targets[0]["labels"].numpy(), masks, tol=1.0, what="batch"
    )


# --------------------------------------------------------------------------- slow twins


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(random_affines(), st.integers(0, 10**6))
def test_random_affine_keeps_alignment_many(affine: RandomAffine, seed: int) -> None:
    test_random_affine_keeps_alignment.hypothesis.inner_test(affine, seed)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.integers(48, 160), st.integers(0, 10**6))
def test_mosaic_placement_keeps_alignment_many(size: int, seed: int) -> None:
    test_mosaic_placement_keeps_alignment.hypothesis.inner_test(size, seed)

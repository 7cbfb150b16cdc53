"""Deployed preprocessing is bit-identical to the engine's evaluation pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from detops.data.transforms import eval_pipeline
from detops.deploy.preprocess import boxes_to_original, preprocess


@pytest.mark.parametrize("pixel_scale", [255.0, 1.0])
def test_preprocess_matches_eval_pipeline(pixel_scale):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=s, dtype=np.uint8) for s in [(50, 70, 3), (64, 64, 3), (131, 97, 3)]]
    batch, sizes = preprocess(images, size=64, pixel_scale=pixel_scale)
    assert batch.dtype == np.float32 and batch.shape == (3, 3, 64, 64)
    assert sizes.tolist() == [[50, 70], [64, 64], [131, 97]]
    pipeline = eval_pipeline(size=64, pixel_scale=pixel_scale)
    for image, got in zip(images, batch, strict=True):
        sample = {"image": image, "boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64)}
        expected = pipeline(sample, rng=rng)["image"].numpy()
        np.testing.assert_array_equal(got, expected)
    # A pre-allocated output is filled in place.
    buffer = np.full((3, 3, 64, 64), -1.0, dtype=np.float32)
    again, _ = preprocess(images, size=64, pixel_scale=pixel_scale, out=buffer)
    assert again is buffer
    np.testing.assert_array_equal(buffer, batch)


def test_boxes_to_original_scales_each_axis():
    boxes = np.array([[8.0, 16.0, 32.0, 64.0]], dtype=np.float32)
    got = boxes_to_original(boxes, input_size=64, orig_size=(128, 32))  # (height, width)
    np.testing.assert_allclose(got, [[4.0, 32.0, 16.0, 128.0]])

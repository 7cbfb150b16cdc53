"""Deployed-inference preprocessing, identical to the engine's evaluation pipeline.

``preprocess`` does what ``detops.data.transforms.eval_pipeline`` does to each image (bilinear stretch
resize of the uint8 image with OpenCV, HWC -> CHW, float32 at the family's pixel scale), for a whole
batch at once, so a deployed artifact sees exactly the tensors its checkpoint was evaluated on.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from detops.errors import DetopsError


def preprocess(
    images: Sequence[np.ndarray], *, size: int, pixel_scale: float, out: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 RGB HWC images at their original sizes -> (float32 [N, 3, size, size], int64 [N, 2]).

    The second array holds each original (height, width). Values are 0-255 for ``pixel_scale`` 255.0
    and 0-1 for 1.0. ``out``, when given, is a pre-allocated float32 [N, 3, size, size] array filled in
    place and returned (so a timed loop allocates nothing).
    """
    if not len(images):
        raise DetopsError("preprocess: no images given")
    n = len(images)
    if out is None:
        out = np.empty((n, 3, size, size), dtype=np.float32)
    elif out.shape != (n, 3, size, size) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 {(n, 3, size, size)}, got {out.dtype} {out.shape}")
    sizes = np.empty((n, 2), dtype=np.int64)
    factor = np.float32(pixel_scale / 255.0)
    for i, image in enumerate(images):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise DetopsError(
                f"preprocess: image {i} must be uint8 [H, W, 3], got {image.dtype} {image.shape}"
            )
        h, w = image.shape[:2]
        sizes[i] = (h, w)
        if (h, w) != (size, size):
            image = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
        chw = out[i]
        chw[...] = image.transpose(2, 0, 1)
        if pixel_scale != 255.0:
            chw *= factor
    return out, sizes


def boxes_to_original(boxes: np.ndarray, *, input_size: int, orig_size: tuple[int, int]) -> np.ndarray:
    """[K, 4] xyxy in network-input pixels -> original pixels, ``orig_size`` = (height, width).

    The resize is a stretch (no letterbox), so x and y scale independently.
    """
    h, w = orig_size
    factor = np.asarray([w / input_size, h / input_size, w / input_size, h / input_size], dtype=np.float32)
    return (boxes.astype(np.float32, copy=False) * factor).astype(np.float32)

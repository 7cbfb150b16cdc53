"""RT-DETRv2's training augmentations (our own implementations of the torchvision v2 ops it uses):
photometric distortion, zoom-out, IoU crop, and per-batch multi-scale resizing.

Same sample-dict interface as ``detops.data.transforms``. Defaults are torchvision's, which is what
upstream's config leaves them at: brightness 0.875-1.125, contrast 0.5-1.5, saturation 0.5-1.5, hue
+-0.05; zoom-out side 1-4 filled with 0; IoU crop scale 0.3-1, aspect 0.5-2, IoU options
{0, .1, .3, .5, .7, .9, 1} with 40 trials.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from detops.data.transforms import Sample, clip_boxes, with_image

# Upstream's multi-scale list: 640 three times so the native size is drawn more often.
MULTI_SCALES: tuple[int, ...] = (480, 512, 544, 576, 608, 640, 640, 640, 672, 704, 736, 768, 800)


class RandomApply:
    """Apply ``transform`` with probability ``p``."""

    def __init__(self, transform: Any, *, p: float) -> None:
        self.transform = transform
        self.p = p

    def __call__(self, sample: Sample, *, rng: np.random.Generator, dataset: Any = None) -> Sample:
        if rng.random() >= self.p:
            return sample
        return self.transform(sample, rng=rng, dataset=dataset)


class PhotometricDistort:
    """Each with probability ``p``: brightness, contrast (before or after the colour ops), saturation,
    hue, channel permutation. Pixels only; boxes are untouched."""

    def __init__(
        self,
        *,
        brightness: tuple[float, float] = (0.875, 1.125),
        contrast: tuple[float, float] = (0.5, 1.5),
        saturation: tuple[float, float] = (0.5, 1.5),
        hue: tuple[float, float] = (-0.05, 0.05),
        p: float = 0.5,
    ) -> None:
        self.brightness, self.contrast, self.saturation, self.hue, self.p = (
            brightness,
            contrast,
            saturation,
            hue,
            p,
        )

    @staticmethod
    def _contrast(img: np.ndarray, factor: float) -> np.ndarray:
        grey_mean = float((img @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32)).mean())
        return img * factor + grey_mean * (1 - factor)

    def __call__(self, sample: Sample, *, rng: np.random.Generator, dataset: Any = None) -> Sample:
        draws = rng.random(7)
        img = sample["image"].astype(np.float32)
        if draws[0] < self.p:
            img = img * rng.uniform(*self.brightness)
        contrast_first = draws[1] < 0.5
        if contrast_first and draws[2] < self.p:
            img = self._contrast(img.clip(0, 255), rng.uniform(*self.contrast))
        if draws[3] < self.p:
            grey = (img.clip(0, 255) @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
            f = rng.uniform(*self.saturation)
            img = img * f + grey * (1 - f)
        if draws[4] < self.p:
            hsv = cv2.cvtColor(img.clip(0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV_FULL)
            shift = int(round(rng.uniform(*self.hue) * 256))
            hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + shift) % 256).astype(np.uint8)
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL).astype(np.float32)
        if not contrast_first and draws[5] < self.p:
            img = self._contrast(img.clip(0, 255), rng.uniform(*self.contrast))
        if draws[6] < self.p:
            img = img[..., rng.permutation(3)]
        out = np.ascontiguousarray(img.clip(0, 255).round().astype(np.uint8))
        return with_image(sample, out, sample["boxes"], sample["labels"])


class ZoomOut:
    """With probability ``p`` place the image at a random spot of a canvas ``r`` times larger
    (``r`` ~ U(side_range)), filled with ``fill``."""

    def __init__(
        self, *, side_range: tuple[float, float] = (1.0, 4.0), fill: int = 0, p: float = 0.5
    ) -> None:
        self.side_range, self.fill, self.p = side_range, fill, p

    def __call__(self, sample: Sample, *, rng: np.random.Generator, dataset: Any = None) -> Sample:
        if rng.random() >= self.p:
            return sample
        image = sample["image"]
        h, w = image.shape[:2]
        r = rng.uniform(*self.side_range)
        ch, cw = int(h * r), int(w * r)
        left, top = int((cw - w) * rng.random()), int((ch - h) * rng.random())
        canvas = np.full((ch, cw, 3), self.fill, dtype=np.uint8)
        canvas[top : top + h, left : left + w] = image
        boxes = sample["boxes"] + np.asarray([left, top, left, top], dtype=np.float32)
        return with_image(sample, canvas, boxes, sample["labels"])


class IoUCrop:
    """SSD-style crop: draw a minimum IoU from ``options`` (1.0 = keep the image), then try up to
    ``trials`` random crops (scale, aspect limits) keeping the boxes whose centres fall inside, until
    one overlaps some box by at least that IoU. Images without boxes are returned unchanged."""

    def __init__(
        self,
        *,
        min_scale: float = 0.3,
        max_scale: float = 1.0,
        min_aspect: float = 0.5,
        max_aspect: float = 2.0,
        options: tuple[float, ...] = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0),
        trials: int = 40,
    ) -> None:
        self.min_scale, self.max_scale = min_scale, max_scale
        self.min_aspect, self.max_aspect = min_aspect, max_aspect
        self.options, self.trials = options, trials

    def __call__(self, sample: Sample, *, rng: np.random.Generator, dataset: Any = None) -> Sample:
        boxes = sample["boxes"]
        if len(boxes) == 0:
            return sample
        image = sample["image"]
        h, w = image.shape[:2]
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        # torchvision loops until success; bounded here (a 1.0 draw ends it in practice long before).
        for _ in range(64):
            min_iou = self.options[int(rng.integers(len(self.options)))]
            if min_iou >= 1.0:
                return sample
            for _ in range(self.trials):
                sw, sh = self.min_scale + (self.max_scale - self.min_scale) * rng.random(2)
                nw, nh = int(w * sw), int(h * sh)
                if nh == 0 or not self.min_aspect <= nw / nh <= self.max_aspect:
                    continue
                rx, ry = rng.random(2)
                left, top = int((w - nw) * rx), int((h - nh) * ry)
                right, bottom = left + nw, top + nh
                if left == right or top == bottom:
                    continue
                inside = (
                    (centres[:, 0] > left)
                    & (centres[:, 0] < right)
                    & (centres[:, 1] > top)
                    & (centres[:, 1] < bottom)
                )
                if not inside.any():
                    continue
                kept = boxes[inside]
                ix1, iy1 = np.maximum(kept[:, 0], left), np.maximum(kept[:, 1], top)
                ix2, iy2 = np.minimum(kept[:, 2], right), np.minimum(kept[:, 3], bottom)
                inter = (ix2 - ix1).clip(0) * (iy2 - iy1).clip(0)
                union = (kept[:, 2] - kept[:, 0]) * (kept[:, 3] - kept[:, 1]) + nw * nh - inter
                if (inter / union).max() < min_iou:
                    continue
                crop = np.ascontiguousarray(image[top:bottom, left:right])
                shifted = clip_boxes(kept - np.asarray([left, top, left, top], dtype=np.float32), nh, nw)
                return with_image(sample, crop, shifted, sample["labels"][inside])
        return sample


def resize_batch(
    images: torch.Tensor, targets: list[dict[str, Any]], size: int
) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Multi-scale step: [B, 3, H, W] -> [B, 3, size, size] (nearest, as upstream), boxes rescaled."""
    h, w = images.shape[-2:]
    if (h, w) == (size, size):
        return images, targets
    images = F.interpolate(images, size=(size, size), mode="nearest")
    scale = torch.tensor([size / w, size / h, size / w, size / h], dtype=torch.float32)
    out = []
    for t in targets:
        t = dict(t)
        t["boxes"] = t["boxes"] * scale.to(t["boxes"].device)
        out.append(t)
    return images, out

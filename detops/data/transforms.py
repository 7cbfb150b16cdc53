"""Geometric basics shared by both families' pipelines: compose, stretch resize, flip, sanitize, to-tensor.

Every transform is a callable ``t(sample, *, rng, dataset) -> sample`` on the sample dict described
in ``detops.data.dataset`` (uint8 RGB HWC image, float32 xyxy pixel boxes, int64 labels). ``rng`` is a
``numpy.random.Generator``; ``dataset`` is only read by multi-image transforms (mosaic, mixup).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import torch

Sample = dict[str, Any]


def with_image(sample: Sample, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> Sample:
    """A copy of ``sample`` with new pixels and targets (ids and original size kept)."""
    out = dict(sample)
    out["image"] = image
    out["boxes"] = boxes.astype(np.float32, copy=False).reshape(-1, 4)
    out["labels"] = labels.astype(np.int64, copy=False).reshape(-1)
    return out


def clip_boxes(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """[N, 4] xyxy clipped to the image rectangle."""
    out = boxes.copy()
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    return out


def keep_valid(boxes: np.ndarray, labels: np.ndarray, *, min_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Drop boxes whose width or height is below ``min_size`` pixels."""
    wh = boxes[:, 2:] - boxes[:, :2]
    keep = (wh >= min_size).all(axis=1) if len(boxes) else np.zeros(0, dtype=bool)
    return boxes[keep], labels[keep]


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Any]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: Sample, *, rng: np.random.Generator, dataset: Any = None) -> Sample:
        for t in self.transforms:
            sample = t(sample, rng=rng, dataset=dataset)
        return sample

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(type(t).__name__ for t in self.transforms) + ")"


class StretchResize:
    """Resize to ``size`` x ``size`` without keeping the aspect ratio (bilinear), scaling boxes per axis."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, sample: Sample, *, rng: np.random.Generator, dataset: Any = None) -> Sample:
        image = sample["image"]
        h, w = image.shape[:2]
        if (h, w) == (self.size, self.size):
            return sample
        resized = cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        scale = np.asarray([self.size / w, self.size / h, self.size / w, self.size / h], dtype=np.float32)
        return with_image(sample, resized, sample["boxes"] * scale, sample["labels"])


class HorizontalFlip:
    """Mirror left-right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, sample: Sample, *, rng: np.random.Generator, dataset: Any = None) -> Sample:
        if rng.random() >= self.p:
            return sample
        image = np.ascontiguousarray(sample["image"][:, ::-1])
        w = image.shape[1]
        boxes = sample["boxes"].copy()
        boxes[:, [0, 2]] = w - sample["boxes"][:, [2, 0]]
        return with_image(sample, image, boxes, sample["labels"])


class Sanitize:
    """Clip boxes to the image and drop those thinner than ``min_size`` pixels."""

    def __init__(self, min_size: float = 1.0) -> None:
        self.min_size = min_size

    def __call__(self, sample: Sample, *, rng: np.random.Generator, dataset: Any = None) -> Sample:
        h, w = sample["image"].shape[:2]
        boxes, labels = keep_valid(
            clip_boxes(sample["boxes"], h, w), sample["labels"], min_size=self.min_size
        )
        return with_image(sample, sample["image"], boxes, labels)


class ToTensor:
    """uint8 HWC RGB -> float32 [3, H, W] at ``pixel_scale`` (255.0: values 0-255; 1.0: values 0-1).

    Boxes and labels become tensors; everything else is passed through.
    """

    def __init__(self, pixel_scale: float) -> None:
        self.pixel_scale = pixel_scale

    def __call__(self, sample: Sample, *, rng: np.random.Generator, dataset: Any = None) -> Sample:
        image = torch.from_numpy(np.ascontiguousarray(sample["image"].transpose(2, 0, 1))).float()
        if self.pixel_scale != 255.0:
            image = image * (self.pixel_scale / 255.0)
        out = dict(sample)
        out["image"] = image
        out["boxes"] = torch.from_numpy(np.ascontiguousarray(sample["boxes"], dtype=np.float32)).reshape(
            -1, 4
        )
        out["labels"] = torch.from_numpy(np.ascontiguousarray(sample["labels"], dtype=np.int64)).reshape(-1)
        return out


def eval_pipeline(*, size: int, pixel_scale: float) -> Compose:
    """Inference preprocessing of both families: stretch resize to ``size``, then ``ToTensor``."""
    return Compose([StretchResize(size), ToTensor(pixel_scale)])

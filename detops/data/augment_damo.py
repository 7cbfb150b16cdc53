"""DAMO-YOLO's training augmentations: mosaic, random affine and mixup (our own implementations).

Same sample-dict interface as ``detops.data.transforms``. Constants follow the upstream recipe
(``damo/config/augmentations.py``): grey fill 114, mosaic tiles stretched to the input size on a 2x
canvas, affine rotation +-10 deg, scale 0.1-2.0, translate 0.5 +- 0.2, mixup blend 0.5/0.5.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from detops.data.transforms import Sample, clip_boxes, with_image

FILL = 114


def _stretch(image: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = image.shape[:2]
    out = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    return out, boxes * np.asarray([size / w, size / h, size / w, size / h], dtype=np.float32)


class Mosaic:
    """Four images (this one and three drawn from ``dataset``), each stretched to ``size`` x ``size``,
    tiled around a random centre of a ``2*size`` square canvas filled with grey. Output is the canvas;
    ``RandomAffine`` brings it back to ``size``. Applied with probability ``p``."""

    def __init__(self, size: int, *, p: float = 1.0) -> None:
        self.size = size
        self.p = p

    def __call__(self, sample: Sample, *, rng: np.random.Generator, dataset: Any = None) -> Sample:
        if dataset is None or rng.random() >= self.p:
            return sample
        s = self.size
        xc, yc = (int(v) for v in rng.uniform(0.5 * s, 1.5 * s, size=2))
        others = [dataset.load_raw(int(i)) for i in rng.integers(0, len(dataset), size=3)]
        canvas = np.full((2 * s, 2 * s, 3), FILL, dtype=np.uint8)
        all_boxes, all_labels = [], []
        for k, part in enumerate([sample, *others]):
            image, boxes = _stretch(part["image"], part["boxes"], s)
            # Tile k's corner that touches the centre: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right.
            x1, y1 = (
                (xc - s, yc - s)
                if k == 0
                else (xc, yc - s)
                if k == 1
                else (xc - s, yc)
                if k == 2
                else (xc, yc)
            )
            cx1, cy1 = max(x1, 0), max(y1, 0)
            cx2, cy2 = min(x1 + s, 2 * s), min(y1 + s, 2 * s)
            canvas[cy1:cy2, cx1:cx2] = image[cy1 - y1 : cy2 - y1, cx1 - x1 : cx2 - x1]
            all_boxes.append(boxes + np.asarray([x1, y1, x1, y1], dtype=np.float32))
            all_labels.append(part["labels"])
        boxes = clip_boxes(np.concatenate(all_boxes).reshape(-1, 4), 2 * s, 2 * s)
        labels = np.concatenate(all_labels)
        keep = ((boxes[:, 2:] - boxes[:, :2]) > 0).all(axis=1)
        return with_image(sample, canvas, boxes[keep], labels[keep])


def affine_matrix(
    *,
    in_size: tuple[int, int],
    out_size: int,
    degrees: float,
    scale: float,
    shear_x: float,
    shear_y: float,
    translate_x: float,
    translate_y: float,
) -> np.ndarray:
    """The 2x3 matrix taking input pixels (``in_size`` = (h, w)) to output pixels: rotate and scale
    about the input centre, shear (degrees), then move the centre to ``translate_* * out_size``."""
    h, w = in_size
    centre = np.eye(3)
    centre[0, 2], centre[1, 2] = -w / 2, -h / 2
    rot = np.eye(3)
    a = math.radians(degrees)
    rot[:2, :2] = [[scale * math.cos(a), scale * math.sin(a)], [-scale * math.sin(a), scale * math.cos(a)]]
    sh = np.eye(3)
    sh[0, 1] = math.tan(math.radians(shear_x))
    sh[1, 0] = math.tan(math.radians(shear_y))
    move = np.eye(3)
    move[0, 2], move[1, 2] = translate_x * out_size, translate_y * out_size
    return (move @ sh @ rot @ centre)[:2]


def transform_boxes(boxes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """[N, 4] xyxy through a 2x3 affine matrix -> [N, 4] xyxy enclosing the four mapped corners."""
    if len(boxes) == 0:
        return boxes.reshape(0, 4)
    corners = boxes[:, [0, 1, 2, 1, 2, 3, 0, 3]].reshape(-1, 4, 2)
    mapped = corners @ matrix[:, :2].T + matrix[:, 2]
    return np.concatenate([mapped.min(axis=1), mapped.max(axis=1)], axis=1).astype(np.float32)


class RandomAffine:
    """Random rotation, scale, shear and translation to a ``size`` x ``size`` output (grey border).

    Keeps boxes wider and taller than 2 px, with more than 10 % of their scaled area left and an
    aspect ratio below 20 (upstream's filter).
    """

    def __init__(
        self,
        size: int,
        *,
        degrees: float = 10.0,
        scale: tuple[float, float] = (0.1, 2.0),
        shear: float = 2.0,
        translate: float = 0.2,
    ) -> None:
        self.size = size
        self.degrees = degrees
        self.scale = scale
        self.shear = shear
        self.translate = translate

    def __call__(self, sample: Sample, *, rng: np.random.Generator, dataset: Any = None) -> Sample:
        image = sample["image"]
        scale = float(rng.uniform(*self.scale))
        matrix = affine_matrix(
            in_size=image.shape[:2],
            out_size=self.size,
            degrees=float(rng.uniform(-self.degrees, self.degrees)),
            scale=scale,
            shear_x=float(rng.uniform(-self.shear, self.shear)),
            shear_y=float(rng.uniform(-self.shear, self.shear)),
            translate_x=float(rng.uniform(0.5 - self.translate, 0.5 + self.translate)),
            translate_y=float(rng.uniform(0.5 - self.translate, 0.5 + self.translate)),
        )
        out = cv2.warpAffine(image, matrix, (self.size, self.size), borderValue=(FILL, FILL, FILL))
        old = sample["boxes"]
        new = clip_boxes(transform_boxes(old, matrix), self.size, self.size)
        w, h = new[:, 2] - new[:, 0], new[:, 3] - new[:, 1]
        old_area = (old[:, 2] - old[:, 0]) * (old[:, 3] - old[:, 1]) * scale * scale
        aspect = np.maximum(w / np.maximum(h, 1e-6), h / np.maximum(w, 1e-6))
        keep = (w > 2) & (h > 2) & (w * h / np.maximum(old_area, 1e-6) > 0.1) & (aspect < 20)
        return with_image(sample, out, new[keep], sample["labels"][keep])


class MixUp:
    """With probability ``p`` blend (0.5/0.5) with another image drawn from ``dataset``: aspect-kept
    resize to fit ``size``, jittered by ``scale``, random horizontal flip, placed at a random offset
    on a grey canvas of this image's size. Labels are concatenated; boxes of area <= 4 px^2 dropped."""

    def __init__(self, size: int, *, p: float = 0.15, scale: tuple[float, float] = (0.5, 1.5)) -> None:
        self.size = size
        self.p = p
        self.scale = scale

    def __call__(self, sample: Sample, *, rng: np.random.Generator, dataset: Any = None) -> Sample:
        if dataset is None or rng.random() >= self.p:
            return sample
        other = dataset.load_raw(int(rng.integers(0, len(dataset))))
        image = sample["image"]
        h, w = image.shape[:2]
        oh, ow = other["image"].shape[:2]
        factor = min(self.size / oh, self.size / ow) * float(rng.uniform(*self.scale))
        nw, nh = max(1, int(ow * factor)), max(1, int(oh * factor))
        pasted = cv2.resize(other["image"], (nw, nh), interpolation=cv2.INTER_LINEAR)
        # Scale boxes by the size actually resized to (whole pixels), not by ``factor``: the flip
        # mirrors about ``nw``, so a box at the image's right edge must land exactly on it.
        sx, sy = nw / ow, nh / oh
        boxes = other["boxes"] * np.asarray([sx, sy, sx, sy], dtype=np.float32)
        if rng.random() < 0.5:
            pasted = np.ascontiguousarray(pasted[:, ::-1])
            boxes[:, [0, 2]] = nw - boxes[:, [2, 0]]
        # Offset of the pasted image's top-left corner on this image; negative offsets crop it.
        dx = int(rng.integers(min(0, w - nw), max(0, w - nw) + 1))
        dy = int(rng.integers(min(0, h - nh), max(0, h - nh) + 1))
        canvas = np.full_like(image, FILL)
        x1, y1, x2, y2 = max(dx, 0), max(dy, 0), min(dx + nw, w), min(dy + nh, h)
        canvas[y1:y2, x1:x2] = pasted[y1 - dy : y2 - dy, x1 - dx : x2 - dx]
        boxes = clip_boxes(boxes + np.asarray([dx, dy, dx, dy], dtype=np.float32), h, w)
        blended = (0.5 * image.astype(np.float32) + 0.5 * canvas.astype(np.float32)).round().astype(np.uint8)
        all_boxes = np.concatenate([sample["boxes"].reshape(-1, 4), boxes])
        all_labels = np.concatenate([sample["labels"], other["labels"]])
        area = (all_boxes[:, 2] - all_boxes[:, 0]) * (all_boxes[:, 3] - all_boxes[:, 1])
        keep = area > 4
        return with_image(sample, blended, all_boxes[keep], all_labels[keep])

"""Painted scenes for augmentation tests: filled rectangles of distinct colours, the pixels of each
colour after a transform, and the check that boxes are their colours' tight hulls.

Colour coding:

* DAMO-YOLO scenes sit on grey 114 (the mosaic/affine/mixup fill), so the fill is "background".
  Colours differ from grey in the red and blue channels only, on a wheel around (114, 114); mixup's
  second image differs in green only. Mixup averages the two images, so doubling the offset from
  grey gives back each source's colour, in its own channels, even where boxes overlap.
* RT-DETRv2 scenes are saturated colours on black (``PRIMARIES``), far from each other and from
  every blend of one of them with black.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

GREY = 114  # DAMO-YOLO's fill value, written out here on purpose (not imported)
MIN_SIDE = 4  # boxes and colour regions smaller than this (px) are not held to tightness/coverage
Masks = dict[int, np.ndarray]


# --------------------------------------------------------------------------- scenes and colours


def wheel(n: int, *, start: float = 0.0, radius: float = 110.0) -> list[tuple[int, int, int]]:
    """``n`` colours that differ from grey 114 only in red and blue, evenly spread on a circle."""
    out = []
    for k in range(n):
        a = start + 2 * math.pi * k / n
        out.append((round(GREY + radius * math.cos(a)), GREY, round(GREY + radius * math.sin(a))))
    return out


# Mixup's second image: grey with green offsets only (+120 and -110: two well-separated levels).
GREENS = [(GREY, 234, GREY), (GREY, 4, GREY)]
# RT-DETRv2 scenes: saturated colours on black, far from each other and from every black-colour blend.
PRIMARIES = [
    (255, 0, 0),
    (0, 255, 0),
    (0, 0, 255),
    (255, 255, 0),
    (0, 255, 255),
    (255, 0, 255),
    (255, 255, 255),
]


def paint(
    rng: np.random.Generator,
    h: int,
    w: int,
    colours: list[tuple[int, int, int]],
    *,
    background: int,
    min_side: int = 14,
    gap: int = 6,
) -> tuple[np.ndarray, np.ndarray]:
    """An image ``h`` x ``w`` of ``background`` with one filled rectangle per colour, at least ``gap``
    px apart; returns (image, [N, 4] float32 xyxy pixel-edge boxes in colour order)."""
    top = max(min_side + 1, int(min(h, w) / (1 + math.sqrt(len(colours)))))
    for _ in range(100):  # restart the whole layout when a rectangle finds no room
        boxes: list[tuple[int, int, int, int]] = []
        for _ in colours:
            for _ in range(200):
                bw, bh = (int(v) for v in rng.integers(min_side, top, size=2))
                if max(bw / bh, bh / bw) > 4:
                    continue
                x1, y1 = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
                cand = (x1, y1, x1 + bw, y1 + bh)
                if all(
                    cand[0] >= b[2] + gap
                    or b[0] >= cand[2] + gap
                    or cand[1] >= b[3] + gap
                    or b[1] >= cand[3] + gap
                    for b in boxes
                ):
                    boxes.append(cand)
                    break
            else:
                break
        if len(boxes) == len(colours):
            break
    else:
        raise RuntimeError("could not place the rectangles; make the image larger")
    image = np.full((h, w, 3), background, dtype=np.uint8)
    for cand, colour in zip(boxes, colours, strict=True):
        image[cand[1] : cand[3], cand[0] : cand[2]] = colour
    return image, np.asarray(boxes, dtype=np.float32).reshape(-1, 4)


class Palette:
    """Label -> colour registry of one test: every painted rectangle gets a fresh label."""

    def __init__(self) -> None:
        self.colours: dict[int, tuple[int, int, int]] = {}

    def sample(
        self,
        rng: np.random.Generator,
        h: int,
        w: int,
        colours: list[tuple[int, int, int]],
        *,
        background: int,
        image_id: int = 0,
    ) -> dict[str, Any]:
        """A sample dict of a painted scene whose labels index this palette."""
        image, boxes = paint(rng, h, w, colours, background=background)
        labels = np.arange(len(self.colours), len(self.colours) + len(colours), dtype=np.int64)
        for label, colour in zip(labels.tolist(), colours, strict=True):
            self.colours[label] = colour
        return {"image": image, "boxes": boxes, "labels": labels, "image_id": image_id, "orig_size": (h, w)}


class PaintedDataset:
    """What mosaic and mixup read (``len``, ``load_raw``). Each ``load_raw`` call paints the index's
    fixed geometry with the next colour set of ``colour_sets``, so every instance in an output has a
    colour of its own, even when the same index is drawn twice."""

    def __init__(
        self,
        palette: Palette,
        colour_sets: list[list[tuple[int, int, int]]],
        *,
        background: int,
        seed: int,
        n: int = 5,
        size_range: tuple[int, int] = (80, 200),
    ) -> None:
        rng = np.random.default_rng(seed)
        self.palette, self.colour_sets, self.background = palette, colour_sets, background
        self.shapes = [tuple(int(v) for v in rng.integers(*size_range, size=2)) for _ in range(n)]
        self.seeds = [int(v) for v in rng.integers(0, 2**31, size=n)]
        self.calls = 0

    def __len__(self) -> int:
        return len(self.shapes)

    def load_raw(self, index: int) -> dict[str, Any]:
        """The scene of ``index`` painted with the next colour set."""
        colours = self.colour_sets[self.calls]
        self.calls += 1
        h, w = self.shapes[index]
        rng = np.random.default_rng(self.seeds[index])
        return self.palette.sample(rng, h, w, colours, background=self.background, image_id=index)


# --------------------------------------------------------------------------- pixel classification


def grey_offset_masks(image: np.ndarray, palette: Palette, *, mixed: bool, delta: float = 35.0) -> Masks:
    """Core pixels of each colour of a grey-background scene (see the module docstring): within
    ``delta`` of the colour and nearer to it than to any other colour of its kind.

    ``mixed``: the image is a 50/50 blend of two such scenes, so offsets from grey are doubled; colours
    with a green offset are then read from green alone and the others from red/blue alone."""
    off = image.astype(np.float32) - GREY
    if mixed:
        off = off * 2
    masks: Masks = {}
    wheel = {
        k: np.asarray(c, dtype=np.float32)[[0, 2]] - GREY for k, c in palette.colours.items() if c[1] == GREY
    }
    greens = {k: float(c[1]) - GREY for k, c in palette.colours.items() if c[1] != GREY}
    if wheel:
        labels = list(wheel)
        dist = np.linalg.norm(off[..., None, [0, 2]] - np.stack([wheel[k] for k in labels]), axis=-1)
        near = dist.min(axis=-1) <= delta
        if not mixed:
            near &= np.abs(off[..., 1]) <= delta
        nearest = dist.argmin(axis=-1)
        masks.update({k: near & (nearest == i) for i, k in enumerate(labels)})
    for k, g in greens.items():
        masks[k] = np.abs(off[..., 1] - g) <= delta
    return masks


def nearest_masks(
    image: np.ndarray, colours: dict[int, np.ndarray], backgrounds: list[np.ndarray], *, frac: float = 0.3
) -> Masks:
    """Core pixels of each colour: nearer to it than to anything else, within ``frac`` of the
    smallest distance between a colour and any other colour or background."""
    labels = list(colours)
    refs = np.stack([colours[k] for k in labels] + backgrounds).astype(np.float32)
    gaps = [
        float(np.linalg.norm(refs[i] - refs[j]))
        for i in range(len(labels))
        for j in range(len(refs))
        if i != j
    ]
    delta = frac * min(gaps)
    assert delta >= 5, f"palette too compressed to classify pixels (delta {delta:.1f})"
    dist = np.linalg.norm(image.astype(np.float32)[..., None, :] - refs, axis=-1)
    nearest = dist.argmin(axis=-1)
    ok = dist.min(axis=-1) <= delta
    return {label: ok & (nearest == i) for i, label in enumerate(labels)}


# --------------------------------------------------------------------------- the alignment check


def extent(mask: np.ndarray) -> np.ndarray | None:
    """xyxy pixel-edge hull of a boolean mask, or None when it is empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return np.asarray([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float32)


def assert_aligned(
    image: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    masks: Masks,
    *,
    tol: float = 1.5,
    rotated: bool = False,
    border_filter: bool = False,
    what: str = "",
) -> None:
    """Every box is the tight hull of its colour's core pixels (within ``tol``) and every colour
    region at least ``MIN_SIDE`` px on each side has a box.

    ``rotated``: boxes touching the image border may be the clipped hull of rotated corners; they
    must contain their colour, which must reach one of the borders they touch, and colours touching
    the border may have been filtered out (upstream's area filter). ``border_filter`` alone allows
    that filter without rotation (every box still tight)."""
    h, w = image.shape[:2]
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    labels = np.asarray(labels).reshape(-1)
    assert len(set(labels.tolist())) == len(labels), f"{what}: a colour has two boxes: {labels}"
    # 1e-3: float32 scaling may land a box edge a hair beyond the image (170 * (96 / 170) = 96.00001).
    eps = 1e-3
    assert (
        (boxes[:, :2] >= -eps) & (boxes[:, 2:] <= [w + eps, h + eps]) & (boxes[:, 2:] >= boxes[:, :2])
    ).all(), f"{what}: boxes leave the {w}x{h} image: {boxes}"
    for box, label in zip(boxes, labels.tolist(), strict=True):
        assert label in masks, f"{what}: box label {label} is no painted colour"
        ext = extent(masks[label])
        small = (box[2:] - box[:2] < MIN_SIDE).any()
        if ext is None:
            assert small, f"{what}: box {box} of colour {label} covers none of its pixels"
            continue
        inside = (ext[:2] >= box[:2] - tol).all() and (ext[2:] <= box[2:] + tol).all()
        assert inside, f"{what}: colour {label} pixels {ext} stick out of its box {box}"
        if small:
            continue
        on_border = np.asarray([box[0] <= 0.5, box[1] <= 0.5, box[2] >= w - 0.5, box[3] >= h - 0.5])
        if rotated and on_border.any():
            limits = np.asarray([0, 0, w, h], dtype=np.float32)
            # A corner cut off by one border can still push the hull onto another one.
            assert (np.abs(ext - limits)[on_border] <= tol).any(), (
                f"{what}: box {box} of colour {label} is clipped at borders its pixels {ext} do not reach"
            )
            continue
        assert np.abs(ext - box).max() <= tol, f"{what}: box {box} of colour {label} is not tight on {ext}"
    present = set(labels.tolist())
    for label, mask in masks.items():
        ext = extent(mask)
        if ext is None or (ext[2:] - ext[:2] < MIN_SIDE).any():
            continue
        if (rotated or border_filter) and (ext[0] <= 1 or ext[1] <= 1 or ext[2] >= w - 1 or ext[3] >= h - 1):
            continue
        assert label in present, f"{what}: colour {label} is visible at {ext} but has no box"


def numpy_image(sample: dict[str, Any], pixel_scale: float) -> np.ndarray:
    """A ``ToTensor`` output image back to uint8 HWC 0-255."""
    image = sample["image"]
    assert isinstance(image, torch.Tensor)
    return (image.permute(1, 2, 0).numpy() * (255.0 / pixel_scale)).round().clip(0, 255).astype(np.uint8)


def as_numpy(x: Any) -> np.ndarray:
    """A tensor or array-like as a numpy array."""
    return x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)

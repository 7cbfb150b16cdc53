"""A deterministic synthetic COCO detection dataset: coloured shapes on textured backgrounds.

Each category is one shape in one saturated colour (a red rectangle, a green ellipse, ...) on muted,
textured backgrounds (noise, gradients, stripes), so a detector can learn the mapping from a handful
of images. Category ids are a gappy subset of 1..90 like COCO's. Images vary in size around ``size``
and are not square; they hold 1-6 objects, including small ones, overlapping ones and ones cut by the
border, and some images hold none. A few images carry an ``iscrowd=1`` cluster with an RLE mask.

Output (our layout, see ``detops.data.layout``)::

    OUT/annotations/instances_train.json   OUT/train/000000000001.jpg ...
    OUT/annotations/instances_val.json     OUT/val/000000000009.jpg ...

The same arguments give byte-identical files: every image draws from its own RNG seeded by
``(seed, split, index)``, JPEGs are written at a fixed quality, and the JSON has sorted keys and no
timestamps.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from detops.errors import DetopsError
from detops.fileio import atomic_open

JPEG_QUALITY = 90
SYNTH_DESCRIPTION = "detops synthetic shapes"
"""``info.description`` prefix; marks a directory as ours so a rerun may overwrite it."""


@dataclass(frozen=True)
class ShapeClass:
    """One synthetic category: its COCO id, name, supercategory, shape and RGB colour."""

    id: int
    name: str
    supercategory: str
    shape: str
    colour: tuple[int, int, int]


# Ids deliberately gappy (like COCO's 1..90 with 80 used) so code that assumes contiguous ids fails.
CLASSES: tuple[ShapeClass, ...] = (
    ShapeClass(1, "red rectangle", "polygon", "rectangle", (220, 40, 40)),
    ShapeClass(3, "green ellipse", "round", "ellipse", (40, 185, 60)),
    ShapeClass(8, "blue triangle", "polygon", "triangle", (40, 80, 235)),
    ShapeClass(17, "yellow diamond", "polygon", "diamond", (245, 215, 30)),
    ShapeClass(44, "magenta hexagon", "polygon", "hexagon", (215, 50, 205)),
    ShapeClass(90, "cyan cross", "cross", "cross", (30, 205, 215)),
)


@dataclass(frozen=True)
class SynthSummary:
    """What ``synthesize`` wrote: root, and per split the number of images, annotations, crowds."""

    root: Path
    images: dict[str, int]
    annotations: dict[str, int]
    crowd: dict[str, int]
    empty_images: dict[str, int]

    def __str__(self) -> str:
        """One sentence: images, boxes and empty images per split, and where they are."""
        splits = list(self.images)
        per = " / ".join(f"{self.images[s]} {s}" for s in splits)
        boxes = " / ".join(str(self.annotations[s]) for s in splits)
        empty = " / ".join(str(self.empty_images[s]) for s in splits)
        return f"{per} images with {boxes} boxes ({empty} images without objects) in {self.root}"


# ---------------------------------------------------------------- geometry (pure functions)


def shape_polygon(shape: str, *, cx: float, cy: float, rx: float, ry: float, angle: float) -> np.ndarray:
    """Vertices [K, 2] (x, y) of ``shape`` centred at (cx, cy) with half-extents (rx, ry), rotated by
    ``angle`` radians."""
    pts: np.ndarray
    if shape == "rectangle":
        pts = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    elif shape == "ellipse":
        t = np.linspace(0.0, 2 * math.pi, 32, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], axis=1)
    elif shape == "triangle":
        pts = np.array([[0, -1], [1, 0.8], [-1, 0.8]], dtype=np.float64)
    elif shape == "diamond":
        pts = np.array([[0, -1], [1, 0], [0, 1], [-1, 0]], dtype=np.float64)
    elif shape == "hexagon":
        k = np.arange(6, dtype=np.float64) * (math.pi / 3)
        pts = np.stack([np.cos(k), np.sin(k)], axis=1)
    elif shape == "cross":
        a = 0.33  # half arm width, as a fraction of the half-extent
        pts = np.array(
            [
                [-a, -1],
                [a, -1],
                [a, -a],
                [1, -a],
                [1, a],
                [a, a],
                [a, 1],
                [-a, 1],
                [-a, a],
                [-1, a],
                [-1, -a],
                [-a, -a],
            ],
            dtype=np.float64,
        )
    else:
        raise ValueError(f"unknown shape {shape!r}")
    pts = pts * np.array([rx, ry])
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    return pts @ rot.T + np.array([cx, cy])


def clip_polygon(poly: np.ndarray, *, width: float, height: float) -> np.ndarray:
    """Sutherland-Hodgman clip of polygon [K, 2] to the box [0, width] x [0, height]; [M, 2], M may be 0."""
    out = [tuple(p) for p in poly]
    # Each edge: (axis, bound, keep_if_less_or_equal).
    for axis, bound, keep_le in ((0, 0.0, False), (0, width, True), (1, 0.0, False), (1, height, True)):
        if not out:
            break
        src, out = out, []

        def inside(
            p: tuple[float, float], axis: int = axis, bound: float = bound, keep_le: bool = keep_le
        ) -> bool:
            return p[axis] <= bound if keep_le else p[axis] >= bound

        for i, cur in enumerate(src):
            prev = src[i - 1]
            if inside(cur):
                if not inside(prev):
                    out.append(_intersect(prev, cur, axis, bound))
                out.append(cur)
            elif inside(prev):
                out.append(_intersect(prev, cur, axis, bound))
    return np.array(out, dtype=np.float64).reshape(-1, 2)


def _intersect(
    p: tuple[float, float], q: tuple[float, float], axis: int, bound: float
) -> tuple[float, float]:
    t = (bound - p[axis]) / (q[axis] - p[axis])
    x = p[0] + t * (q[0] - p[0])
    y = p[1] + t * (q[1] - p[1])
    return (bound, y) if axis == 0 else (x, bound)


def polygon_area(poly: np.ndarray) -> float:
    """Shoelace area of polygon [K, 2]."""
    if len(poly) < 3:
        return 0.0
    x, y = poly[:, 0], poly[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO uncompressed RLE of a boolean mask [H, W]: ``{"counts": [...], "size": [H, W]}``, runs in
    column-major order starting with a (possibly empty) run of zeros."""
    flat = np.asarray(mask, dtype=bool).flatten(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        runs = [0, *runs]
    return {"counts": [int(r) for r in runs], "size": [int(mask.shape[0]), int(mask.shape[1])]}


# ---------------------------------------------------------------- rendering


def _muted_colour(rng: np.random.Generator) -> np.ndarray:
    grey = rng.uniform(70, 180)
    return np.clip(grey + rng.uniform(-25, 25, size=3), 0, 255)


def background(rng: np.random.Generator, *, height: int, width: int) -> np.ndarray:
    """A muted textured background, uint8 [H, W, 3]: smooth noise, a linear gradient or stripes."""
    kind = int(rng.integers(3))
    a, b = _muted_colour(rng), _muted_colour(rng)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    if kind == 0:  # smooth noise: coarse random field upsampled, plus fine grain
        coarse = rng.uniform(0, 1, size=(max(2, height // 16), max(2, width // 16))).astype(np.float32)
        field = np.asarray(
            Image.fromarray(coarse, mode="F").resize((width, height), Image.Resampling.BILINEAR)
        )
        t = field.astype(np.float64)[..., None]
    elif kind == 1:  # gradient along a random direction
        theta = rng.uniform(0, 2 * math.pi)
        proj = xx * math.cos(theta) + yy * math.sin(theta)
        t = ((proj - proj.min()) / max(np.ptp(proj), 1e-6))[..., None]
    else:  # stripes with a random period and angle
        theta = rng.uniform(0, math.pi)
        period = rng.uniform(6, 24)
        proj = xx * math.cos(theta) + yy * math.sin(theta)
        t = (0.5 + 0.5 * np.sin(2 * math.pi * proj / period))[..., None]
    img = a * (1 - t) + b * t + rng.normal(0, 6, size=(height, width, 1))
    return np.clip(img, 0, 255).astype(np.uint8)


def _round_list(values: np.ndarray) -> list[float]:
    return [round(float(v), 2) for v in values]


def _place(
    rng: np.random.Generator, *, width: int, height: int, placed: list[tuple[float, float, float]]
) -> tuple[float, float, float, float, float]:
    """(cx, cy, rx, ry, angle) of one object: small, touching the border, overlapping or free."""
    side = min(width, height)
    small = rng.random() < 0.2
    s = max(8.0, side * rng.uniform(0.06, 0.10)) if small else side * rng.uniform(0.13, 0.40)
    aspect = rng.uniform(0.7, 1.4)
    rx, ry = s / 2 * math.sqrt(aspect), s / 2 / math.sqrt(aspect)
    r = max(rx, ry)
    mode = rng.random()
    if mode < 0.15:  # centre near a random edge so the shape is cut by the border
        edge = int(rng.integers(4))
        d = rng.uniform(-0.3, 0.4) * r
        along = rng.uniform(0, 1)
        cx, cy = [
            (d, along * height),
            (width - d, along * height),
            (along * width, d),
            (along * width, height - d),
        ][edge]
    elif mode < 0.40 and placed:  # partially overlapping a previous object
        px, py, pr = placed[int(rng.integers(len(placed)))]
        phi = rng.uniform(0, 2 * math.pi)
        dist = rng.uniform(0.5, 0.9) * (pr + r)
        cx, cy = px + dist * math.cos(phi), py + dist * math.sin(phi)
    else:
        cx = rng.uniform(min(r, width / 2), max(width - r, width / 2))
        cy = rng.uniform(min(r, height / 2), max(height - r, height / 2))
    return cx, cy, rx, ry, rng.uniform(-0.35, 0.35)


def render_image(
    rng: np.random.Generator, *, size: int, empty: bool, crowd: bool
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One synthetic image uint8 [H, W, 3] and its annotations (without ``id``/``image_id``).

    Each annotation has ``category_id``, ``bbox`` (xywh), ``area``, ``iscrowd`` and ``segmentation``
    (a polygon list, or an uncompressed RLE for the crowd cluster).
    """
    width = int(round(size * rng.uniform(0.8, 1.25) / 2) * 2)
    height = int(round(size * rng.uniform(0.8, 1.25) / 2) * 2)
    img = background(rng, height=height, width=width)
    objects: list[tuple[float, ShapeClass, np.ndarray, np.ndarray]] = []
    placed: list[tuple[float, float, float]] = []
    n = 0 if empty else int(rng.integers(1, 7))
    for _ in range(n):
        cls = CLASSES[int(rng.integers(len(CLASSES)))]
        cx, cy, rx, ry, angle = _place(rng, width=width, height=height, placed=placed)
        poly = shape_polygon(cls.shape, cx=cx, cy=cy, rx=rx, ry=ry, angle=angle)
        clipped = clip_polygon(poly, width=width, height=height)
        if (
            len(clipped) < 3
            or np.ptp(clipped[:, 0]) < 4
            or np.ptp(clipped[:, 1]) < 4
            or polygon_area(clipped) < 16
        ):
            continue  # mostly outside the image: neither drawn nor annotated
        placed.append((cx, cy, max(rx, ry)))
        objects.append((polygon_area(clipped), cls, poly, clipped))
    # Largest first so small objects are never hidden completely under big ones.
    objects.sort(key=lambda o: -o[0])
    canvas = Image.fromarray(img)
    draw = ImageDraw.Draw(canvas)
    anns: list[dict[str, Any]] = []
    for area, cls, poly, clipped in objects:
        colour = tuple(int(np.clip(c + rng.integers(-20, 21), 0, 255)) for c in cls.colour)
        draw.polygon([tuple(p) for p in poly.tolist()], fill=colour)
        x0, y0 = clipped.min(axis=0)
        x1, y1 = clipped.max(axis=0)
        anns.append(
            {
                "category_id": cls.id,
                "bbox": _round_list(np.array([x0, y0, x1 - x0, y1 - y0])),
                "area": round(area, 2),
                "iscrowd": 0,
                "segmentation": [_round_list(clipped.reshape(-1))],
            }
        )
    if crowd:
        anns.extend(_crowd_cluster(rng, draw, width=width, height=height))
    out = np.asarray(canvas, dtype=np.float64) + rng.normal(0, 3, size=(height, width, 3))
    return np.clip(out, 0, 255).astype(np.uint8), anns


def _crowd_cluster(
    rng: np.random.Generator, draw: ImageDraw.ImageDraw, *, width: int, height: int
) -> list[dict[str, Any]]:
    """Draw a tight cluster of small same-class shapes; annotate it as one ``iscrowd=1`` region."""
    cls = CLASSES[int(rng.integers(len(CLASSES)))]
    side = min(width, height)
    region = side * 0.3
    ox, oy = rng.uniform(0, width - region), rng.uniform(0, height - region)
    mask = Image.new("L", (width, height), 0)
    mdraw = ImageDraw.Draw(mask)
    for _ in range(int(rng.integers(4, 8))):
        r = max(3.0, side * rng.uniform(0.025, 0.04))
        cx, cy = ox + rng.uniform(r, region - r), oy + rng.uniform(r, region - r)
        poly = shape_polygon(cls.shape, cx=cx, cy=cy, rx=r, ry=r, angle=rng.uniform(-0.35, 0.35))
        pts = [tuple(p) for p in poly.tolist()]
        draw.polygon(pts, fill=cls.colour)
        mdraw.polygon(pts, fill=1)
    m = np.asarray(mask, dtype=bool)
    ys, xs = np.nonzero(m)
    if len(xs) == 0:
        return []
    x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    return [
        {
            "category_id": cls.id,
            "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
            "area": float(m.sum()),
            "iscrowd": 1,
            "segmentation": mask_to_rle(m),
        }
    ]


# ---------------------------------------------------------------- dataset


def _check_out(out: Path) -> None:
    """Refuse to write into a non-empty directory that is not an earlier synth output."""
    if not out.exists():
        return
    if not out.is_dir():
        raise DetopsError(f"synth output {out} exists and is not a directory")
    if not any(out.iterdir()):
        return
    for split in ("train", "val"):
        ann = out / "annotations" / f"instances_{split}.json"
        try:
            with open(ann, encoding="utf-8") as fh:
                if json.load(fh).get("info", {}).get("description", "").startswith(SYNTH_DESCRIPTION):
                    return
        except (OSError, ValueError, AttributeError):
            continue
    raise DetopsError(
        f"synth output {out} is not empty and holds no earlier synthetic dataset; pick another OUT"
    )


def synthesize(
    out: str | Path, *, train: int = 128, val: int = 32, size: int = 320, seed: int = 0, progress: bool = True
) -> SynthSummary:
    """Write the synthetic dataset to ``out`` (see the module docstring) and return a summary.

    ``train``/``val``: image counts; ``size``: nominal image side in pixels (actual sides vary in
    0.8-1.25x of it, independently, so images are not square); ``seed``: the only source of randomness.
    ``out`` must be absent, empty, or an earlier synth output (whose stale JPEGs are removed).
    """
    if train < 0 or val < 0 or train + val == 0:
        raise DetopsError(f"synth: --train {train} / --val {val}: need non-negative counts, not both zero")
    if size < 32:
        raise DetopsError(f"synth: --size {size} is too small; use at least 32 pixels")
    root = Path(out).expanduser()
    _check_out(root)
    counts = {"train": train, "val": val}
    images_n: dict[str, int] = {}
    anns_n: dict[str, int] = {}
    crowd_n: dict[str, int] = {}
    empty_n: dict[str, int] = {}
    next_image_id, next_ann_id = 1, 1
    for split_index, (split, n) in enumerate(counts.items()):
        img_dir = root / split
        img_dir.mkdir(parents=True, exist_ok=True)
        images: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        written: set[str] = set()
        for i in _progress(range(n), enabled=progress, desc=f"synth {split}"):
            rng = np.random.default_rng([seed, split_index, i])
            # Guarantee one empty and one crowd image per split once it is big enough to spare them.
            empty = (n >= 4 and i == n // 2) or rng.random() < 0.06
            crowd = not empty and ((n >= 4 and i == 1) or rng.random() < 0.04)
            pixels, anns = render_image(rng, size=size, empty=empty, crowd=crowd)
            image_id = next_image_id
            next_image_id += 1
            file_name = f"{image_id:012d}.jpg"
            # Plain write: the annotation file is written last (atomically), so an interrupted run never
            # leaves a dataset that looks complete.
            Image.fromarray(pixels).save(img_dir / file_name, "JPEG", quality=JPEG_QUALITY)
            written.add(file_name)
            images.append(
                {
                    "id": image_id,
                    "file_name": file_name,
                    "width": pixels.shape[1],
                    "height": pixels.shape[0],
                    "license": 1,
                }
            )
            for ann in anns:
                annotations.append({"id": next_ann_id, "image_id": image_id, **ann})
                next_ann_id += 1
        for stale in img_dir.glob("*.jpg"):
            if stale.name not in written:
                stale.unlink()
        doc = {
            "info": {
                "description": f"{SYNTH_DESCRIPTION} ({split}, seed={seed}, size={size})",
                "version": "1.0",
                "year": 2026,
                "contributor": "detops",
                "url": "",
                "date_created": "",
            },
            "licenses": [
                {"id": 1, "name": "CC0 1.0", "url": "https://creativecommons.org/publicdomain/zero/1.0/"}
            ],
            "images": images,
            "annotations": annotations,
            "categories": [{"id": c.id, "name": c.name, "supercategory": c.supercategory} for c in CLASSES],
        }
        with atomic_open(root / "annotations" / f"instances_{split}.json", "w") as fh:
            json.dump(doc, fh, sort_keys=True, separators=(",", ":"))
            fh.write("\n")
        images_n[split] = len(images)
        anns_n[split] = len(annotations)
        crowd_n[split] = sum(a["iscrowd"] for a in annotations)
        empty_n[split] = len(images) - len({a["image_id"] for a in annotations})
    return SynthSummary(root=root, images=images_n, annotations=anns_n, crowd=crowd_n, empty_images=empty_n)


def _progress(it: range, *, enabled: bool, desc: str) -> Any:
    if not enabled:
        return it
    from tqdm import tqdm

    # disable=None: a bar on a terminal, silence in logs and CI.
    return tqdm(it, desc=desc, unit="img", disable=None)

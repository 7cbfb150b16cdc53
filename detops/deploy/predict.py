"""Run a runner on image files: one annotated image per input and one COCO-style JSON of detections.

A file that cannot be decoded as an image is reported (one line naming it) and skipped; the others
are still processed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from detops.deploy.runners.base import Detections, Runner
from detops.errors import DetopsError
from detops.fileio import atomic_path, write_json

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass
class PredictReport:
    """What ``predict_files`` wrote and what it skipped (``(path, reason)`` pairs)."""

    images: list[Path] = field(default_factory=list)
    json_path: Path | None = None
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    detections: int = 0


def expand_inputs(inputs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files as given; directories as their image files (by suffix, sorted). A missing path is an error."""
    out: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            out += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            out.append(path)
        else:
            raise DetopsError(f"input not found: {path}")
    return out


def _colour(label: int) -> tuple[int, int, int]:
    """A fixed, distinguishable BGR colour per label."""
    rng = np.random.default_rng(label + 7)
    b, g, r = (int(v) for v in rng.integers(64, 256, size=3))
    return b, g, r


def draw_detections(
    image_rgb: np.ndarray, det: Detections, *, class_names: Sequence[str], score: float
) -> np.ndarray:
    """A BGR copy of ``image_rgb`` with each detection scoring at least ``score`` drawn: box, class, score."""
    canvas = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    thickness = max(1, round(min(canvas.shape[:2]) / 300))
    for box, s, label in zip(det.boxes, det.scores, det.labels, strict=True):
        if s < score:
            continue
        colour = _colour(int(label))
        x0, y0, x1, y1 = (int(round(float(v))) for v in box)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), colour, thickness)
        text = f"{class_names[int(label)]} {float(s):.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
        top = max(y0 - th - base, 0)
        cv2.rectangle(canvas, (x0, top), (x0 + tw, top + th + base), colour, -1)
        cv2.putText(canvas, text, (x0, top + th), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def _write_image(path: Path, bgr: np.ndarray) -> None:
    ok, encoded = cv2.imencode(path.suffix or ".jpg", bgr)
    if not ok:
        raise DetopsError(f"{path}: OpenCV could not encode the annotated image")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())


def predict_files(
    runner: Runner,
    inputs: Iterable[str | os.PathLike[str]],
    *,
    out_dir: str | os.PathLike[str],
    score: float = 0.3,
    on_skip: Callable[[str], None] | None = None,
) -> PredictReport:
    """Detect on every image of ``inputs``; write ``out_dir/<name>.jpg`` (or the input's suffix when
    OpenCV writes it) with boxes drawn and ``out_dir/detections.json``.

    The JSON is a COCO dataset dict: ``images`` (id, file_name, width, height), ``categories`` (the
    artifact's ids and names) and ``annotations`` with ``bbox`` xywh in original pixels and ``score``;
    only detections scoring at least ``score`` are kept. Unreadable files are skipped, each reported
    through ``on_skip`` as ``"error: cannot read image file PATH"``.
    """
    from detops.data.dataset import decode_image

    out = Path(out_dir)
    report = PredictReport()
    meta = runner.meta
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for path in expand_inputs(inputs):
        try:
            image = decode_image(path)
        except DetopsError as exc:
            report.skipped.append((path, str(exc)))
            if on_skip is not None:
                on_skip(f"error: {exc}")
            continue
        (det,) = runner([image])
        image_id = len(images) + 1
        images.append(
            {"id": image_id, "file_name": str(path), "width": image.shape[1], "height": image.shape[0]}
        )
        for box, s, cat in zip(
            det.boxes.tolist(), det.scores.tolist(), det.category_ids.tolist(), strict=True
        ):
            if s < score:
                continue
            x0, y0, x1, y1 = box
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(cat),
                    "bbox": [round(x0, 3), round(y0, 3), round(x1 - x0, 3), round(y1 - y0, 3)],
                    "area": round((x1 - x0) * (y1 - y0), 3),
                    "score": round(float(s), 5),
                    "iscrowd": 0,
                }
            )
        suffix = path.suffix.lower() if path.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp") else ".jpg"
        dst = out / f"{path.stem}{suffix}"
        if dst in report.images:  # two inputs with the same name from different folders
            dst = out / f"{path.stem}_{image_id}{suffix}"
        _write_image(dst, draw_detections(image, det, class_names=meta.class_names, score=score))
        report.images.append(dst)
    report.detections = len(annotations)
    if images:
        report.json_path = out / "detections.json"
        categories = [
            {"id": int(c), "name": n} for c, n in zip(meta.category_ids, meta.class_names, strict=True)
        ]
        write_json(report.json_path, {"images": images, "categories": categories, "annotations": annotations})
    return report

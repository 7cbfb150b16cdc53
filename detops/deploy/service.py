"""Detection as a service: encoded images in, one plain row of detections per image out.

What a served model (the registry's pyfunc detector, :mod:`detops.registry.pyfunc`) does with each
request, kept free of MLflow and pandas so it can be tested and timed alone:

* an entry is an encoded image file's content: ``bytes`` as read from the file, or the same bytes as
  a base64 string (what JSON over HTTP can carry; a ``data:image/...;base64,`` prefix is accepted);
* it is decoded exactly as ``detops predict`` reads a file (:func:`detops.data.dataset.decode_image`)
  and run through the same runner, one image at a time, so the detections equal ``detops predict``'s;
* each entry becomes one row (:data:`ROW_FIELDS`): ``boxes`` (list of ``[x0, y0, x1, y1]`` in the
  original image's pixels), ``scores`` (decreasing), ``labels`` (class names from the artifact's
  metadata), ``category_ids`` (the dataset's ids of those classes), and ``error``: ``None``, or for
  an entry that is no decodable image a one-line message naming its row (0-based position in the
  batch) with empty lists. One bad entry never fails the others.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

import numpy as np

from detops.deploy.runners.base import Detections, Runner
from detops.errors import DetopsError

ROW_FIELDS: tuple[str, ...] = ("boxes", "scores", "labels", "category_ids", "error")
"""The fields of one output row, in order."""

DEFAULT_SCORE = 0.3
"""Detections scoring below this are dropped unless the caller asks otherwise (``detops predict``'s
default ``--score``)."""


def entry_bytes(value: Any, *, row: int) -> bytes:
    """The encoded image an entry holds: ``bytes``-like as is, a string base64-decoded (strictly).

    Raises a one-line ``DetopsError`` naming ``row`` for anything else.
    """
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, np.bytes_):
        return bytes(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("data:") and "," in text:  # a data URL: data:image/png;base64,....
            text = text.split(",", 1)[1]
        try:
            return base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            raise DetopsError(f"row {row}: not a base64 string (an encoded image is expected)") from None
    kind = (
        "missing" if value is None or (isinstance(value, float) and np.isnan(value)) else type(value).__name__
    )
    raise DetopsError(f"row {row}: expected an encoded image (bytes or a base64 string), got {kind}")


def decode_entry(value: Any, *, row: int) -> np.ndarray:
    """uint8 RGB [H, W, 3] of one entry; a one-line ``DetopsError`` naming ``row`` when it is none."""
    from detops.data.dataset import decode_image_bytes

    return decode_image_bytes(entry_bytes(value, row=row), what=f"row {row}")


def detection_row(det: Detections, *, class_names: Sequence[str], score: float) -> dict[str, Any]:
    """One output row (see the module docstring) of the detections scoring at least ``score``, as plain
    Python lists and floats (JSON-ready)."""
    keep = det.scores >= score
    return {
        "boxes": det.boxes[keep].astype(float).tolist(),
        "scores": det.scores[keep].astype(float).tolist(),
        "labels": [class_names[int(i)] for i in det.labels[keep]],
        "category_ids": [int(c) for c in det.category_ids[keep]],
        "error": None,
    }


def error_row(message: str) -> dict[str, Any]:
    """The row of an entry that could not be used: empty detections and ``error``."""
    return {"boxes": [], "scores": [], "labels": [], "category_ids": [], "error": message}


def detect_entries(
    runner: Runner, entries: Sequence[Any], *, score: float = DEFAULT_SCORE
) -> list[dict[str, Any]]:
    """One row per entry (see the module docstring): each decodable image through ``runner`` at batch 1,
    each other entry an error row naming its position. ``score`` must be within 0..1."""
    if not 0.0 <= score <= 1.0:
        raise DetopsError(f"score must be within 0..1, got {score}")
    names = runner.meta.class_names
    rows: list[dict[str, Any]] = []
    for i, value in enumerate(entries):
        try:
            image = decode_entry(value, row=i)
        except DetopsError as exc:
            rows.append(error_row(str(exc)))
            continue
        (det,) = runner([image])
        rows.append(detection_row(det, class_names=names, score=score))
    return rows

"""The checks a COCO annotation file must pass, as data: one table for ``data validate`` and training.

``data validate`` turns every ``Check`` into a Great Expectations expectation (``detops.data.validate``);
training, checkpoint evaluation and ``evaluate --annotations`` run the same rows directly on the same
pandas frames (``detops.data.validate_frames``) with ``failing_rows``, which follows GE's column-map
semantics (nulls are skipped, except by ``not_null``), without importing GE (6-7 s). Both report a
failure with the check's ``description``, so the wording is the same wherever a file is refused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from detops.errors import DetopsError

TABLES = ("images", "annotations", "categories")
BBOX_TOLERANCE = 1.0
"""Pixels a box may leave its image by (float rounding in real COCO files)."""


@dataclass(frozen=True)
class Check:
    """One column check of one table.

    ``kind``: ``"not_null"``, ``"unique"`` (among non-null values), ``"between"`` (``min_value`` /
    ``max_value``, ``strict_min``) or ``"in_set"`` (``value_set``). ``field``: the annotation-file
    field an error message quotes (``column`` may be derived from it, e.g. ``bbox_w`` from ``bbox``).
    """

    table: str
    column: str
    kind: str
    description: str
    field: str
    min_value: float | None = None
    max_value: float | None = None
    strict_min: bool = False
    value_set: tuple[Any, ...] | None = None


def checks(table: str, *, category_ids: Sequence[int], tolerance: float = BBOX_TOLERANCE) -> list[Check]:
    """The checks of ``table`` ("images", "annotations" or "categories"), in reporting order."""

    def present(column: str, what: str, field: str | None = None) -> Check:
        return Check(table, column, "not_null", f"{what} present", field or column)

    def positive(column: str, what: str, field: str | None = None) -> Check:
        return Check(table, column, "between", f"{what} > 0", field or column, min_value=0, strict_min=True)

    def true(column: str, what: str, field: str) -> Check:
        return Check(table, column, "in_set", what, field, value_set=(True,))

    def unique(what: str) -> Check:
        return Check(table, "id", "unique", f"{what} ids unique", "id")

    if table == "images":
        return [
            present("id", "image id (a number)"),
            present("file_name", "image file_name (a non-empty string)"),
            present("width", "image width (a number)"),
            present("height", "image height (a number)"),
            unique("image"),
            positive("width", "image width"),
            positive("height", "image height"),
            true("file_present", "image file present", "file_name"),
            true("decodable", "image file decodable", "file_name"),
            true("size_matches", "decoded image size equals declared width/height", "file_name"),
        ]
    if table == "annotations":
        return [
            present("id", "annotation id (a number)"),
            present("image_id", "annotation image_id (a number)"),
            present("category_id", "annotation category_id (a number)"),
            present("area", "annotation area (a number)"),
            present("iscrowd", "annotation iscrowd"),
            unique("annotation"),
            true("image_declared", "annotation image_id declared in images", "image_id"),
            Check(
                table,
                "category_id",
                "in_set",
                "annotation category_id declared in categories",
                "category_id",
                value_set=tuple(category_ids),
            ),
            true("bbox_well_formed", "bbox is a list of 4 numbers", "bbox"),
            true("bbox_finite", "bbox values finite", "bbox"),
            positive("bbox_w", "bbox width", "bbox"),
            positive("bbox_h", "bbox height", "bbox"),
            Check(
                table,
                "bbox_outside_by",
                "between",
                f"bbox inside its image (tolerance {tolerance:g} px)",
                "bbox",
                max_value=tolerance,
            ),
            positive("area", "annotation area"),
            Check(table, "iscrowd", "in_set", "iscrowd in {0, 1}", "iscrowd", value_set=(0, 1)),
        ]
    if table == "categories":
        return [
            present("id", "category id (a number)"),
            present("name", "category name (a non-empty string)"),
            unique("category"),
        ]
    raise ValueError(f"unknown table {table!r}")


def failing_rows(df: pd.DataFrame, check: Check) -> np.ndarray:
    """bool [len(df)]: the rows of ``df`` that fail ``check`` (GE column-map semantics)."""
    col = df[check.column]
    null = col.isna().to_numpy(dtype=bool)
    if check.kind == "not_null":
        return null
    if check.kind == "unique":
        return (col.duplicated(keep=False).to_numpy(dtype=bool)) & ~null
    if check.kind == "in_set":
        assert check.value_set is not None
        return ~col.isin(list(check.value_set)).to_numpy(dtype=bool) & ~null
    if check.kind == "between":
        values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
        bad = np.zeros(len(df), dtype=bool)
        with np.errstate(invalid="ignore"):
            if check.min_value is not None:
                bad |= values <= check.min_value if check.strict_min else values < check.min_value
            if check.max_value is not None:
                bad |= values > check.max_value
        return bad & ~null
    raise ValueError(f"unknown check kind {check.kind!r}")


def frames(
    data: dict[str, Any], *, file: Path, image_dir: Path | None, sample_images: int | None = 0, seed: int = 0
) -> dict[str, pd.DataFrame]:
    """The three frames of one annotation file (see ``detops.data.validate_frames``); with
    ``image_dir`` None, file presence is not checked; ``sample_images`` images are decoded."""
    from detops.data.validate_frames import annotations_frame, categories_frame, images_frame

    images = images_frame(data, file=file, image_dir=image_dir, sample_images=sample_images, seed=seed)
    return {
        "images": images,
        "annotations": annotations_frame(data, file=file, images=images),
        "categories": categories_frame(data, file=file),
    }


def category_ids(categories: pd.DataFrame) -> list[int]:
    """The integral category ids declared in the categories frame, sorted."""
    return sorted({int(v) for v in categories["id"].dropna() if float(v).is_integer()})


def _shown(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return repr(value)


def check_annotations(
    data: dict[str, Any],
    *,
    file: Path,
    image_dir: Path | None,
    optional: Sequence[str] = (),
    tolerance: float = BBOX_TOLERANCE,
) -> None:
    """Raise ``DetopsError`` (one line) at the first check of ``checks`` that ``data`` fails.

    The message names the file, the check's description (as ``data validate`` reports it), how many
    rows fail, and the first failing row's id and raw field value. Images are not decoded here (the
    loader refuses an undecodable or mis-sized image when it reads it). ``optional``: annotation
    fields whose absence is allowed (``evaluate --annotations`` fills ``area`` and ``iscrowd``).
    """
    for key in TABLES:
        if key == "annotations" and key not in data:
            continue
        if not isinstance(data.get(key), list):
            raise DetopsError(f"annotations {file}: field {key!r} is missing or not a list")
    tables = frames({"annotations": [], **data}, file=file, image_dir=image_dir)
    ids = category_ids(tables["categories"])
    for table in ("categories", "images", "annotations"):
        df = tables[table]
        for check in checks(table, category_ids=ids, tolerance=tolerance):
            if check.kind == "not_null" and check.field in optional:
                continue
            bad = np.flatnonzero(failing_rows(df, check))
            if not len(bad):
                continue
            row = (data.get(table) or [])[int(bad[0])]
            where = f"{table}[{int(bad[0])}]"
            if "id" in row:
                where += f" (id {_shown(row['id'])})"
            value = f"{check.field} {_shown(row[check.field])}" if check.field in row else f"no {check.field}"
            raise DetopsError(
                f"annotations {file}: check '{check.description}' fails for {len(bad)} of {len(df)} "
                f"{table}; first {where}: {value}"
            )

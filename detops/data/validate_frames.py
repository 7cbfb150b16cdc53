"""COCO annotations -> the pandas frames the validation suite runs on.

Everything here is vectorised over rows except the slow paths that only bad data takes (a malformed
``bbox`` entry) and image decoding, which is sampled. Derived columns are named for what they hold;
``None`` in a derived boolean means "not checked" (e.g. an image that was not sampled for decoding),
and Great Expectations skips nulls in the column-map expectations that read them.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from detops.errors import DetopsError

IMAGE_FIELDS = ("id", "file_name", "width", "height")
ANNOTATION_FIELDS = ("id", "image_id", "category_id", "bbox", "area", "iscrowd")
CATEGORY_FIELDS = ("id", "name")


def _records(data: dict[str, Any], key: str, fields: tuple[str, ...], file: Path) -> pd.DataFrame:
    """The list ``data[key]`` as a frame with exactly ``fields`` (absent keys become nulls)."""
    rows = data[key]
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DetopsError(
                f"{file} is not a COCO annotation file: {key}[{i}] is {type(row).__name__}, not an object"
            )
    if not rows:
        return pd.DataFrame({f: pd.Series(dtype=object) for f in fields})
    return pd.DataFrame.from_records(rows, columns=list(fields))


def _numeric(series: pd.Series) -> pd.Series:
    """Numbers stay numbers; anything else (missing, strings, lists, booleans) becomes NaN."""
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return series.astype(np.float64)
    ok = series.map(lambda v: isinstance(v, int | float) and not isinstance(v, bool))
    return pd.to_numeric(series.where(ok), errors="coerce").astype(np.float64)


def _bbox_columns(bbox: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``bbox`` entries -> (xywh float [N, 4] with NaN rows where malformed, well-formed bool [N])."""
    # One cheap type test per row (tens of ms for COCO val), then a single array conversion.
    ok = bbox.map(
        lambda b: (
            isinstance(b, list | tuple)
            and len(b) == 4
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in b)
        )
    ).to_numpy(dtype=bool)
    out = np.full((len(bbox), 4), np.nan)
    if ok.any():
        out[ok] = np.asarray(bbox[ok].tolist(), dtype=np.float64)
    return out, ok


def images_frame(
    data: dict[str, Any], *, file: Path, image_dir: Path | None, sample_images: int | None, seed: int = 0
) -> pd.DataFrame:
    """One row per image: ``id``, ``file_name``, ``width``, ``height`` (numeric, NaN if missing or not a
    number), and derived ``file_present`` (bool; None throughout when ``image_dir`` is None: not
    checked), ``decodable`` and ``size_matches`` (bool or None when the image was not decoded).
    ``sample_images``: how many present images to decode (None: all)."""
    raw = _records(data, "images", IMAGE_FIELDS, file)
    df = pd.DataFrame(
        {
            "id": _numeric(raw["id"]),
            "file_name": raw["file_name"].where(
                raw["file_name"].map(lambda v: isinstance(v, str) and v != "")
            ),
            "width": _numeric(raw["width"]),
            "height": _numeric(raw["height"]),
        }
    )
    if image_dir is None:  # ground truth without images (``evaluate --annotations``)
        for column in ("file_present", "decodable", "size_matches"):
            df[column] = pd.Series([None] * len(df), dtype=object)
        return df
    try:
        listed = set(os.listdir(image_dir))
    except OSError:
        listed = set()
    names = df["file_name"]
    flat = names.map(lambda v: isinstance(v, str) and "/" not in v and os.sep not in v)
    present = names.isin(listed) & flat
    nested = names.notna() & ~flat
    if nested.any():  # file names with sub-directories: stat them one by one
        present[nested] = names[nested].map(lambda v: (image_dir / v).is_file())
    df["file_present"] = present.astype(bool)
    candidates = np.flatnonzero(df["file_present"].to_numpy())
    if sample_images is not None and sample_images < len(candidates):
        rng = np.random.default_rng(seed)
        candidates = np.sort(rng.choice(candidates, size=max(sample_images, 0), replace=False))
    decodable: list[bool | None] = [None] * len(df)
    matches: list[bool | None] = [None] * len(df)
    if len(candidates):
        with ThreadPoolExecutor(max_workers=4) as pool:
            sizes = list(pool.map(lambda i: _decoded_size(image_dir / names.iloc[i]), candidates))
        for i, size in zip(candidates, sizes, strict=True):
            decodable[i] = size is not None
            if size is not None:
                matches[i] = size == (df["width"].iloc[i], df["height"].iloc[i])
    df["decodable"] = pd.Series(decodable, dtype=object)
    df["size_matches"] = pd.Series(matches, dtype=object)
    return df


def _decoded_size(path: Path) -> tuple[int, int] | None:
    """(width, height) after a full decode (a truncated JPEG fails in ``load``), None if undecodable."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            return img.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def annotations_frame(data: dict[str, Any], *, file: Path, images: pd.DataFrame) -> pd.DataFrame:
    """One row per annotation: ``id``, ``image_id``, ``category_id``, ``area`` (numeric), ``iscrowd``
    (raw), ``bbox_x/y/w/h``, and derived ``bbox_well_formed``, ``bbox_finite``, ``image_declared`` and
    ``bbox_outside_by`` (pixels by which the box leaves its image; NaN when unknown)."""
    raw = _records(data, "annotations", ANNOTATION_FIELDS, file)
    xywh, well_formed = _bbox_columns(raw["bbox"])
    df = pd.DataFrame(
        {
            "id": _numeric(raw["id"]),
            "image_id": _numeric(raw["image_id"]),
            "category_id": _numeric(raw["category_id"]),
            "area": _numeric(raw["area"]),
            "iscrowd": raw["iscrowd"],
            "bbox_x": xywh[:, 0],
            "bbox_y": xywh[:, 1],
            "bbox_w": xywh[:, 2],
            "bbox_h": xywh[:, 3],
        }
    )
    finite = np.isfinite(xywh).all(axis=1)
    df["bbox_well_formed"] = well_formed
    df["bbox_finite"] = pd.Series(np.where(well_formed, finite, None), dtype=object)
    known = images.dropna(subset=["id"]).drop_duplicates("id").set_index("id")
    df["image_declared"] = df["image_id"].isin(known.index).to_numpy()
    width = df["image_id"].map(known["width"]).to_numpy(dtype=np.float64)
    height = df["image_id"].map(known["height"]).to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        outside = np.max(
            np.stack(
                [-xywh[:, 0], -xywh[:, 1], xywh[:, 0] + xywh[:, 2] - width, xywh[:, 1] + xywh[:, 3] - height]
            ),
            axis=0,
        )
    outside[~finite] = np.nan
    df["bbox_outside_by"] = outside
    return df


def categories_frame(data: dict[str, Any], *, file: Path) -> pd.DataFrame:
    """One row per category: ``id`` (numeric) and ``name`` (non-empty string or null)."""
    raw = _records(data, "categories", CATEGORY_FIELDS, file)
    return pd.DataFrame(
        {
            "id": _numeric(raw["id"]),
            "name": raw["name"].where(raw["name"].map(lambda v: isinstance(v, str) and v != "")),
        }
    )

"""COCO bounding-box evaluation with pycocotools (the reference implementation).

``backend="faster"`` runs the same protocol through faster-coco-eval's C++ implementation; the
test suite holds its statistics equal to pycocotools' on the same inputs (``bench/eval_bench.py``
times both).

    >>> stats = evaluate_files(annotations="val.json", predictions="dets.json")
    >>> stats["AP"], stats["AP50"], stats["per_class"]["person"]

A *results list* is the COCO detection results format: one dict per detection with ``image_id``,
``category_id`` (the dataset's own ids), ``bbox`` as ``[x, y, w, h]`` in original image pixels and
``score``. Every function returns the same *stats dict*: the 12 standard statistics under their usual
names (fractions in 0..1, as pycocotools reports them; -1 where a statistic is undefined), ``stats``
(the 12 values in pycocotools order) and ``per_class`` (category name -> AP 50:95, ``None`` for a
class with no ground truth).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from detops.errors import DetopsError

STAT_NAMES: tuple[str, ...] = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
)
STAT_LABELS: tuple[str, ...] = (
    "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.75      | area=   all | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.50:0.95 | area= small | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.50:0.95 | area= large | maxDets=100 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets= 10 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area= small | maxDets=100 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ]",
)


def load_json(path: str | os.PathLike[str], *, what: str) -> Any:
    """Parse the JSON file ``path``; a missing or malformed file is a one-line ``DetopsError``."""
    p = Path(path)
    if not p.is_file():
        raise DetopsError(f"{what} file not found: {p}")
    try:
        with open(p) as fh:
            return json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DetopsError(f"{what} file {p} is not valid JSON: {exc}") from None


def _normalised_ground_truth(gt: dict[str, Any], *, source: str) -> dict[str, Any]:
    """A copy of a COCO ground-truth dict with the fields COCOeval reads filled in."""
    for key in ("images", "annotations", "categories"):
        if not isinstance(gt.get(key), list):
            raise DetopsError(f"annotations {source}: field {key!r} is missing or not a list")
    gt = copy.copy(gt)
    anns = []
    for ann in gt["annotations"]:
        ann = dict(ann)
        ann.setdefault("iscrowd", 0)
        if "area" not in ann:
            ann["area"] = float(ann["bbox"][2]) * float(ann["bbox"][3])
        anns.append(ann)
    gt["annotations"] = anns
    # pycocotools' loadRes reads these keys unconditionally in some releases.
    gt.setdefault("info", {})
    gt.setdefault("licenses", [])
    return gt


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _field_problem(det: dict[str, Any]) -> tuple[str, str] | None:
    """(field, what it must be) for the first ill-typed field of one detection, else None."""
    for key in ("image_id", "category_id"):
        value = det[key]
        if not (isinstance(value, str) or _is_number(value)):
            return key, "a number (an id of the annotations)"
    box = det["bbox"]
    if not (isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box)):
        return "bbox", "a list of 4 finite numbers [x, y, w, h]"
    if not _is_number(det["score"]):
        return "score", "a finite number"
    return None


def check_results(gt: dict[str, Any], results: list[dict[str, Any]], *, source: str) -> None:
    """Raise ``DetopsError`` when ``results`` name images or categories absent from ``gt``, or lack fields."""
    if not isinstance(results, list):
        raise DetopsError(
            f"predictions {source}: expected a JSON list of detections, got {type(results).__name__}"
        )
    image_ids = {img["id"] for img in gt["images"]}
    cat_ids = {cat["id"] for cat in gt["categories"]}
    for i, det in enumerate(results):
        if not isinstance(det, dict):
            raise DetopsError(
                f"predictions {source}: detection {i} is a JSON {type(det).__name__}, not an object"
            )
        missing = [k for k in ("image_id", "category_id", "bbox", "score") if k not in det]
        if missing:
            raise DetopsError(f"predictions {source}: detection {i} lacks field(s) {', '.join(missing)}")
        problem = _field_problem(det)
        if problem is not None:
            field, expected = problem
            raise DetopsError(
                f"predictions {source}: detection {i} field {field!r} must be {expected}, got {det[field]!r}"
            )
    unknown_images = sorted({det["image_id"] for det in results} - image_ids, key=str)
    if unknown_images:
        shown = ", ".join(map(str, unknown_images[:5]))
        more = f" (and {len(unknown_images) - 5} more)" if len(unknown_images) > 5 else ""
        raise DetopsError(
            f"predictions {source}: {len(unknown_images)} image_id value(s) not in the annotations: {shown}{more}"
        )
    unknown_cats = sorted({det["category_id"] for det in results} - cat_ids, key=str)
    if unknown_cats:
        raise DetopsError(
            f"predictions {source}: category_id value(s) not in the annotations: "
            f"{', '.join(map(str, unknown_cats[:5]))}"
        )


def evaluate_results(
    gt: dict[str, Any],
    results: list[dict[str, Any]],
    *,
    gt_source: str = "<dict>",
    results_source: str = "<list>",
    backend: str = "pycocotools",
) -> dict[str, Any]:
    """COCO bbox evaluation of a results list against a ground-truth dict; returns the stats dict.

    Args:
        gt: COCO annotations dict (``images``, ``annotations``, ``categories``).
        results: COCO results list (see the module docstring).
        gt_source, results_source: names used in error messages (usually the file paths).
        backend: ``"pycocotools"`` (the reference) or ``"faster"`` (faster-coco-eval).
    """
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    elif backend == "faster":
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as COCOeval
    else:
        raise DetopsError(f"unknown evaluation backend {backend!r}; use 'pycocotools' or 'faster'")

    gt = _normalised_ground_truth(gt, source=gt_source)
    check_results(gt, results, source=results_source)
    names = {cat["id"]: cat.get("name", str(cat["id"])) for cat in gt["categories"]}
    if not results:
        # pycocotools cannot load an empty results list; nothing detected means zero precision/recall.
        stats = [0.0] * 12
        return _stats_dict(stats, {names[c]: (0.0 if _has_gt(gt, c) else None) for c in names})

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [float(s) for s in ev.stats]
    # precision: [T iou thresholds, R recall points, K categories, A areas, M maxDets]; area "all",
    # maxDets 100 are index 0 and -1, as in summarize() for the headline AP.
    precision = ev.eval["precision"]
    per_class: dict[str, float | None] = {}
    for k, cat_id in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        per_class[names[cat_id]] = float(np.mean(p)) if p.size else None
    return _stats_dict(stats, per_class)


def _has_gt(gt: dict[str, Any], cat_id: int) -> bool:
    return any(a["category_id"] == cat_id and not a.get("iscrowd", 0) for a in gt["annotations"])


def _stats_dict(stats: list[float], per_class: dict[str, float | None]) -> dict[str, Any]:
    out: dict[str, Any] = dict(zip(STAT_NAMES, stats, strict=True))
    out["stats"] = list(stats)
    out["per_class"] = per_class
    return out


def evaluate_files(
    *,
    annotations: str | os.PathLike[str],
    predictions: str | os.PathLike[str],
    backend: str = "pycocotools",
) -> dict[str, Any]:
    """Evaluate a COCO results JSON file against a COCO annotations JSON file; returns the stats dict
    (``backend`` as in ``evaluate_results``)."""
    from detops.data.checks import check_annotations

    gt = load_json(annotations, what="annotations")
    results = load_json(predictions, what="predictions")
    if not isinstance(gt, dict):
        raise DetopsError(f"annotations {annotations}: expected a JSON object at top level")
    # The checks ``data validate`` runs, minus image files (none here) and the two fields COCOeval
    # can default (``area`` from the box, ``iscrowd`` 0).
    check_annotations(gt, file=Path(annotations), image_dir=None, optional=("area", "iscrowd"))
    return evaluate_results(
        gt, results, gt_source=str(annotations), results_source=str(predictions), backend=backend
    )


def format_stats(stats: dict[str, Any]) -> str:
    """The 12 statistics in pycocotools' layout (and, when the stats carry it, the number of predicted
    boxes dropped for non-finite coordinates) followed by a per-class AP table, as printable text."""
    lines = [f" {label} = {value:.3f}" for label, value in zip(STAT_LABELS, stats["stats"], strict=True)]
    if "dropped_nonfinite" in stats:
        lines.append(f" predicted boxes dropped for non-finite coordinates: {stats['dropped_nonfinite']}")
    per_class = stats.get("per_class") or {}
    if per_class:
        width = max(8, *(len(n) for n in per_class))
        lines.append("")
        lines.append(f" {'class':<{width}}  AP50:95")
        for name, ap in per_class.items():
            lines.append(f" {name:<{width}}  {'   n/a' if ap is None else f'{ap:7.3f}'}")
    return "\n".join(lines)

"""The end-of-training evaluation that tracking logs: the best checkpoint's 12 COCO statistics and
per-class AP on the validation split, and its precision-recall curve at IoU 0.5."""

from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path
from typing import Any

import numpy as np


def pr_curve_at_iou(
    precision: np.ndarray, *, iou_thresholds: np.ndarray, recall_thresholds: np.ndarray, iou: float = 0.5
) -> tuple[list[float], list[float]]:
    """(recall points, precision) at IoU ``iou`` from pycocotools' accumulated ``eval['precision']``.

    ``precision`` has shape [T iou thresholds, R recall points, K classes, A areas, M max-dets]; the
    curve is area "all" (index 0) at the largest max-dets (index -1), averaged over the classes that
    have a value (> -1) at each recall point; recall points where no class has one are left out."""
    t = int(np.argmin(np.abs(np.asarray(iou_thresholds) - iou)))
    if not np.isclose(iou_thresholds[t], iou):
        raise ValueError(f"IoU {iou} is not one of the evaluated thresholds {list(iou_thresholds)}")
    table = np.asarray(precision)[t, :, :, 0, -1]  # [R, K]
    recall_out: list[float] = []
    precision_out: list[float] = []
    for r, row in zip(recall_thresholds, table, strict=True):
        valid = row[row > -1]
        if valid.size:
            recall_out.append(float(r))
            precision_out.append(float(valid.mean()))
    return recall_out, precision_out


def coco_precision(gt: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """pycocotools' accumulated bbox evaluation: ``precision`` [T,R,K,A,M], ``iou_thresholds``,
    ``recall_thresholds``."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from detops.evaluation import _normalised_ground_truth

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = _normalised_ground_truth(gt, source="<ground truth>")
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
    return {
        "precision": np.asarray(ev.eval["precision"]),
        "iou_thresholds": np.asarray(ev.params.iouThrs),
        "recall_thresholds": np.asarray(ev.params.recThrs),
    }


def final_evaluation(
    checkpoint: str | Path,
    *,
    data_root: str | Path,
    split: str = "val",
    img_size: int | None = None,
    batch_size: int = 8,
) -> dict[str, Any]:
    """The stats dict of ``detops.evaluation`` for ``checkpoint`` on ``split`` (on the CPU), plus
    ``pr_recall`` / ``pr_precision`` (the IoU 0.5 curve; empty lists when nothing was detected)."""
    import torch

    import models
    from detops.data.dataset import CocoDetection
    from detops.data.loader import build_loader
    from detops.data.transforms import eval_pipeline
    from detops.engine.inference import load_model
    from detops.engine.loop import predict
    from detops.evaluation import evaluate_results

    model, post, ckpt = load_model(checkpoint, device="cpu")
    variant = models.get_variant(ckpt["variant"])
    size = img_size or int(ckpt.get("img_size") or variant.input_size)
    dataset = CocoDetection.from_root(
        data_root, split=split, transform=eval_pipeline(size=size, pixel_scale=variant.pixel_scale)
    )
    loader = build_loader(dataset, batch_size=batch_size, shuffle=False, workers=0, seed=0)
    results = predict(
        model, post, loader, label_to_category_id=dataset.label_to_category_id, device=torch.device("cpu")
    )
    stats = evaluate_results(dataset.coco, results, gt_source=str(dataset.annotation_file))
    recall: list[float] = []
    precision: list[float] = []
    if results:
        acc = coco_precision(dataset.coco, results)
        recall, precision = pr_curve_at_iou(
            acc["precision"], iou_thresholds=acc["iou_thresholds"], recall_thresholds=acc["recall_thresholds"]
        )
    return {**stats, "pr_recall": recall, "pr_precision": precision}

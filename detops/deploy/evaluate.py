"""COCO evaluation of any artifact through its runner, with the same scoring code as checkpoints.

Detections become a COCO results list exactly as the engine's ``predict`` writes it (xywh rounded to
3 decimals, scores to 5, non-finite boxes dropped) and go through ``detops.evaluation.evaluate_results``.
With a reference checkpoint the same images are scored through the ``torch`` runner at the artifact's
input size, and ``delta`` holds artifact minus reference for each of the 12 statistics.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

from detops.deploy.runners.base import Detections, Runner, load_runner
from detops.errors import DetopsError
from detops.evaluation import STAT_NAMES, evaluate_results


def results_list(image_ids: Sequence[Any], detections: Sequence[Detections]) -> list[dict[str, Any]]:
    """COCO results (``image_id``, ``category_id``, ``bbox`` xywh, ``score``) of per-image detections."""
    results: list[dict[str, Any]] = []
    for image_id, det in zip(image_ids, detections, strict=True):
        xyxy = det.boxes.astype("float64")
        for (x0, y0, x1, y1), score, cat in zip(
            xyxy.tolist(), det.scores.tolist(), det.category_ids.tolist(), strict=True
        ):
            box = [x0, y0, x1 - x0, y1 - y0]
            if not all(math.isfinite(v) for v in box):
                continue
            results.append(
                {
                    "image_id": image_id,
                    "category_id": int(cat),
                    "bbox": [round(v, 3) for v in box],
                    "score": round(float(score), 5),
                }
            )
    return results


def evaluate_runner(
    runner: Runner, *, data_root: str | os.PathLike[str], split: str = "val", batch_size: int = 8
) -> dict[str, Any]:
    """COCO stats dict (see ``detops.evaluation``) of ``runner`` on ``split`` of ``data_root``, plus
    ``dropped_nonfinite``: predicted boxes left out for non-finite coordinates.

    The dataset's categories must be the artifact's (same ids, ascending); images are read at their
    original sizes and batched ``batch_size`` at a time (a fixed-batch graph uses its own batch).
    """
    from detops.data.dataset import CocoDetection

    dataset = CocoDetection.from_root(data_root, split=split, transform=None)
    expected = list(runner.meta.category_ids)
    if dataset.label_to_category_id != expected:
        raise DetopsError(
            f"annotations {dataset.annotation_file}: category ids {dataset.label_to_category_id} differ from "
            f"the artifact's {expected}"
        )
    step = runner.meta.batch or batch_size
    detections: list[Detections] = []
    image_ids: list[Any] = []
    for start in range(0, len(dataset), step):
        samples = [dataset[i] for i in range(start, min(start + step, len(dataset)))]
        detections += runner([s["image"] for s in samples])
        image_ids += [s["image_id"] for s in samples]
    results = results_list(image_ids, detections)
    stats = evaluate_results(
        dataset.coco, results, gt_source=str(dataset.annotation_file), results_source="<predictions>"
    )
    # Not silent: how many predicted boxes ``results_list`` had to leave out as non-finite.
    stats["dropped_nonfinite"] = sum(len(d.scores) for d in detections) - len(results)
    return stats


def stat_delta(stats: dict[str, Any], reference: dict[str, Any]) -> dict[str, float]:
    """Artifact minus reference for each of the 12 COCO statistics."""
    return {k: float(stats[k]) - float(reference[k]) for k in STAT_NAMES}


def evaluate_artifact(
    artifact: str | os.PathLike[str],
    *,
    backend: str,
    data_root: str | os.PathLike[str],
    split: str = "val",
    reference: str | os.PathLike[str] | None = None,
    device: str | None = None,
    batch_size: int = 8,
    threads: int | None = None,
) -> dict[str, Any]:
    """Stats dict of ``artifact`` on ``backend`` plus ``backend``, ``artifact``, ``split`` and, with
    ``reference`` (a checkpoint), ``reference`` (its stats dict) and ``delta`` (artifact minus
    reference). ``device``: see ``load_runner`` (``None``: the backend's own; the reference runs on
    ``device`` or the CPU)."""
    runner = load_runner(artifact, backend=backend, device=device, threads=threads)
    stats = evaluate_runner(runner, data_root=data_root, split=split, batch_size=batch_size)
    out: dict[str, Any] = {**stats, "backend": backend, "artifact": str(artifact), "split": split}
    if reference is not None:
        ref_runner = load_runner(
            reference, backend="torch", device=device, threads=threads, input_size=runner.meta.input_size
        )
        if ref_runner.meta.variant != runner.meta.variant:
            raise DetopsError(
                f"--reference {reference}: variant {ref_runner.meta.variant!r} differs from the artifact's "
                f"{runner.meta.variant!r}"
            )
        ref = evaluate_runner(ref_runner, data_root=data_root, split=split, batch_size=batch_size)
        out["reference"] = {k: ref[k] for k in (*STAT_NAMES, "stats", "per_class")}
        out["reference_artifact"] = str(reference)
        out["delta"] = stat_delta(stats, ref)
    return out


def evaluate_backends(
    artifact: str | os.PathLike[str],
    *,
    backends: Sequence[str],
    data_root: str | os.PathLike[str],
    split: str = "val",
    reference: str | os.PathLike[str] | None = None,
    device: str | None = None,
    batch_size: int = 8,
) -> dict[str, dict[str, Any]]:
    """``evaluate_artifact`` of ``artifact`` on each of ``backends`` ({backend: stats}); the reference
    checkpoint is scored once and every backend gets its ``reference`` and ``delta``. Each backend's
    mAP is its own figure (OpenVINO may compute in bf16 on CPUs with AMX)."""
    out: dict[str, dict[str, Any]] = {}
    for i, backend in enumerate(backends):
        stats = evaluate_artifact(
            artifact,
            backend=backend,
            data_root=data_root,
            split=split,
            reference=reference if i == 0 else None,  # the first backend scores the checkpoint
            device=device,
            batch_size=batch_size,
        )
        if reference is not None and i > 0:
            first = out[backends[0]]
            stats = {
                **stats,
                "reference": first["reference"],
                "reference_artifact": first["reference_artifact"],
                "delta": stat_delta(stats, first["reference"]),
            }
        out[backend] = stats
    return out

"""Exact greedy non-maximum suppression, vectorised (no per-box Python loop), plus a class-wise variant.

Greedy NMS keeps a box iff no *kept* higher-scoring box overlaps it above the threshold. That rule
is a fixed point: start with every box kept and recompute "kept" from the previous estimate until it
stops changing. After k rounds the k highest-scoring decisions are final, so the loop ends after at
most N rounds, in practice after the length of the longest suppression chain (a handful). Each round
is one boolean matrix-vector product over the precomputed overlap matrix.

Boxes are taken in blocks of ``_ROW_BLOCK`` by decreasing score: a block is first checked against the
boxes kept from earlier blocks, then resolved within itself, so memory is bounded by the block size
times the number kept, never N x N (a weakly trained detector can offer hundreds of thousands of
candidates). With ``max_keep`` the scan stops once that many are kept: the first ``max_keep`` boxes
of greedy NMS depend only on higher-scoring boxes, so the result equals the full NMS cut to
``max_keep``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from models.box_ops import box_iou

# Boxes are taken in blocks of this many by decreasing score, to bound peak memory (block x kept).
_ROW_BLOCK = 2048


def _overlap_matrix(boxes: Tensor, iou_threshold: float) -> Tensor:
    """One block, [M, 4] xyxy sorted by score -> bool [M, M], True where j < i and IoU(i, j) > threshold."""
    iou, _ = box_iou(boxes, boxes)
    earlier = torch.ones_like(iou, dtype=torch.bool).tril(diagonal=-1)
    return (iou > iou_threshold) & earlier


def _resolve_block(overlaps: Tensor, alive: Tensor) -> Tensor:
    """Greedy decisions within one score-sorted block: ``overlaps`` bool [M, M] (``_overlap_matrix``),
    ``alive`` bool [M] (not suppressed by earlier blocks) -> kept bool [M]."""
    keep = alive.clone()
    while True:
        new_keep = alive & ~(overlaps & keep[None, :]).any(dim=1)
        if torch.equal(new_keep, keep):
            return keep
        keep = new_keep


def nms(boxes: Tensor, scores: Tensor, *, iou_threshold: float, max_keep: int | None = None) -> Tensor:
    """Greedy NMS.

    Args:
        boxes: [N, 4] xyxy.
        scores: [N].
        iou_threshold: a box is suppressed by a kept higher-scoring box with IoU strictly above this.
        max_keep: return at most this many (the highest-scoring kept boxes); ``None``: all.
    Returns:
        int64 [K] indices into ``boxes`` of the kept boxes, by decreasing score (ties: lower index first).
    """
    if boxes.ndim != 2 or boxes.shape[-1] != 4 or scores.shape != boxes.shape[:1]:
        raise ValueError(
            f"nms expects boxes [N, 4] and scores [N], got {tuple(boxes.shape)}, {tuple(scores.shape)}"
        )
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    ordered = boxes[order].float()
    kept: list[Tensor] = []  # positions in ``order`` of the kept boxes, block by block
    kept_boxes = ordered[:0]
    for start in range(0, ordered.shape[0], _ROW_BLOCK):
        block = ordered[start : start + _ROW_BLOCK]
        alive = torch.ones(block.shape[0], dtype=torch.bool, device=boxes.device)
        if kept_boxes.shape[0]:
            alive = ~(box_iou(block, kept_boxes)[0] > iou_threshold).any(dim=1)
        keep = _resolve_block(_overlap_matrix(block, iou_threshold), alive)
        kept.append(start + keep.nonzero().squeeze(1))
        kept_boxes = torch.cat([kept_boxes, block[keep]])
        if max_keep is not None and kept_boxes.shape[0] >= max_keep:
            break
    return order[torch.cat(kept)][:max_keep]


def batched_nms(
    boxes: Tensor, scores: Tensor, labels: Tensor, *, iou_threshold: float, max_keep: int | None = None
) -> Tensor:
    """Class-wise NMS: boxes of different ``labels`` never suppress each other.

    Each class is shifted by ``label * (max coordinate span + 1)`` so classes cannot overlap, then one
    ``nms`` runs over all boxes.

    Args:
        boxes: [N, 4] xyxy.
        scores: [N].
        labels: int [N].
        iou_threshold, max_keep: as in ``nms``.
    Returns:
        int64 [K] kept indices by decreasing score.
    """
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    boxes = boxes.float()
    span = (boxes.max() - boxes.min()).clamp(min=0) + 1
    offsets = (labels.to(boxes.dtype) * span)[:, None]
    return nms(boxes - boxes.min() + offsets, scores, iou_threshold=iou_threshold, max_keep=max_keep)

"""Exact greedy non-maximum suppression, vectorised (no per-box Python loop), plus a class-wise variant.

Greedy NMS keeps a box iff no *kept* higher-scoring box overlaps it above the threshold. That rule
is a fixed point: start with every box kept and recompute "kept" from the previous estimate until it
stops changing. After k rounds the k highest-scoring decisions are final, so the loop ends after at
most N rounds, in practice after the length of the longest suppression chain (a handful). Each round
is one boolean matrix-vector product over the precomputed overlap matrix.
"""

from __future__ import annotations

import torch
from torch import Tensor

from models.box_ops import box_iou

# Rows of the N x N overlap matrix are built in blocks of this many to bound peak memory.
_ROW_BLOCK = 2048


def _overlap_matrix(boxes: Tensor, iou_threshold: float) -> Tensor:
    """[N, 4] xyxy sorted by score -> bool [N, N], True where j < i and IoU(i, j) > threshold."""
    n = boxes.shape[0]
    rows = []
    for start in range(0, n, _ROW_BLOCK):
        block = boxes[start : start + _ROW_BLOCK]
        iou, _ = box_iou(block, boxes)
        idx = torch.arange(start, start + block.shape[0], device=boxes.device)
        earlier = torch.arange(n, device=boxes.device)[None, :] < idx[:, None]
        rows.append((iou > iou_threshold) & earlier)
    return torch.cat(rows) if rows else torch.zeros(0, 0, dtype=torch.bool, device=boxes.device)


def nms(boxes: Tensor, scores: Tensor, *, iou_threshold: float) -> Tensor:
    """Greedy NMS.

    Args:
        boxes: [N, 4] xyxy.
        scores: [N].
        iou_threshold: a box is suppressed by a kept higher-scoring box with IoU strictly above this.
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
    overlaps = _overlap_matrix(boxes[order].float(), iou_threshold)
    keep = torch.ones(order.shape[0], dtype=torch.bool, device=boxes.device)
    while True:
        suppressed = (overlaps & keep[None, :]).any(dim=1)
        new_keep = ~suppressed
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    return order[keep]


def batched_nms(boxes: Tensor, scores: Tensor, labels: Tensor, *, iou_threshold: float) -> Tensor:
    """Class-wise NMS: boxes of different ``labels`` never suppress each other.

    Each class is shifted by ``label * (max coordinate span + 1)`` so classes cannot overlap, then one
    ``nms`` runs over all boxes.

    Args:
        boxes: [N, 4] xyxy.
        scores: [N].
        labels: int [N].
        iou_threshold: as in ``nms``.
    Returns:
        int64 [K] kept indices by decreasing score.
    """
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    boxes = boxes.float()
    span = (boxes.max() - boxes.min()).clamp(min=0) + 1
    offsets = (labels.to(boxes.dtype) * span)[:, None]
    return nms(boxes - boxes.min() + offsets, scores, iou_threshold=iou_threshold)

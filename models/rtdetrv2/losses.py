"""RT-DETRv2 loss terms as pure functions (varifocal, L1, GIoU) over matched pairs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from models.box_ops import box_cxcywh_to_xyxy, elementwise_box_iou, elementwise_generalized_box_iou


def varifocal_loss(
    logits: Tensor,
    matched: tuple[Tensor, Tensor],
    target_labels: Tensor,
    ious: Tensor,
    *,
    num_boxes: float,
    alpha: float = 0.75,
    gamma: float = 2.0,
) -> Tensor:
    """Varifocal loss: BCE against an IoU-valued soft target, negatives down-weighted by p^gamma.

    Args:
        logits: [B, Q, C] class logits.
        matched: (batch index [K], query index [K]) of the matched predictions.
        target_labels: int64 [K] classes of their targets.
        ious: [K] IoU of each matched pair (used as the target score; no gradient flows into it).
        num_boxes: normaliser (number of target boxes, at least 1).
    Returns:
        scalar: sum over classes, mean over queries, sum over images, times Q / num_boxes.
    """
    onehot = torch.zeros_like(logits)
    score = torch.zeros_like(logits)
    if target_labels.numel():
        onehot[matched[0], matched[1], target_labels] = 1.0
        score[matched[0], matched[1], target_labels] = ious.detach().to(logits.dtype)
    prob = logits.sigmoid().detach()
    weight = alpha * prob.pow(gamma) * (1 - onehot) + score
    loss = F.binary_cross_entropy_with_logits(logits, score, weight=weight, reduction="none")
    return loss.mean(1).sum() * logits.shape[1] / num_boxes


def l1_box_loss(pred_boxes: Tensor, target_boxes: Tensor, *, num_boxes: float) -> Tensor:
    """Sum of |pred - target| over matched [K, 4] cxcywh boxes / num_boxes (scalar)."""
    return F.l1_loss(pred_boxes, target_boxes, reduction="sum") / num_boxes


def giou_box_loss(pred_boxes: Tensor, target_boxes: Tensor, *, num_boxes: float) -> Tensor:
    """Sum of (1 - GIoU) over matched [K, 4] cxcywh boxes / num_boxes (scalar)."""
    giou = elementwise_generalized_box_iou(box_cxcywh_to_xyxy(pred_boxes), box_cxcywh_to_xyxy(target_boxes))
    return (1 - giou).sum() / num_boxes


def matched_ious(pred_boxes: Tensor, target_boxes: Tensor) -> Tensor:
    """IoU of aligned [K, 4] cxcywh boxes -> [K] (detached; the VFL target score)."""
    with torch.no_grad():
        iou, _ = elementwise_box_iou(box_cxcywh_to_xyxy(pred_boxes), box_cxcywh_to_xyxy(target_boxes))
    return iou

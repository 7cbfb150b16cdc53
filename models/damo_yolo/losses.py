"""GFL losses as pure per-element functions (reduction and weighting live in the criterion)."""

from __future__ import annotations

import torch
from torch import Tensor

from models.box_ops import elementwise_generalized_box_iou


def quality_focal_loss(scores: Tensor, labels: Tensor, quality: Tensor, *, beta: float = 2.0) -> Tensor:
    """Quality focal loss on sigmoid scores.

    Negatives (every class of every anchor, except the positive class) are pushed to 0 with weight
    p^beta; the positive class is pushed to its quality target q with weight |q - p|^beta.

    Args:
        scores: [N, C] probabilities (already sigmoided).
        labels: int64 [N]; a class in 0..C-1 marks a positive, anything else (e.g. -1) background.
        quality: [N] target quality (IoU) of positives.
    Returns:
        [N] loss summed over classes.
    """
    num_classes = scores.shape[1]
    eps = 1e-12
    p = scores.clamp(eps, 1 - eps)
    # BCE against 0 is -log(1 - p); float logs clamped like F.binary_cross_entropy's -100 floor.
    loss = -(1 - p).log().clamp(min=-100) * scores.pow(beta)
    pos = (labels >= 0) & (labels < num_classes)
    if pos.any():
        idx = pos.nonzero().squeeze(1)
        cls = labels[idx]
        ps, q = p[idx, cls], quality[idx].to(p.dtype)
        bce = -(q * ps.log().clamp(min=-100) + (1 - q) * (1 - ps).log().clamp(min=-100))
        pos_loss = bce * (q - scores[idx, cls]).abs().pow(beta)
        loss = loss.index_put((idx, cls), pos_loss)
    return loss.sum(dim=1)


def giou_loss(pred_boxes: Tensor, target_boxes: Tensor, *, eps: float = 1e-6) -> Tensor:
    """1 - GIoU of aligned xyxy boxes: [N, 4], [N, 4] -> [N] in [0, 2]."""
    return 1.0 - elementwise_generalized_box_iou(pred_boxes, target_boxes, eps)


def distribution_focal_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Distribution focal loss: cross-entropy to the two bins around a continuous target.

    Args:
        logits: [N, R+1] bin logits (before softmax).
        target: [N] continuous targets in [0, R) (R = reg_max).
    Returns:
        [N] loss = w_left * CE(left bin) + w_right * CE(right bin).
    """
    left = target.long()
    right = left + 1
    w_left = right.to(target.dtype) - target
    w_right = target - left.to(target.dtype)
    log_p = logits.log_softmax(dim=-1)
    return -(
        log_p.gather(1, left[:, None]).squeeze(1) * w_left
        + log_p.gather(1, right[:, None]).squeeze(1) * w_right
    )


def box_to_distance(points: Tensor, boxes: Tensor, *, max_distance: float, eps: float = 0.1) -> Tensor:
    """xyxy boxes [N, 4] seen from points [N, 2] -> (left, top, right, bottom) [N, 4] in [0, max - eps]."""
    d = torch.cat((points - boxes[:, :2], boxes[:, 2:] - points), dim=1)
    return d.clamp(min=0, max=max_distance - eps)

"""GFL losses as pure per-element functions (reduction and weighting live in the criterion)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from models.box_ops import elementwise_generalized_box_iou


def quality_focal_loss(logits: Tensor, labels: Tensor, quality: Tensor, *, beta: float = 2.0) -> Tensor:
    """Quality focal loss on class logits (the sigmoid is applied here).

    Negatives (every class of every anchor, except the positive class) are pushed to 0 with weight
    p^beta; the positive class is pushed to its quality target q with weight |q - p|^beta, where
    p = sigmoid(logits). The value is upstream's (``F.binary_cross_entropy`` on sigmoid scores, so
    each log is floored at -100).

    Args:
        logits: [N, C] class logits (before the sigmoid).
        labels: int64 [N]; a class in 0..C-1 marks a positive, anything else (e.g. -1) background.
        quality: [N] target quality (IoU) of positives.
    Returns:
        [N] loss summed over classes.
    """
    num_classes = logits.shape[1]
    p = logits.sigmoid()
    # log p and log(1 - p) as log-sigmoids of the logits. Taken from p instead, 1 - p rounds to 0
    # once the logit passes ~16.6 (float32), ~8.3 (float16) or ~6.2 (bfloat16): the value drops to
    # the floor too early and the backward is 0 * inf = NaN. The -100 floor is BCE's; here it only
    # bites beyond |logit| = 100, as it would in exact arithmetic.
    log_p = F.logsigmoid(logits).clamp(min=-100)
    log_not_p = F.logsigmoid(-logits).clamp(min=-100)
    loss = -log_not_p * p.pow(beta)
    pos = (labels >= 0) & (labels < num_classes)
    if pos.any():
        idx = pos.nonzero().squeeze(1)
        cls = labels[idx]
        q = quality[idx].to(logits.dtype)
        bce = -(q * log_p[idx, cls] + (1 - q) * log_not_p[idx, cls])
        pos_loss = bce * (q - p[idx, cls]).abs().pow(beta)
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

"""AlignOTA label assignment (DAMO-YOLO's SimOTA variant), as a pure function of one image."""

from __future__ import annotations

import torch
from torch import Tensor

from models.box_ops import box_iou

# Cost added to pairs outside "in box AND in centre region"; such pairs are only picked as a last resort.
_OUTSIDE_COST = 1e8


def candidate_masks(
    points: Tensor, strides: Tensor, gt_boxes: Tensor, *, center_radius: float = 2.5
) -> tuple[Tensor, Tensor]:
    """Centre prior of AlignOTA.

    Args:
        points: [A, 2] anchor points (x, y) in input pixels.
        strides: [A] stride of each anchor.
        gt_boxes: [G, 4] xyxy.
        center_radius: half-size of the centre square around each GT centre, in strides.
    Returns:
        (candidate [A] bool: inside some GT box or some GT centre square,
         in_both [A, G] bool: inside that GT's box and its centre square). Insides are strict.
    """
    x, y = points[:, 0:1], points[:, 1:2]
    # x > x1 is exactly upstream's x - x1 > 0: a float difference is 0 only for equal operands.
    in_box = (
        (x > gt_boxes[None, :, 0])
        & (y > gt_boxes[None, :, 1])
        & (x < gt_boxes[None, :, 2])
        & (y < gt_boxes[None, :, 3])
    )
    cx = (gt_boxes[:, 0] + gt_boxes[:, 2]) * 0.5
    cy = (gt_boxes[:, 1] + gt_boxes[:, 3]) * 0.5
    radius = center_radius * strides[:, None]
    # Upstream's form: the square's edges cx - r and cx + r are rounded, then compared with the
    # point. |x - cx| < r rounds x - cx instead and disagrees within a float step of an edge.
    left, right = cx[None, :] - radius, cx[None, :] + radius
    top, bottom = cy[None, :] - radius, cy[None, :] + radius
    in_center = (x - left > 0) & (right - x > 0) & (y - top > 0) & (bottom - y > 0)
    candidate = (in_box | in_center).any(dim=1)
    return candidate, in_box & in_center


def alignment_class_cost(scores: Tensor, ious: Tensor, gt_labels: Tensor) -> Tensor:
    """AlignOTA classification cost sum_c BCE(p_c, t_c) * |t_c - p_c|^2 with soft target t = onehot * IoU.

    BCE is upstream's ``F.binary_cross_entropy``: log p and log(1 - p) floored at -100, the score
    itself not clamped, so a saturated score (exactly 0 or 1) costs 100 per wrong class.
    Computed without the [N, G, C] tensor: every class but the GT's has target 0, so the sum is the
    all-negative sum per anchor, minus the GT class's negative term, plus its positive term.

    Args:
        scores: [N, C] probabilities; ious: [N, G]; gt_labels: int64 [G].
    Returns:
        [N, G] cost.
    """
    log_p = scores.log().clamp(min=-100)
    # log1p(-p), as torch's BCE takes it: exact for small p, where 1 - p would round to 1.
    log_not_p = torch.log1p(-scores).clamp(min=-100)
    negative = -log_not_p * scores.pow(2)  # [N, C]: BCE(p, 0) * p^2
    p_gt = scores[:, gt_labels]  # [N, G]
    positive = -(ious * log_p[:, gt_labels] + (1 - ious) * log_not_p[:, gt_labels]) * (ious - p_gt).pow(2)
    return negative.sum(dim=1, keepdim=True) - negative[:, gt_labels] + positive


def dynamic_k_matching(cost: Tensor, ious: Tensor, *, candidate_topk: int = 10) -> tuple[Tensor, Tensor]:
    """SimOTA dynamic-k matching on candidate anchors.

    Each GT g takes the k_g lowest-cost anchors with k_g = max(1, int(sum of its top-``candidate_topk``
    IoUs)); an anchor claimed by several GTs keeps the one with the lowest cost (first GT on a tie).

    Among exactly equal costs (all pairs outside "in box and in centre" share one large cost) the
    choice is ``torch.topk(cost[:, g], k_g, largest=False)`` per GT, as upstream DAMO-YOLO does, not
    anchor order. One top-k per GT is needed: a single top-max(k) call can resolve ties differently.

    Args:
        cost: [N, G] matching cost.
        ious: [N, G] IoU of predicted box n with GT g.
    Returns:
        (matched [N] bool, gt_index [N] int64, valid only where matched).
    """
    n, g = cost.shape
    topk = min(candidate_topk, n)
    ks = ious.topk(topk, dim=0).values.sum(dim=0).int().clamp(min=1).tolist()
    matching = torch.zeros_like(cost, dtype=torch.bool)
    for gt, k in enumerate(ks):
        chosen = torch.topk(cost[:, gt], k=k, largest=False).indices
        matching[chosen, gt] = True
    multiple = matching.sum(dim=1) > 1
    if multiple.any():
        best = cost[multiple].argmin(dim=1)
        matching[multiple] = torch.nn.functional.one_hot(best, g).bool()
    matched = matching.any(dim=1)
    return matched, matching.float().argmax(dim=1)


def align_ota_assign(
    pred_scores: Tensor,
    pred_boxes: Tensor,
    points: Tensor,
    strides: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    *,
    center_radius: float = 2.5,
    candidate_topk: int = 10,
    cls_weight: float = 1.0,
    iou_weight: float = 3.0,
    eps: float = 1e-7,
) -> tuple[Tensor, Tensor]:
    """Assign GT boxes to anchors of one image.

    cost = cls_weight * sum_c BCE(p, onehot * IoU) * |onehot * IoU - p|^2
         + iou_weight * (-log(IoU + eps)) + 1e8 * [not (in box and in centre)],
    over candidate anchors (inside a GT box or its centre square), then dynamic-k matching. BCE's logs
    are floored at -100 as upstream's ``F.binary_cross_entropy``; ``eps`` enters the IoU cost only.

    Args:
        pred_scores: [A, C] sigmoid scores (detached by the caller).
        pred_boxes: [A, 4] decoded predicted boxes, xyxy input pixels.
        points: [A, 2] anchor points; strides: [A].
        gt_boxes: [G, 4] xyxy; gt_labels: int64 [G] in 0..C-1.
    Returns:
        (assigned_gt int64 [A]: GT index or -1 for background,
         assigned_iou float [A]: IoU of the predicted box with its GT, 0 for background).
    """
    num_anchors = pred_scores.shape[0]
    assigned = torch.full((num_anchors,), -1, dtype=torch.int64, device=pred_scores.device)
    assigned_iou = pred_scores.new_zeros(num_anchors)
    if gt_boxes.shape[0] == 0 or num_anchors == 0:
        return assigned, assigned_iou
    candidate, in_both = candidate_masks(points, strides, gt_boxes, center_radius=center_radius)
    if not candidate.any():
        return assigned, assigned_iou
    cand_idx = candidate.nonzero().squeeze(1)
    ious, _ = box_iou(pred_boxes[cand_idx], gt_boxes)
    iou_cost = -torch.log(ious + eps)

    cls_cost = alignment_class_cost(pred_scores[cand_idx].float(), ious, gt_labels)

    cost = (
        cls_weight * cls_cost
        + iou_weight * iou_cost
        + _OUTSIDE_COST * (~in_both[cand_idx]).to(cls_cost.dtype)
    )
    matched, gt_index = dynamic_k_matching(cost, ious, candidate_topk=candidate_topk)
    pos = cand_idx[matched]
    assigned[pos] = gt_index[matched]
    assigned_iou[pos] = ious[matched, gt_index[matched]].to(assigned_iou.dtype)
    return assigned, assigned_iou

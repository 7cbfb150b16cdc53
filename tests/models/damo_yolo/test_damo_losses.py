"""AlignOTA assignment and the GFL losses as pure functions."""

from __future__ import annotations

import math

import torch

from models.damo_yolo.assigner import (
    align_ota_assign,
    alignment_class_cost,
    candidate_masks,
    dynamic_k_matching,
)
from models.damo_yolo.head import anchor_points
from models.damo_yolo.losses import box_to_distance, distribution_focal_loss, giou_loss, quality_focal_loss


def test_giou_loss_zero_for_perfect_and_positive_otherwise() -> None:
    boxes = torch.tensor([[0.0, 0, 10, 10], [5, 5, 30, 20]])
    assert giou_loss(boxes, boxes).abs().max() < 1e-6
    shifted = boxes + torch.tensor([30.0, 0, 30, 0])
    loss = giou_loss(shifted, boxes)
    assert torch.all(loss > 1.0) and torch.all(loss <= 2.0)  # disjoint boxes: GIoU < 0
    half = torch.tensor([[0.0, 0, 10, 5]])
    torch.testing.assert_close(giou_loss(half, boxes[:1]), torch.tensor([0.5]))


def test_dfl_minimised_by_the_two_bin_distribution() -> None:
    target = torch.tensor([3.25])
    exact = torch.full((1, 17), -1e4)
    exact[0, 3], exact[0, 4] = math.log(0.75), math.log(0.25)
    best = distribution_focal_loss(exact, target)
    # Cross-entropy to (0.75, 0.25) has its minimum, the entropy, at exactly that distribution.
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert abs(float(best) - entropy) < 1e-5
    uniform = distribution_focal_loss(torch.zeros(1, 17), target)
    assert float(uniform) > float(best)
    integer = distribution_focal_loss(exact, torch.tensor([3.0]))
    assert abs(float(integer) - (-math.log(0.75))) < 1e-5


def test_qfl_zero_at_perfect_quality_and_penalises_errors() -> None:
    # Scores 0 and 0.8 as logits (-1e4 and logit(0.8)).
    logits = torch.tensor([[-1e4, math.log(4.0), -1e4], [-1e4, -1e4, -1e4]])
    labels = torch.tensor([1, -1])
    quality = torch.tensor([0.8, 0.0])
    perfect = quality_focal_loss(logits, labels, quality)
    assert perfect.abs().max() < 1e-6
    wrong = quality_focal_loss(
        torch.logit(torch.tensor([[0.5, 0.3, 1e-9], [1e-9, 1e-9, 0.6]])), labels, quality
    )
    assert torch.all(wrong > 0.1)
    # Negative term: p^2 * BCE(p, 0) for p = 0.6.
    assert abs(float(wrong[1]) - 0.36 * -math.log(0.4)) < 1e-5


def test_box_to_distance_clamps_to_reg_max() -> None:
    d = box_to_distance(torch.tensor([[5.0, 5.0]]), torch.tensor([[0.0, 3.0, 40.0, 6.0]]), max_distance=16.0)
    torch.testing.assert_close(d, torch.tensor([[5.0, 2.0, 15.9, 1.0]]))


def test_centre_prior_candidates() -> None:
    points = torch.tensor([[50.0, 50.0], [72.0, 50.0], [64.0, 50.0], [200.0, 200.0], [5.0, 5.0]])
    strides = torch.full((5,), 8.0)
    gt = torch.tensor([[40.0, 40.0, 70.0, 60.0]])  # centre (55, 50); radius 2.5 * 8 = 20
    candidate, in_both = candidate_masks(points, strides, gt)
    # (72, 50) is outside the box but within 20 px of the centre; (64, 50) is in both.
    assert candidate.tolist() == [True, True, True, False, False]
    assert in_both[:, 0].tolist() == [True, False, True, False, False]


def test_dynamic_k_from_top_ious_and_conflicts_by_cost() -> None:
    ious = torch.tensor([[0.9, 0.0], [0.8, 0.1], [0.7, 0.0], [0.6, 0.9], [0.0, 0.3]])
    cost = torch.tensor([[1.0, 9.0], [2.0, 9.0], [3.0, 9.0], [4.0, 0.5], [9.0, 2.0]])
    matched, gt = dynamic_k_matching(cost, ious, candidate_topk=10)
    # GT0: k = int(3.0) = 3 -> anchors 0, 1, 2. GT1: k = max(1, int(1.3)) = 1 -> anchor 3.
    assert matched.tolist() == [True, True, True, True, False]
    assert gt[matched].tolist() == [0, 0, 0, 1]
    # Anchor 0 wanted by both GTs (k=2 each) goes to the cheaper one.
    ious2 = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    cost2 = torch.tensor([[1.0, 0.5], [1.5, 9.0], [9.0, 1.0]])
    matched2, gt2 = dynamic_k_matching(cost2, ious2, candidate_topk=10)
    assert matched2.all() and gt2.tolist() == [1, 0, 1]


def test_align_ota_assigns_inside_anchors_with_ious() -> None:
    points, strides = anchor_points(
        [(16, 16), (8, 8), (4, 4)], (8, 16, 32), device=torch.device("cpu"), dtype=torch.float32
    )
    gt = torch.tensor([[20.0, 20.0, 60.0, 70.0], [80.0, 30.0, 120.0, 90.0]])
    labels = torch.tensor([2, 0])
    # Predictions: every anchor predicts a 32 px box around itself; class scores 0.3 everywhere.
    pred = torch.cat((points - 16, points + 16), dim=1)
    scores = torch.full((points.shape[0], 3), 0.3)
    assigned, iou = align_ota_assign(scores, pred, points, strides, gt, labels)
    pos = assigned >= 0
    assert pos.sum() >= 2 and set(assigned[pos].tolist()) == {0, 1}
    for a in pos.nonzero().squeeze(1).tolist():
        box = gt[assigned[a]]
        x, y = points[a].tolist()
        assert box[0] < x < box[2] and box[1] < y < box[3]
        assert iou[a] > 0
    assert torch.all(iou[~pos] == 0)
    empty, empty_iou = align_ota_assign(
        scores, pred, points, strides, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64)
    )
    assert torch.all(empty == -1) and torch.all(empty_iou == 0)


def test_class_cost_equals_the_dense_formula() -> None:
    gen = torch.Generator().manual_seed(0)
    scores = torch.rand(40, 6, generator=gen)
    # Saturated rows (exactly 0 and 1, one float step inside): torch's BCE floors its logs at -100.
    scores[0], scores[1] = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.5]), torch.tensor([0.0, 1.0] * 3)
    scores[2] = torch.tensor([1 - 2**-24, 2**-24, 1.0, 1e-30, 0.999, 1e-4])
    ious = torch.rand(40, 3, generator=gen)
    ious[0, 0], ious[1, 1] = 1.0, 0.0
    labels = torch.tensor([4, 0, 4])
    soft = torch.nn.functional.one_hot(labels, 6).float()[None] * ious[:, :, None]  # [N, G, C]
    p = scores[:, None, :].expand_as(soft)
    dense = (torch.nn.functional.binary_cross_entropy(p, soft, reduction="none") * (soft - p).pow(2)).sum(-1)
    torch.testing.assert_close(alignment_class_cost(scores, ious, labels), dense, rtol=1e-5, atol=1e-4)
